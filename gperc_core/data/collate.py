"""Sentinel-aware collation: a list of `InputArray` samples into one padded batch dict.

The batch dict has four keys:

- ``input_array``: float ``[b, m, c]`` (raw samples) or long ``[b, m]`` (token ids), padded to the
  longest sample or to ``pad_to``; raw samples pad with ``pad_value``, token ids with 0.
- ``attention_mask``: bool ``[b, m]`` (True = real element), or ``None`` when no sample needed padding
  and none carried its own mask (the ``[b]`` mask sentinel instead of ``None`` with ``sentinels=True``).
- ``output_array``: float ``[b, o, e]`` from the samples' per-sample query arrays, padded with zeros
  to the longest ``o``; ``None`` (or the ``[b]`` output sentinel) when no sample has one.
- ``target``: long ``[b]`` for integer targets; long ``[b, o]`` padded with ``target_pad`` (`IGNORE_INDEX`, the
  ignore index of ``cross_entropy``) for per-query targets; float targets stacked; ``None`` when no
  sample has a target.

Per-query targets pad to the padded output length when the samples carry output arrays, to the
padded input length when every target is as long as its input (labels per input position, e.g.
masked language modelling), and to the longest target otherwise.

Each padded tensor (inputs, masks, outputs, targets) is one preallocated tensor filled with its padding
value, into which each sample's slice is copied; the only Python loops run once per sample (to
validate it and to copy its slice), never per element.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from gperc_core.errors import InputError, describe
from gperc_core.model.sentinels import IGNORE_INDEX, mask_sentinel, output_sentinel
from gperc_core.plugins.specs import Batch, InputArray

__all__ = ["Collator", "collate"]


@dataclass(frozen=True)
class _Kind:
    """What the first sample says every sample must look like."""

    tokens: bool
    channels: int | None
    dtype: torch.dtype


class Collator:
    """Batch `InputArray` samples into the dict the `Perceiver` and the trainer read.

    ``pad_to`` fixes the padded input length (a longer sample is an `InputError`); ``sentinels=True``
    emits the ``[batch]`` sentinels of `gperc_core.model.sentinels` instead of ``None`` for an absent mask
    or output array (DataLoader workers, pipelines, export); ``pad_value`` fills padded raw input
    elements; ``target_pad`` fills padded per-query targets.
    """

    def __init__(self, pad_to: int | None = None, sentinels: bool = False, pad_value: float = 0.0,
                 target_pad: int = IGNORE_INDEX) -> None:
        if pad_to is not None and (not isinstance(pad_to, int) or isinstance(pad_to, bool) or pad_to <= 0):
            raise InputError(f"pad_to: expected a positive integer or None, got {pad_to!r}")
        if not isinstance(sentinels, bool):
            raise InputError(f"sentinels: expected True or False, got {sentinels!r}")
        if not isinstance(pad_value, numbers.Real) or isinstance(pad_value, bool):
            raise InputError(f"pad_value: expected a number, got {pad_value!r}")
        if not isinstance(target_pad, int) or isinstance(target_pad, bool):
            raise InputError(f"target_pad: expected an integer, got {target_pad!r}")
        self.pad_to = pad_to
        self.sentinels = sentinels
        self.pad_value = float(pad_value)
        self.target_pad = target_pad

    def __repr__(self) -> str:
        return (f"Collator(pad_to={self.pad_to}, sentinels={self.sentinels}, pad_value={self.pad_value}, "
                f"target_pad={self.target_pad})")

    def __call__(self, examples: Sequence[InputArray]) -> Batch:
        """Return the batch dict of ``examples`` (see the module docstring for its keys)."""
        examples = _check_examples(examples)
        kind = _check_arrays(examples)
        lengths = torch.tensor([ex.array.shape[0] for ex in examples], dtype=torch.long)
        width = self._padded_length(lengths)
        input_array = self._pad_inputs(examples, kind, width)
        attention_mask = self._mask(examples, lengths, width)
        output_array, output_lengths = _outputs(examples)
        target = _targets(examples, output_lengths, lengths, width, self.target_pad)
        b = len(examples)
        if self.sentinels:
            device = input_array.device
            attention_mask = mask_sentinel(b, device) if attention_mask is None else attention_mask
            output_array = output_sentinel(b, device) if output_array is None else output_array
        return {"input_array": input_array, "attention_mask": attention_mask, "output_array": output_array,
                "target": target}

    # ----------------------------------------------------------------- pieces
    def _padded_length(self, lengths: torch.Tensor) -> int:
        longest = int(lengths.max())
        if self.pad_to is None:
            return longest
        if longest > self.pad_to:
            index = int(lengths.argmax())
            raise InputError(f"pad_to: expected every sample to have at most pad_to={self.pad_to} elements, "
                             f"got {longest} in examples[{index}]")
        return self.pad_to

    def _pad_inputs(self, examples: Sequence[InputArray], kind: _Kind, width: int) -> torch.Tensor:
        """One preallocated ``[b, width(, c)]`` tensor filled with the padding value, then each sample's slice."""
        if kind.tokens:
            return _stack_padded([ex.array for ex in examples], width, 0, torch.long)
        return _stack_padded([ex.array for ex in examples], width, self.pad_value, kind.dtype)

    @staticmethod
    def _mask(examples: Sequence[InputArray], lengths: torch.Tensor, width: int) -> torch.Tensor | None:
        has_own = any(ex.mask is not None for ex in examples)
        if not has_own and bool((lengths == width).all()):
            return None
        device = examples[0].array.device
        mask = torch.arange(width, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)
        if has_own:
            own = [ex.mask if ex.mask is not None else torch.ones(ex.array.shape[0], dtype=torch.bool, device=device)
                   for ex in examples]
            mask &= _stack_padded(own, width, False, torch.bool)
        return mask


def _stack_padded(tensors: Sequence[torch.Tensor], width: int, fill: float | int | bool,
                  dtype: torch.dtype) -> torch.Tensor:
    """Return ``[len(tensors), width, *rest]``: one preallocated tensor of ``fill``, each tensor copied into its
    row's leading slice (every tensor has at most ``width`` rows and the same trailing shape); the result
    lives on the first tensor's device."""
    out = torch.full((len(tensors), width, *tensors[0].shape[1:]), fill, dtype=dtype, device=tensors[0].device)
    for i, t in enumerate(tensors):
        out[i, :t.shape[0]] = t
    return out


def collate(examples: Sequence[InputArray], **kwargs: Any) -> Batch:
    """Collate ``examples`` in one call: ``Collator(**kwargs)(examples)``."""
    return Collator(**kwargs)(examples)


# --------------------------------------------------------------------- validation
def _check_examples(examples: Any) -> list[InputArray]:
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
        raise InputError(f"examples: expected a non-empty sequence of InputArray, got {describe(examples)}")
    if len(examples) == 0:
        raise InputError("examples: expected a non-empty sequence of InputArray, got an empty sequence")
    for i, ex in enumerate(examples):
        if not isinstance(ex, InputArray):
            raise InputError(f"examples[{i}]: expected an InputArray, got {type(ex).__name__}")
    return list(examples)


def _check_arrays(examples: Sequence[InputArray]) -> _Kind:
    """Check every sample's array, mask and output against the first sample; return the batch kind."""
    kind: _Kind | None = None
    for i, ex in enumerate(examples):
        array = ex.array
        if not isinstance(array, torch.Tensor):
            raise InputError(f"examples[{i}].array: expected a torch.Tensor, got {describe(array)}")
        if array.dim() == 1 and not array.dtype.is_floating_point and array.dtype != torch.bool \
                and not array.dtype.is_complex:
            this = _Kind(tokens=True, channels=None, dtype=torch.long)
        elif array.dim() == 2 and array.dtype.is_floating_point:
            this = _Kind(tokens=False, channels=int(array.shape[1]), dtype=array.dtype)
        else:
            raise InputError(f"examples[{i}].array: expected a float tensor [m, c] or integer token ids [m], "
                             f"got {describe(array)}")
        if array.shape[0] == 0:
            raise InputError(f"examples[{i}].array: expected at least one element, got {describe(array)}")
        if kind is None:
            kind = this
        elif this != kind:
            expected = "integer token ids [m]" if kind.tokens else f"a {kind.dtype} tensor [m, {kind.channels}]"
            raise InputError(f"examples[{i}].array: expected {expected} like examples[0], got {describe(array)}")
        _check_mask(i, ex.mask, int(array.shape[0]))
    assert kind is not None
    return kind


def _check_mask(i: int, mask: Any, m: int) -> None:
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (m,):
        raise InputError(f"examples[{i}].mask: expected a bool tensor [{m}] (one flag per element of its array), "
                         f"got {describe(mask)}")
    if not bool(mask.any()):
        raise InputError(f"examples[{i}].mask: expected at least one True (real) element, got all False")


def _outputs(examples: Sequence[InputArray]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Return the padded ``[b, o, e]`` output array and the per-sample ``o`` (or ``None, None``)."""
    present = [ex.output is not None for ex in examples]
    if not any(present):
        return None, None
    first = present.index(True)
    ref = examples[first].output
    for i, ex in enumerate(examples):
        out = ex.output
        if out is None:
            raise InputError(f"examples[{i}].output: expected an output array like examples[{first}] (every "
                             f"sample of a batch has one or none does), got None")
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or not out.dtype.is_floating_point \
                or out.shape[1] != ref.shape[1] or out.dtype != ref.dtype or out.shape[0] == 0:
            raise InputError(f"examples[{i}].output: expected a {ref.dtype} tensor [o>=1, {ref.shape[1]}] like "
                             f"examples[{first}], got {describe(out)}")
    outputs = [ex.output for ex in examples]
    lengths = torch.tensor([o.shape[0] for o in outputs], dtype=torch.long)
    return _stack_padded(outputs, int(lengths.max()), 0.0, ref.dtype), lengths


def _targets(examples: Sequence[InputArray], output_lengths: torch.Tensor | None, input_lengths: torch.Tensor,
             input_width: int, target_pad: int) -> torch.Tensor | None:
    """Return the batched targets (see the module docstring), or ``None`` when no sample has one."""
    targets = [ex.target for ex in examples]
    present = [t is not None for t in targets]
    if not any(present):
        return None
    if not all(present):
        i = present.index(False)
        raise InputError(f"examples[{i}].target: expected a target like the other samples (every sample of a "
                         f"batch has one or none does), got None")
    if all(type(t) is int for t in targets):  # the common case: class labels, one tensor at once
        return torch.tensor(targets, dtype=torch.long)
    tensors = [_as_tensor(i, t) for i, t in enumerate(targets)]
    ref = tensors[0]
    for i, t in enumerate(tensors):
        same_kind = (t.dtype.is_floating_point == ref.dtype.is_floating_point) and t.dim() == ref.dim()
        if not same_kind or (t.dim() > 1 and t.shape[1:] != ref.shape[1:]):
            raise InputError(f"examples[{i}].target: expected a target like examples[0] "
                             f"({describe(ref)}), got {describe(t)}")
    if ref.dim() == 0:
        return torch.stack(tensors).to(torch.float32 if ref.dtype.is_floating_point else torch.long)
    if ref.dtype.is_floating_point:
        if any(t.shape != ref.shape for t in tensors):
            i = next(i for i, t in enumerate(tensors) if t.shape != ref.shape)
            raise InputError(f"examples[{i}].target: expected float targets of one shape {tuple(ref.shape)} like "
                             f"examples[0], got {describe(tensors[i])}")
        return torch.stack(tensors).float()
    return _pad_query_targets(tensors, output_lengths, input_lengths, input_width, target_pad)


def _pad_query_targets(tensors: list[torch.Tensor], output_lengths: torch.Tensor | None,
                       input_lengths: torch.Tensor, input_width: int, target_pad: int) -> torch.Tensor:
    if tensors[0].dim() != 1:
        raise InputError(f"examples[0].target: expected an integer, a float, or integer labels [o] (one per "
                         f"output query), got {describe(tensors[0])}")
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    if output_lengths is not None:
        bad = (lengths != output_lengths).nonzero().flatten()
        if bad.numel():
            i = int(bad[0])
            raise InputError(f"examples[{i}].target: expected one label per output query "
                             f"({int(output_lengths[i])}), got {int(lengths[i])}")
        width = int(output_lengths.max())
    elif bool((lengths == input_lengths).all()):
        width = input_width
    else:
        width = int(lengths.max())
    return _stack_padded(tensors, width, target_pad, torch.long)


def _as_tensor(i: int, target: Any) -> torch.Tensor:
    if isinstance(target, torch.Tensor):
        tensor = target
    elif isinstance(target, bool):
        raise InputError(f"examples[{i}].target: expected an integer, a float or an integer array, got {target!r}")
    elif isinstance(target, numbers.Integral):
        tensor = torch.tensor(int(target), dtype=torch.long)
    elif isinstance(target, numbers.Real):
        tensor = torch.tensor(float(target), dtype=torch.float32)
    else:
        try:
            tensor = torch.as_tensor(target)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"examples[{i}].target: expected an integer, a float or an integer array, "
                             f"got {describe(target)}") from exc
    if tensor.dtype == torch.bool or tensor.dtype.is_complex:
        raise InputError(f"examples[{i}].target: expected an integer, a float or an integer array, "
                         f"got {describe(tensor)}")
    return tensor
