"""The training loss of gperc, once: cross-entropy with label smoothing over labelled targets.

Targets equal to `IGNORE_INDEX` are skipped. `MaskedCrossEntropy` computes the *sum* over the
labelled targets of a batch (or of a microbatch, or of one replica's share) divided by a
normaliser, the number of labelled targets of the whole batch; so the losses and gradients of
microbatches and data-parallel shares add up exactly to those of the single-process batch. The
single-process trainer, DDP, the pipeline schedules and the evaluation metrics all use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gperc_core.model.sentinels import IGNORE_INDEX

__all__ = ["MaskedCrossEntropy", "IGNORE_INDEX"]


class MaskedCrossEntropy:
    """Cross-entropy of logits ``[b, C]`` / ``[b, o, C]`` against targets ``[b]`` / ``[b, o]``, or against
    soft targets: class probabilities ``[b, C]`` in float (`gperc_core.train.mixup`; an all-zero row is
    unlabelled).

    ``loss(logits, target)`` returns ``sum over labelled targets / normaliser`` in float32; the
    normaliser defaults to 1 and is set per step (e.g. ``loss.normaliser = loss.count(target)``
    for a mean). ``label_smoothing`` is `torch.nn.functional.cross_entropy`'s.

    ``members = K > 1`` scores the training output of a K-member `gperc_core.model.ensemble.Ensemble`:
    logits ``[K * b, ...]`` (member by member) against targets ``[b, ...]``, each member against the same
    targets, so the mean is the mean of the members' own losses and `count` counts K per labelled target.
    """

    def __init__(self, label_smoothing: float = 0.0, members: int = 1) -> None:
        if not isinstance(members, int) or isinstance(members, bool) or members < 1:
            raise ValueError(f"members: expected a positive integer, got {members!r}")
        self.label_smoothing = float(label_smoothing)
        self.members = members
        self.normaliser = 1.0

    def count(self, target: torch.Tensor) -> int:
        """Number of labelled targets (those not equal to `IGNORE_INDEX`; soft targets: non-zero rows),
        once per member."""
        labelled = target.sum(dim=-1) > 0 if target.dtype.is_floating_point else target != IGNORE_INDEX
        return int(labelled.sum()) * self.members

    def total(self, logits: torch.Tensor, target: torch.Tensor, label_smoothing: float | None = None) -> torch.Tensor:
        """Sum of the per-target losses over the labelled targets (float32 scalar)."""
        smoothing = self.label_smoothing if label_smoothing is None else float(label_smoothing)
        if self.members > 1:
            if logits.shape[0] != self.members * target.shape[0]:
                raise ValueError(f"logits: expected {self.members} x {target.shape[0]} = "
                                 f"{self.members * target.shape[0]} rows (an ensemble's members, each scoring the "
                                 f"batch), got {logits.shape[0]}")
            target = target.repeat(self.members, *([1] * (target.dim() - 1)))
        if target.dtype.is_floating_point:  # class probabilities [b, C]: score the non-zero rows
            keep = target.sum(dim=-1) > 0
            return F.cross_entropy(logits[keep].float(), target[keep].float(), reduction="sum",
                                   label_smoothing=smoothing)
        flat, labels = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
        if logits.dim() == 3:  # per-query targets (e.g. masked tokens): score the labelled rows alone
            keep = labels != IGNORE_INDEX
            flat, labels = flat[keep], labels[keep]
        return F.cross_entropy(flat.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum",
                               label_smoothing=smoothing)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.total(logits, target) / self.normaliser

    def mean(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over the labelled targets of this batch (0 when none is labelled)."""
        return self.total(logits, target) / max(self.count(target), 1)

