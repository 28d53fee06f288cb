"""Data-parallel training (DDP): every rank holds the whole model and a share of each global batch."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.config.training import TrainingConfig
from gperc_core.parallel.distributed import wrap_ddp
from gperc_core.parallel.strategy import DistributedStrategy
from gperc_core.train.device import to_device
from gperc_core.train.loss import MaskedCrossEntropy
from gperc_core.train.strategy import Autocast, check_no_compile, run_model

__all__ = ["DataParallel"]


class DataParallel(DistributedStrategy):
    """DDP over the world: rank ``r`` reads and computes its contiguous share of every batch; the gradients are
    averaged so they equal the single-process batch gradients. Every rank evaluates the whole split."""

    name = "ddp"

    def prepare(self, build_model: Callable[[], nn.Module], config: PerceiverConfig, training: TrainingConfig,
                loss: MaskedCrossEntropy, probe: Mapping[str, Any]) -> None:
        check_no_compile(training)
        self.module = build_model().to(self.device)
        self.loss = loss
        unused = probe.get("output_array") is not None  # then the learned output queries go unused
        self.ddp = wrap_ddp(self.module, device=self.device, find_unused_parameters=unused)

    def data_shard(self) -> tuple[int, int]:
        return self.world_size, self.ctx.rank

    def backward(self, batch: Mapping[str, Any], autocast: Autocast) -> float:
        self.module.train()
        share = to_device(batch, self.device)  # this rank's share, read by its own loader
        target = share["target"]
        count = torch.tensor(float(self.loss.count(target)), dtype=torch.float64, device=self.device)
        dist.all_reduce(count)
        self.loss.normaliser = max(float(count), 1.0) / self.world_size  # DDP averages the R replicas' gradients
        with autocast():
            logits = run_model(self.ddp, share)
        local = self.loss(logits, target)
        local.backward()
        self.loss.normaliser = 1.0
        total = local.detach().clone()
        dist.all_reduce(total)
        return float(total) / self.world_size

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], autocast: Autocast) -> torch.Tensor:
        self.module.eval()
        batch = to_device(batch, self.device)
        with autocast():
            return run_model(self.module, batch)
