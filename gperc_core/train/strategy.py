"""How a `gperc_core.train.trainer.Trainer` runs on this process: the strategy interface and the
single-process strategy.

A strategy owns what differs between single-process, data-parallel and pipeline-parallel training:
where the model lives (and which part of it this process builds), the backward of one global batch
(loss -> gradients), gradient clipping across every part of the model, the evaluation forward,
and the full state dict in the single-process layout (so checkpoints move freely between modes).
The trainer owns everything else: the optimizer, the learning-rate schedule, the data order, the
loop, the logs and the checkpoint files. The distributed strategies live in `gperc_core.parallel`
(`gperc_core.parallel.make_strategy` picks one).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Iterator, Mapping

import torch
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.config.training import TrainingConfig
from gperc_core.errors import ConfigError
from gperc_core.io.checkpoint import load_state_checked, model_state
from gperc_core.train.device import to_device
from gperc_core.train.loss import MaskedCrossEntropy

Autocast = Callable[[], ContextManager]
"""A factory of the forward pass's autocast context (bf16 or a no-op)."""

__all__ = ["Strategy", "SingleProcess", "StateView", "Autocast", "run_model", "check_no_compile"]


def run_model(model: Any, batch: Mapping[str, Any]) -> torch.Tensor:
    """``model``'s logits for a batch dict (``input_array``, optional ``attention_mask`` and ``output_array``)."""
    return model(batch["input_array"], batch.get("attention_mask"), batch.get("output_array"))


class StateView:
    """A full state dict (and the model config) standing in for a model or an optimizer where a
    checkpoint is written: ``state_dict()`` returns ``state``."""

    def __init__(self, config: PerceiverConfig | None, state: Mapping[str, Any]) -> None:
        self.config = config
        self.state = state

    def state_dict(self) -> Mapping[str, Any]:
        """The state this view stands for."""
        return self.state


class Strategy:
    """The interface every strategy implements (see the module docstring).

    Attributes: ``device`` (where this process computes), ``is_main`` (the one process that prints
    and writes files), ``world_size``, ``fixed_shapes`` (batches keep their padded shapes, as a
    pipeline's buffers need), ``row_multiple`` (a batch's rows must be a multiple of it),
    ``sentinels`` (batches carry the ``[batch]`` sentinels for an absent mask or output array) and
    ``module`` (this process's part of the model, after `prepare`).
    """

    name = "strategy"
    device: torch.device
    is_main: bool = True
    world_size: int = 1
    fixed_shapes: bool = False
    row_multiple: int = 1
    sentinels: bool = False
    module: nn.Module | None = None

    def data_shard(self) -> tuple[int, int]:
        """``(replicas, replica)``: this process reads data-parallel replica ``replica``'s share (of
        ``replicas``) of every global batch (``(1, 0)``: the whole batch)."""
        return 1, 0

    # ----------------------------------------------------------------- process-wide
    def broadcast_object(self, obj: Any) -> Any:
        """Return the main process's ``obj`` on every process (a collective)."""
        return obj

    def barrier(self) -> None:
        """Wait for every process (a collective)."""

    def guard(self) -> ContextManager:
        """Context in which a failure on any process ends every process (a no-op for one process)."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Release the process group, if any (safe to call twice)."""

    def describe(self) -> str:
        """One line saying how training runs."""
        return f"{self.name} on {self.device}"

    # ----------------------------------------------------------------- the model
    def prepare(self, build_model: Callable[[], nn.Module], config: PerceiverConfig, training: TrainingConfig,
                loss: MaskedCrossEntropy, probe: Mapping[str, Any]) -> None:
        """Build and place this process's part of the model. ``build_model`` builds the full model
        (only strategies that hold all of it call it), ``probe`` is one training batch (fixed shapes)."""
        raise NotImplementedError

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """This process's parameters under their single-process names (what the optimizer trains)."""
        assert self.module is not None, "prepare() first"
        return self.module.named_parameters()

    def backward(self, batch: Mapping[str, Any], autocast: Autocast) -> float:
        """Forward and backward of this replica's share ``batch`` of a global batch (see `data_shard`;
        the trainer's loader reads only that share): gradients into this process's parameters, equal
        to the single-process global-batch gradients; returns the global batch loss (the same everywhere)."""
        raise NotImplementedError

    def clip_grad_norm_(self, max_norm: float) -> float:
        """Clip the gradients of the whole model (every process's part) to a total 2-norm of ``max_norm``."""
        params = [p for _, p in self.named_parameters()]
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def predict(self, batch: Mapping[str, Any], autocast: Autocast) -> torch.Tensor:
        """Evaluation forward of ``batch`` (rows a multiple of ``row_multiple``); returns the logits everywhere."""
        raise NotImplementedError

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every key of the model in the single-process layout, complete on the main process (a collective
        where the model is split; other processes may get only their part)."""
        assert self.module is not None, "prepare() first"
        return model_state(self.module)

    def gather_named(self, named: Mapping[str, Any]) -> dict[str, Any]:
        """Merge per-parameter-name values (e.g. optimizer state) of every part of the model, complete on the
        main process (a collective)."""
        return dict(named)

    def load_state_dict(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """Load this process's keys of a full single-process ``state``; a missing or mis-shaped key is
        a `gperc_core.errors.CheckpointError` naming it."""
        assert self.module is not None, "prepare() first"
        load_state_checked(self.module, state, source)


class SingleProcess(Strategy):
    """One process holds the whole model on ``device`` (optionally ``torch.compile``-d)."""

    name = "single process"

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.forward_model: nn.Module | None = None
        self.loss = MaskedCrossEntropy()

    def prepare(self, build_model: Callable[[], nn.Module], config: PerceiverConfig, training: TrainingConfig,
                loss: MaskedCrossEntropy, probe: Mapping[str, Any]) -> None:
        self.module = build_model().to(self.device)
        self.forward_model = torch.compile(self.module) if training.compile else self.module
        self.loss = loss

    def _forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return run_model(self.forward_model, batch)

    def backward(self, batch: Mapping[str, Any], autocast: Autocast) -> float:
        self.module.train()
        batch = to_device(batch, self.device)
        with autocast():
            logits = self._forward(batch)
        loss = self.loss.mean(logits, batch["target"])
        loss.backward()
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], autocast: Autocast) -> torch.Tensor:
        self.module.eval()
        with autocast():
            return self._forward(to_device(batch, self.device))


def check_no_compile(training: TrainingConfig) -> None:
    """Raise `ConfigError` when a distributed strategy is asked to ``torch.compile``."""
    if training.compile:
        raise ConfigError("training.compile: expected False for distributed training, got True")
