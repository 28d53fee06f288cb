"""`TextCollator`: the text modality's batches of token ids, padded in a few whole-batch tensor operations.

The core's `gperc_core.data.collate.Collator` handles every kind of sample (raw arrays, output
arrays, per-query targets) and validates and copies sample by sample. Text samples are always
1-D token ids, so this collator concatenates them once and scatters them into the padded batch
with one boolean-mask assignment: the Python work is one length per sample, never per token.
That is what pays when the core collates a whole split of a task at once.

It emits the same batch dict as the core's collator (``input_array`` long ``[b, m]`` padded with
``pad_id``, ``attention_mask`` bool ``[b, m]`` or ``None`` when nothing is padded, ``output_array``
``None``, ``target`` long ``[b]`` or ``[b, m]`` padded with ``target_pad``), with the ``[b]``
sentinels instead of ``None`` when ``sentinels=True``. ``multiple_of`` rounds the padded length up
(e.g. 8, for tensor cores). A batch it does not specialise in (samples with output arrays, targets
that are neither class ids nor one label per token) goes to the core's collator, padded to the same
length.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import torch

from gperc_core import InputArray, InputError
from gperc_core.data.collate import Collator
from gperc_core.model.sentinels import mask_sentinel, output_sentinel

from . import PLUGIN
from .arrays import IGNORE
from .tokenizers import PAD_ID


class TextCollator:
    """Batch text `InputArray` samples (token ids ``[m]``, optional mask and target) into a batch dict.

    ``pad_id`` fills padded ids, ``multiple_of`` (``None`` or a positive int) rounds the padded
    length up to a multiple, ``sentinels`` emits sentinel tensors for absent masks and output
    arrays, ``target_pad`` fills padded per-token targets.
    """

    def __init__(self, pad_id: int = PAD_ID, multiple_of: int | None = None, sentinels: bool = False,
                 target_pad: int = IGNORE) -> None:
        for name, value, low in (("pad_id", pad_id, 0), ("multiple_of", multiple_of, 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise InputError(f"{PLUGIN}: {name}: expected an integer >= {low}, got {value!r}")
        if not isinstance(sentinels, bool):
            raise InputError(f"{PLUGIN}: sentinels: expected True or False, got {sentinels!r}")
        self.pad_id = pad_id
        self.multiple_of = multiple_of
        self.sentinels = sentinels
        self.target_pad = target_pad

    def __repr__(self) -> str:
        return (f"TextCollator(pad_id={self.pad_id}, multiple_of={self.multiple_of}, sentinels={self.sentinels}, "
                f"target_pad={self.target_pad})")

    def __call__(self, examples: Sequence[InputArray]) -> dict[str, Any]:
        """Return the batch dict of ``examples`` (see the module docstring)."""
        arrays, lengths = _token_arrays(examples)
        width = int(lengths.max())
        if self.multiple_of:
            width = math.ceil(width / self.multiple_of) * self.multiple_of
        if any(ex.output is not None for ex in examples) or not _plain_targets(examples, lengths):
            return Collator(pad_to=width, sentinels=self.sentinels, target_pad=self.target_pad)(list(examples))
        b = len(arrays)
        real = torch.arange(width) < lengths.unsqueeze(1)
        input_array = torch.full((b, width), self.pad_id, dtype=torch.long).masked_scatter_(real, torch.cat(arrays).long())
        own = [ex.mask for ex in examples]
        if any(m is not None for m in own):
            attention_mask = torch.zeros(b, width, dtype=torch.bool).masked_scatter_(
                real, torch.cat([torch.ones(a.shape[0], dtype=torch.bool) if m is None else m
                                 for a, m in zip(arrays, own)]))
        else:
            attention_mask = None if width == int(lengths.min()) else real
        if self.sentinels and attention_mask is None:
            attention_mask = mask_sentinel(b)
        return {"input_array": input_array, "attention_mask": attention_mask,
                "output_array": output_sentinel(b) if self.sentinels else None,
                "target": self._targets(examples, real)}

    def _targets(self, examples: Sequence[InputArray], real: torch.Tensor) -> torch.Tensor | None:
        """Class ids ``[b]``, per-token labels ``[b, width]`` padded with ``target_pad``, or ``None``."""
        targets = [ex.target for ex in examples]
        if targets[0] is None:
            return None
        if isinstance(targets[0], torch.Tensor) and targets[0].dim() == 1:
            return torch.full(real.shape, self.target_pad, dtype=torch.long).masked_scatter_(
                real, torch.cat(targets).long())
        return torch.as_tensor([int(t) for t in targets], dtype=torch.long)


_ID_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _token_arrays(examples: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The samples' id arrays, checked to be non-empty 1-D integer tensors (one check per sample), and
    their lengths ``[b]``."""
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence) or not examples:
        raise InputError(f"{PLUGIN}: examples: expected a non-empty sequence of InputArray, got {type(examples).__name__}")
    arrays = [getattr(ex, "array", None) for ex in examples]
    shapes = [getattr(a, "shape", None) for a in arrays]
    for i, (a, shape) in enumerate(zip(arrays, shapes)):
        if not isinstance(a, torch.Tensor) or len(shape) != 1 or not shape[0] or a.dtype not in _ID_DTYPES:
            raise InputError(f"{PLUGIN}: examples[{i}].array: expected non-empty integer token ids [m], got "
                             f"{shape if shape is not None else type(a).__name__}")
        mask = examples[i].mask
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != shape):
            raise InputError(f"{PLUGIN}: examples[{i}].mask: expected a bool tensor [{shape[0]}], got "
                             f"{getattr(mask, 'shape', type(mask).__name__)}")
    return arrays, torch.tensor([shape[0] for shape in shapes], dtype=torch.long)


def _plain_targets(examples: Sequence[InputArray], lengths: torch.Tensor) -> bool:
    """Whether every target is absent, or every one is a class id, or every one is a 1-D integer
    tensor with one label per token (the cases this collator pads itself)."""
    targets = [ex.target for ex in examples]
    if all(t is None for t in targets) or all(type(t) is int for t in targets):
        return True
    if all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in targets):
        return True
    if all(isinstance(t, torch.Tensor) and t.dim() == 0 and not t.dtype.is_floating_point for t in targets):
        return True
    return all(isinstance(t, torch.Tensor) and t.dim() == 1 and not t.dtype.is_floating_point for t in targets) \
        and torch.equal(torch.tensor([t.shape[0] for t in targets]), lengths)


def text_collator(options: dict[str, Any] | None, sentinels: bool) -> TextCollator:
    """The collator the ``gperc_collator`` hook returns for ``options`` (``pad_multiple``: round the
    padded length up to a multiple of it; default none)."""
    multiple = (options or {}).get("pad_multiple")
    if multiple is not None and (not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1):
        raise InputError(f"{PLUGIN}: options['pad_multiple']: expected a positive integer, got {multiple!r}")
    return TextCollator(multiple_of=multiple, sentinels=sentinels)
