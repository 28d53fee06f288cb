"""Each data-parallel replica's rows of a global training batch.

Replica ``r`` of ``R`` takes a contiguous share of the batch, padded to a multiple of the
microbatches with repeats of its first row whose targets are `IGNORE_INDEX`. Since the loss is a
sum over labelled targets divided by the global count (`gperc_core.train.loss.MaskedCrossEntropy`),
padding, uneven shares and microbatching leave the loss and the gradients those of the
single-process step.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from gperc_core.model.sentinels import IGNORE_INDEX

__all__ = ["replica_share"]


def _take(value: Any, idx: torch.Tensor) -> Any:
    """Rows ``idx`` of a batch value (tensors, dicts of tensors, None)."""
    if isinstance(value, torch.Tensor):
        return value[idx]
    if isinstance(value, Mapping):
        return {k: _take(v, idx) for k, v in value.items()}
    return value


def replica_share(batch: Mapping[str, Any], replicas: int, replica: int, multiple: int = 1) -> dict[str, Any]:
    """Return replica ``replica``'s rows of the global ``batch`` (of ``replicas``), padded to a multiple
    of ``multiple`` rows whose padding targets are ignored."""
    n = int(batch["target"].shape[0])
    per = math.ceil(n / replicas)
    per = math.ceil(per / multiple) * multiple
    start, stop = min(n, replica * per), min(n, (replica + 1) * per)
    real = stop - start
    idx = torch.cat([torch.arange(start, stop), torch.zeros(per - real, dtype=torch.long)])
    share = {k: _take(v, idx) for k, v in batch.items()}
    if real < per:
        target = share["target"].clone()
        target[real:] = IGNORE_INDEX
        share["target"] = target
    return share
