"""Pipeline-parallel training, and pipeline x data-parallel: each rank builds and trains only its stages.

The model is cut into stages (`gperc_core.parallel.pipeline`); this rank builds the weights of its
own stages only (the rest of the model never leaves the meta device) and runs the schedule over
the microbatches of its replica's share of every batch. Gradients are clipped over the whole
pipeline; the full state dict is gathered in the single-process layout for checkpoints.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.config.training import TrainingConfig
from gperc_core.parallel.distributed import DistContext, ParallelLayout
from gperc_core.parallel.options import ParallelOptions
from gperc_core.parallel.pipeline import (PipelineHandle, build_pipeline, check_single_model, measure_block_times,
                                         merge_dicts, normalise_schedule)
from gperc_core.parallel.strategy import DistributedStrategy
from gperc_core.train.device import to_device
from gperc_core.train.loss import MaskedCrossEntropy
from gperc_core.train.strategy import Autocast, check_no_compile

__all__ = ["Pipelined"]


class Pipelined(DistributedStrategy):
    """``layout.pp_size`` ranks per pipeline, ``layout.dp_size`` replicas (DDP over the replicas of a stage)."""

    name = "pipeline"
    sentinels = True

    def __init__(self, ctx: DistContext, layout: ParallelLayout, options: ParallelOptions) -> None:
        super().__init__(ctx, layout)
        self.options = options
        self.schedule = normalise_schedule(options.schedule)
        per_rank = options.stages_per_rank or (2 if self.schedule == "interleaved" else 1)
        self.num_stages = layout.pp_size * per_rank if self.schedule == "interleaved" else layout.pp_size
        self.handle: PipelineHandle | None = None

    @property
    def schedule_label(self) -> str:
        return self.schedule

    def _measured_costs(self, build_model: Callable[[], nn.Module], probe: Mapping[str, Any]) -> list[float]:
        """Per-block forward+backward seconds, timed by rank 0 on a full model (built there only for
        this) and shared with every rank, so every rank cuts the same stages."""
        costs = None
        if self.is_main:
            batch = to_device(probe, self.device)
            costs = measure_block_times(build_model().to(self.device), batch["input_array"],
                                        batch.get("attention_mask"), batch.get("output_array"), repeats=2)
        return self.broadcast_object(costs)

    def prepare(self, build_model: Callable[[], nn.Module], config: PerceiverConfig, training: TrainingConfig,
                loss: MaskedCrossEntropy, probe: Mapping[str, Any]) -> None:
        check_no_compile(training)
        check_single_model(config)
        costs = None
        if self.options.balance == "measured":
            costs = self._measured_costs(build_model, probe)
        unused = probe.get("output_array") is not None  # then the learned output queries go unused
        self.handle = build_pipeline(config, num_stages=self.num_stages, schedule=self.schedule, costs=costs,
                                     microbatches=self.options.microbatches, group=self.layout.pp_group,
                                     dp_group=self.layout.dp_group, device=self.device, allow_reshape=True,
                                     loss=loss, find_unused_parameters=unused)
        self.row_multiple = self.handle.microbatches
        self.module = nn.ModuleList(self.handle.modules)

    def describe(self) -> str:
        text = super().describe()
        return text if self.handle is None else f"{text}\n{self.handle.plan.describe()}"

    def named_parameters(self):
        return self.handle.named_parameters()

    def data_shard(self) -> tuple[int, int]:
        return self.layout.dp_size, self.layout.dp_rank

    def backward(self, batch: Mapping[str, Any], autocast: Autocast) -> float:
        share = to_device(batch, self.device)  # this replica's share (rows a multiple of the microbatches)
        self.handle.train()
        with autocast():
            loss = self.handle.step(share["input_array"], share["target"], share.get("attention_mask"),
                                    share.get("output_array"))
        return float(loss)

    def clip_grad_norm_(self, max_norm: float) -> float:
        return float(self.handle.clip_grad_norm_(max_norm))

    def predict(self, batch: Mapping[str, Any], autocast: Autocast) -> torch.Tensor:
        self.handle.eval()
        batch = to_device(batch, self.device)
        with autocast():
            return self.handle.predict(batch["input_array"], batch.get("attention_mask"), batch.get("output_array"))

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every key on the main process (gathered to the first rank of each pipeline); this rank's keys elsewhere."""
        return self.handle.full_state_dict(everywhere=False)

    def gather_named(self, named: Mapping[str, Any]) -> dict[str, Any]:
        """Every stage's values on the main process (gathered like `full_state_dict`)."""
        return merge_dicts(named, self.layout.pp_group, everywhere=False)

    def load_state_dict(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        self.handle.load_state_dict(state, source=source)
