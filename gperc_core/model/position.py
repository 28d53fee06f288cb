"""Position encodings: trainable, sinusoid and N-dimensional Fourier features."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from gperc_core.errors import ConfigError


def fourier_features(shape: Sequence[int], num_bands: int,
                     max_resolution: Sequence[float] | None = None, *, concat_pos: bool = True,
                     sine_only: bool = False) -> torch.Tensor:
    """Return the Perceiver's Fourier position features of an N-D grid.

    Positions run over ``[-1, 1]`` on each axis; frequencies are spaced linearly from 1 to half the
    axis' maximum resolution (``max_resolution``, by default ``shape``). For each axis the features
    are ``[pos, sin(pi f pos) for each band, cos(pi f pos) for each band]``, laid out as all
    positions, then all sines (axis-major), then all cosines: the order of DeepMind's and
    `transformers`' Perceivers. ``concat_pos=False`` leaves the positions out; ``sine_only=True``
    the cosines.

    Returns a float32 tensor of shape ``[prod(shape), len(shape) * (2 * num_bands + 1)]`` (by
    default) in row-major order of ``shape``.
    """
    shape = [int(s) for s in shape]
    if not shape or any(s <= 0 for s in shape):
        raise ConfigError(f"shape: expected positive axis sizes, got {shape}")
    if int(num_bands) <= 0:
        raise ConfigError(f"num_bands: expected a positive integer, got {num_bands!r}")
    resolution = list(max_resolution) if max_resolution is not None else shape
    if len(resolution) != len(shape):
        raise ConfigError(f"max_resolution: expected {len(shape)} values, got {list(resolution)}")
    axes = [torch.linspace(-1.0, 1.0, s, dtype=torch.float64) for s in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))  # [P, d]
    sines, cosines = [], []
    for axis, res in enumerate(resolution):
        freqs = torch.linspace(1.0, max(float(res) / 2.0, 1.0), int(num_bands), dtype=torch.float64)
        angles = math.pi * grid[:, axis:axis + 1] * freqs[None, :]  # [P, K]
        sines.append(torch.sin(angles))
        cosines.append(torch.cos(angles))
    feats = ([grid] if concat_pos else []) + sines + ([] if sine_only else cosines)
    return torch.cat(feats, dim=-1).to(torch.float32)


def sinusoid_encoding(num_index_items: int, emb_dim: int) -> torch.Tensor:
    """Return the Transformer's fixed sinusoid table, shape ``[num_index_items, emb_dim]``."""
    position = torch.arange(num_index_items, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, emb_dim, 2, dtype=torch.float64) * (-math.log(10000.0) / emb_dim))
    table = torch.zeros(num_index_items, emb_dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : emb_dim // 2]
    return table.to(torch.float32)


def build_position_encoding(position_encoding_type: str, config, num_index_items: int,
                            emb_dim: int) -> nn.Parameter:
    """Return a ``[num_index_items, emb_dim]`` position table as an `nn.Parameter` (gperc's API).

    ``"trainable"`` is learned, initialised from N(0, ``config.pos_init_std``); ``"sinusoid"`` and
    ``"fourier"`` are fixed (``requires_grad=False``). ``"fourier"`` uses ``config.input_pos_shape``
    when its product equals ``num_index_items`` (N-D features), a 1-D grid otherwise, with
    ``config.fourier_num_bands`` bands, zero-padded to ``emb_dim`` channels.
    """
    if not isinstance(num_index_items, int) or num_index_items <= 0:
        raise ConfigError(f"num_index_items: expected a positive integer, got {num_index_items!r}")
    if not isinstance(emb_dim, int) or emb_dim <= 0:
        raise ConfigError(f"emb_dim: expected a positive integer, got {emb_dim!r}")
    if position_encoding_type == "trainable":
        std = float(getattr(config, "pos_init_std", 0.02))
        return nn.Parameter(torch.randn(num_index_items, emb_dim) * std)
    if position_encoding_type == "sinusoid":
        return nn.Parameter(sinusoid_encoding(num_index_items, emb_dim), requires_grad=False)
    if position_encoding_type == "fourier":
        shape = list(getattr(config, "input_pos_shape", None) or [num_index_items])
        if math.prod(shape) != num_index_items:
            shape = [num_index_items]
        bands = int(getattr(config, "fourier_num_bands", 16))
        feats = fourier_features(shape, bands, getattr(config, "fourier_max_resolution", None))
        if feats.shape[1] > emb_dim:
            raise ConfigError(f"fourier_num_bands: {bands} bands over {len(shape)} axes give {feats.shape[1]} "
                              f"channels, more than emb_dim={emb_dim}; expected at most "
                              f"{(emb_dim // len(shape) - 1) // 2} bands")
        table = torch.zeros(num_index_items, emb_dim)
        table[:, : feats.shape[1]] = feats
        return nn.Parameter(table, requires_grad=False)
    raise ConfigError(f"position_encoding_type: expected 'trainable', 'sinusoid' or 'fourier', "
                      f"got {position_encoding_type!r}")
