"""An exponential moving average of the trained weights (``training.ema_decay``).

Evaluating and keeping an average of the weights over the last steps, not the weights of the last
step, smooths the noise of small batches and small datasets (timm's ``ModelEmaV3``, torchvision's
reference recipes, `torch.optim.swa_utils.get_ema_multi_avg_fn`). After each optimizer step
``ema += (1 - d_t) * (weight - ema)`` with ``d_t = min(decay, (1 + t) / (10 + t))`` at step ``t``: the
warm-up keeps the random initialisation from lingering in the average of a short run.

`WeightEMA` holds the averages of one process's parameters under their single-process names (a
pipeline stage averages its own part), in float32. The trainer evaluates, chooses and saves the
averaged weights (`WeightEMA.swapped`) and checkpoints the averages so a resumed run continues them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping

import torch

from gperc_core.errors import CheckpointError


class WeightEMA:
    """The moving averages of the parameters ``named`` (``(name, parameter)`` pairs) with ``decay``."""

    def __init__(self, named: Iterable[tuple[str, torch.nn.Parameter]], decay: float) -> None:
        self.decay = float(decay)
        self.params = {name: p for name, p in named if p.requires_grad}
        self.averages = {name: p.detach().float().clone() for name, p in self.params.items()}
        self.updates = 0

    def decay_at(self, updates: int) -> float:
        """Return the decay of update number ``updates`` (0-based): ``min(decay, (1 + t) / (10 + t))``."""
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the averages towards the current weights (call after each optimizer step)."""
        weight = 1.0 - self.decay_at(self.updates)
        names = list(self.params)
        torch._foreach_lerp_([self.averages[n] for n in names],
                             [self.params[n].detach().float() for n in names], weight)
        self.updates += 1

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Put the averages into the parameters for the duration of the block, then the trained
        weights back exactly."""
        trained = {name: p.detach().clone() for name, p in self.params.items()}
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.averages[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(trained[name])

    def state(self) -> dict[str, torch.Tensor]:
        """The averages by parameter name (this process's part), for a checkpoint."""
        return {name: t.detach().cpu() for name, t in self.averages.items()}

    def load(self, state: Mapping[str, torch.Tensor], updates: int, source: str) -> None:
        """Restore this process's averages from ``state`` (every part's, by name) and the update count;
        a missing or mis-shaped average is a `CheckpointError` naming it and ``source``."""
        for name, avg in self.averages.items():
            saved = state.get(name)
            if saved is None or tuple(saved.shape) != tuple(avg.shape):
                got = "missing" if saved is None else f"shape {list(saved.shape)}"
                raise CheckpointError(f"{source}: weight average {name!r}: expected shape {list(avg.shape)}, got {got}")
            avg.copy_(saved.to(avg.device, torch.float32))
        self.updates = int(updates)
