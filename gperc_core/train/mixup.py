"""Mixup for classification (``training.mixup``): train on convex combinations of sample pairs.

Zhang et al., "mixup: Beyond Empirical Risk Minimization" (ICLR 2018), as timm's ``Mixup`` (batch mode)
does it: each training batch draws one ``lam ~ Beta(alpha, alpha)`` and a random pairing of its rows,
and trains on ``lam * x + (1 - lam) * x[perm]`` against the soft target ``lam * y + (1 - lam) * y[perm]``
(one-hot class ids mixed into class probabilities; label smoothing still applies on top, in the loss).
It regularises towards linear behaviour between training samples, which helps where the test data lie
between the training data (a new speaker, a new writer) rather than on them.

What is mixed: every floating-point input array (a fused model's dict of modalities alike); attention
masks become the union of the pair's masks (a position is read when it is real in either sample). What
refuses it (`ConfigError` naming ``training.mixup``): integer token ids (a text modality: ids cannot be
interpolated), output arrays (per-query tasks) and targets that are not one class id per sample.

The draw is a pure function of ``(training.seed, step)``, so a resumed run mixes exactly as the
uninterrupted one would, and every process of a distributed run draws the same pairing and ``lam``.
Validation, test and prediction never see it.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from gperc_core.errors import ConfigError
from gperc_core.model.sentinels import IGNORE_INDEX, resolve_mask, resolve_output_array

__all__ = ["Mixup", "mix_batch", "check_mixable"]

_SALT = 0x6D69_7875  # keeps the mixup stream apart from the other generators seeded by training.seed


def _arrays(value: Any) -> list[tuple[str, Any]]:
    """``(name, array)`` for one input array or each modality of a dict."""
    if isinstance(value, Mapping):
        return [(f"input_array[{name!r}]", array) for name, array in value.items()]
    return [("input_array", value)]


def check_mixable(batch: Mapping[str, Any]) -> None:
    """Raise `ConfigError` (naming ``training.mixup``) when ``batch`` cannot be mixed: integer input
    arrays, an output array, or a target that is not one class id per sample."""
    for name, array in _arrays(batch["input_array"]):
        if not isinstance(array, torch.Tensor) or not array.dtype.is_floating_point:
            dtype = array.dtype if isinstance(array, torch.Tensor) else type(array).__name__
            raise ConfigError(f"training.mixup: expected floating-point input arrays to interpolate, got {name} "
                              f"of {dtype} (token ids cannot be mixed; set training.mixup = 0)")
    if resolve_output_array(batch.get("output_array")) is not None:
        raise ConfigError("training.mixup: expected a task with one prediction per sample, got a batch with an "
                          "output array (per-query targets; set training.mixup = 0)")
    target = batch.get("target")
    if not isinstance(target, torch.Tensor) or target.dim() != 1 or target.dtype.is_floating_point:
        shape = list(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ConfigError(f"training.mixup: expected one integer class id per sample (a [batch] target), got {shape}")


def _union(mask: Any, perm: torch.Tensor) -> Any:
    """The union of ``mask`` (or each modality's mask in a dict) and its permuted rows."""
    if isinstance(mask, Mapping):
        return {name: _union(m, perm) for name, m in mask.items()}
    real = resolve_mask(mask)
    if real is None:
        return mask
    real = real.bool()
    return real | real[perm]


def _mix(value: Any, perm: torch.Tensor, lam: float) -> Any:
    if isinstance(value, Mapping):
        return {name: _mix(v, perm, lam) for name, v in value.items()}
    return value * lam + value[perm] * (1.0 - lam)


def mix_batch(batch: Mapping[str, Any], num_classes: int, lam: float, perm: torch.Tensor) -> dict[str, Any]:
    """Return ``batch`` with its inputs mixed with the rows ``perm`` by weight ``lam`` and its target
    replaced by the ``[batch, num_classes]`` class probabilities of the mix (rows whose target is
    `IGNORE_INDEX`, e.g. the padding rows of a distributed step, stay all-zero: no loss)."""
    check_mixable(batch)
    target = batch["target"]
    labelled = target != IGNORE_INDEX
    one_hot = torch.nn.functional.one_hot(target.clamp(min=0).long(), num_classes).float()
    soft = lam * one_hot + (1.0 - lam) * one_hot[perm]
    soft *= (labelled & labelled[perm]).unsqueeze(1)  # a row mixed with a padding row carries no label
    out = dict(batch)
    out["input_array"] = _mix(batch["input_array"], perm, lam)
    if batch.get("attention_mask") is not None:
        out["attention_mask"] = _union(batch["attention_mask"], perm)
    out["target"] = soft
    return out


class Mixup:
    """Mix each training batch (see the module docstring): ``mixup(batch, step)`` returns the mixed batch.

    ``alpha`` is the Beta distribution's parameter (larger: mixes nearer half and half), ``num_classes``
    the width of the soft targets, ``seed`` the run's ``training.seed``.
    """

    def __init__(self, alpha: float, num_classes: int, seed: int = 0) -> None:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
            raise ConfigError(f"training.mixup: expected a number > 0, got {alpha!r}")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ConfigError(f"training.mixup: expected a classifier of >= 2 classes, got num_classes={num_classes!r}")
        self.alpha = float(alpha)
        self.num_classes = num_classes
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"Mixup(alpha={self.alpha}, num_classes={self.num_classes}, seed={self.seed})"

    def draw(self, step: int, rows: int) -> tuple[float, torch.Tensor]:
        """Return ``(lam, perm)`` of training step ``step`` for a batch of ``rows`` rows."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + step) ^ _SALT)
        # Beta(alpha, alpha) from two gammas of the seeded stream (`Beta.sample` takes no generator).
        a = torch._standard_gamma(torch.full((2,), self.alpha, dtype=torch.float64), generator=generator)
        lam = float(a[0] / a.sum()) if float(a.sum()) > 0 else 0.5
        perm = torch.randperm(rows, generator=generator)
        return lam, perm

    def __call__(self, batch: Mapping[str, Any], step: int) -> dict[str, Any]:
        target = batch["target"]
        lam, perm = self.draw(step, int(target.shape[0]))
        return mix_batch(batch, self.num_classes, lam, perm)
