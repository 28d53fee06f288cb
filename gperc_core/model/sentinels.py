"""Sentinel tensors: how an absent optional input travels where every input must be a tensor.

A sentinel is one scalar per sample, shape ``[batch]``, every element equal to the sentinel value.
Real attention masks are ``[batch, m]`` and real output arrays ``[batch, o, e]``, so a sentinel is
recognised by its shape first and its value second, never by a mean. This is the only module
that spells the sentinel values and the ignore index of targets.
"""

from __future__ import annotations

import torch

from gperc_core.errors import InputError, describe

MASK_SENTINEL: int = -69
"""Value of an attention-mask sentinel: "this batch has no attention mask"."""

OUTPUT_SENTINEL: int = -420
"""Value of an output-array sentinel: "this batch has no output array"."""

IGNORE_INDEX: int = -100
"""Target value of a position without a label: the loss and the metrics skip it (padding of dense
targets, unmasked positions of masked-token tasks, the rows a distributed step pads with)."""


def mask_sentinel(batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Return the ``[batch_size]`` tensor that stands for "no attention mask"."""
    return torch.full((batch_size,), MASK_SENTINEL, dtype=torch.long, device=device)


def output_sentinel(batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Return the ``[batch_size]`` tensor that stands for "no output array"."""
    return torch.full((batch_size,), OUTPUT_SENTINEL, dtype=torch.long, device=device)


def _is_sentinel(tensor: object, value: int, name: str) -> bool:
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 1:
        return False
    if torch.compiler.is_compiling():
        return True  # shape decides under compile; the eager path checks the value
    if tensor.numel() and bool((tensor == value).all()):
        return True
    raise InputError(f"{name}: a 1-D tensor is only accepted as the sentinel (every element {value}), "
                     f"got {describe(tensor)} with other values")


def is_mask_sentinel(tensor: object) -> bool:
    """True when ``tensor`` is the "no attention mask" sentinel; a 1-D tensor of other values is an error."""
    return _is_sentinel(tensor, MASK_SENTINEL, "attention_mask")


def is_output_sentinel(tensor: object) -> bool:
    """True when ``tensor`` is the "no output array" sentinel; a 1-D tensor of other values is an error."""
    return _is_sentinel(tensor, OUTPUT_SENTINEL, "output_array")


def resolve_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Return ``None`` for an absent mask or its sentinel, otherwise the mask unchanged."""
    if attention_mask is None or is_mask_sentinel(attention_mask):
        return None
    return attention_mask


def resolve_output_array(output_array: torch.Tensor | None) -> torch.Tensor | None:
    """Return ``None`` for an absent output array or its sentinel, otherwise the array unchanged."""
    if output_array is None or is_output_sentinel(output_array):
        return None
    return output_array
