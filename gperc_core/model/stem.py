"""A convolutional stem: learned local features of a grid input before the Perceiver reads it.

A Perceiver's encoder sees each input element on its own (plus its position): whatever is local
(edges of an image, formants moving across frames) has to be found by the cross-attention and the
latents. A few convolutions first give each element its neighbourhood and, with strides, make the
grid shorter for the cross-attention, as the Perceiver IO ImageNet models' ``conv`` preprocessor
(one 7x7 stride-2 convolution and a max-pool) and Whisper's audio encoder (two 3-wide convolutions,
the second with stride 2) do. ``PerceiverConfig.input_stem`` describes it::

    input_stem = { channels = [32, 64], strides = [2, 2], kernel_size = 3 }

Each layer is a ``kernel_size``-wide convolution over the axes of ``input_pos_shape`` (1, 2 or 3 of
them; the input's channels, or the token embedding's, are the convolution's channels) with "same"
padding and its stride, followed by a GELU. The grid after the stem is ``ceil(n / stride)`` per axis
for each layer (`stem_shape`); the position encoding is built for that grid. Over token ids it is
a learned n-gram detector, as in convolutional text classifiers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gperc_core.config.stem import check_stem
from gperc_core.errors import InputError

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvStem(nn.Module):
    """The convolutional stem of ``input_stem`` over inputs on the grid ``grid`` with ``in_channels``
    channels. ``forward(input_array, attention_mask=None)`` takes ``[b, m, in_channels]`` (the whole
    grid in row-major order; on a 1-D grid any ``m <= grid[0]``) and returns ``(features, mask)``:
    ``[b, m', channels[-1]]`` on the grid the stem leaves and the mask of its elements (``None`` without
    one). Masked elements read as zeros to every layer, so a right-padded sequence gives its real
    elements exactly what the unpadded one gives; an element of the shorter grid is real when the
    input element at its centre is (the mask strided like the layers)."""

    def __init__(self, stem: Mapping[str, Any], grid: Sequence[int], in_channels: int) -> None:
        super().__init__()
        spec = check_stem(stem, grid)
        self.grid = tuple(int(n) for n in grid)
        self.strides = tuple(spec["strides"])
        conv = _CONV[len(self.grid)]
        k = spec["kernel_size"]
        widths = [in_channels, *spec["channels"]]
        self.layers = nn.ModuleList(conv(widths[i], widths[i + 1], k, stride=stride, padding=k // 2)
                                    for i, stride in enumerate(self.strides))

    def forward(self, input_array: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, m, c = input_array.shape
        if len(self.grid) > 1 and m != math.prod(self.grid):
            raise InputError(f"input_array: expected the whole grid {list(self.grid)} ({math.prod(self.grid)} "
                             f"elements on axis 1) with input_stem, got {m}")
        grid = self.grid if len(self.grid) > 1 else (m,)
        x = input_array.transpose(1, 2).reshape(b, c, *grid)
        keep = None if attention_mask is None else (attention_mask != 0).reshape(b, 1, *grid)
        for conv, stride in zip(self.layers, self.strides):
            if keep is not None:
                x = x * keep.to(x.dtype)
            x = F.gelu(conv(x))
            if keep is not None and stride > 1:
                keep = keep[(slice(None), slice(None)) + (slice(None, None, stride),) * len(grid)]
        mask = None if keep is None else keep.flatten(1)
        return x.flatten(2).transpose(1, 2), mask
