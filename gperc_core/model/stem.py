"""A convolutional stem: learned local features of a grid input before the Perceiver reads it.

A Perceiver's encoder sees each input element on its own (plus its position): whatever is local
(edges of an image, formants moving across frames) has to be found by the cross-attention and the
latents. A few convolutions first give each element its neighbourhood and, with strides, make the
grid shorter for the cross-attention, as the Perceiver IO ImageNet models' ``conv`` preprocessor
(one 7x7 stride-2 convolution and a max-pool) and Whisper's audio encoder (two 3-wide convolutions,
the second with stride 2) do. ``PerceiverConfig.input_stem`` describes it::

    input_stem = { channels = [32, 64], strides = [2, 2], kernel_size = 3 }

Each layer is a ``kernel_size``-wide convolution over the axes of ``input_pos_shape`` (1, 2 or 3 of
them; the input's channels are the convolution's channels) with "same" padding and its stride,
followed by a GELU. The grid after the stem is ``ceil(n / stride)`` per axis for each layer
(`stem_shape`); the position encoding is built for that grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from gperc_core.config.stem import check_stem
from gperc_core.errors import InputError

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvStem(nn.Module):
    """The convolutional stem of ``input_stem`` over inputs on the grid ``grid`` with ``in_channels``
    channels. ``forward`` takes ``[b, prod(grid), in_channels]`` and returns
    ``[b, prod(stem_shape(grid)), channels[-1]]`` (elements in row-major grid order)."""

    def __init__(self, stem: Mapping[str, Any], grid: Sequence[int], in_channels: int) -> None:
        super().__init__()
        spec = check_stem(stem, grid)
        self.grid = tuple(int(n) for n in grid)
        conv = _CONV[len(self.grid)]
        k = spec["kernel_size"]
        layers: list[nn.Module] = []
        width = in_channels
        for out, stride in zip(spec["channels"], spec["strides"]):
            layers += [conv(width, out, k, stride=stride, padding=k // 2), nn.GELU()]
            width = out
        self.layers = nn.Sequential(*layers)

    def forward(self, input_array: torch.Tensor) -> torch.Tensor:
        b, m, c = input_array.shape
        if m != math.prod(self.grid):
            raise InputError(f"input_array: expected the whole grid {list(self.grid)} ({math.prod(self.grid)} "
                             f"elements on axis 1) with input_stem, got {m}")
        x = input_array.transpose(1, 2).reshape(b, c, *self.grid)
        x = self.layers(x)
        return x.flatten(2).transpose(1, 2)
