"""The settings of a convolutional input stem (``PerceiverConfig.input_stem``): their check and the grid
the stem leaves (`gperc_core.model.stem.ConvStem` is the module)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gperc_core.errors import ConfigError

STEM_KEYS = ("channels", "strides", "kernel_size")
"""The settings of ``input_stem``: ``channels`` (required), ``strides`` (default 1 per layer) and
``kernel_size`` (odd, default 3)."""


def check_stem(stem: Any, grid: Sequence[int]) -> dict[str, Any]:
    """Check an ``input_stem`` value against the input grid ``grid``; returns it with defaults filled in
    (``{"channels": [...], "strides": [...], "kernel_size": k}``). Raises `ConfigError` naming the key,
    the expected and the actual value."""
    if not isinstance(stem, Mapping):
        raise ConfigError(f"input_stem: expected None or a table {{channels, strides, kernel_size}}, got {stem!r}")
    unknown = sorted(set(stem) - set(STEM_KEYS))
    if unknown:
        raise ConfigError(f"input_stem: expected keys among {list(STEM_KEYS)}, got unknown {unknown}")
    channels = stem.get("channels")
    if (not isinstance(channels, (list, tuple)) or not channels
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)):
        raise ConfigError(f"input_stem.channels: expected a non-empty list of positive integers (one per layer), "
                          f"got {channels!r}")
    strides = stem.get("strides", [1] * len(channels))
    if (not isinstance(strides, (list, tuple)) or len(strides) != len(channels)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in strides)):
        raise ConfigError(f"input_stem.strides: expected one positive integer per layer ({len(channels)}), "
                          f"got {strides!r}")
    kernel = stem.get("kernel_size", 3)
    if not isinstance(kernel, int) or isinstance(kernel, bool) or kernel <= 0 or kernel % 2 == 0:
        raise ConfigError(f"input_stem.kernel_size: expected an odd positive integer, got {kernel!r}")
    if not 1 <= len(grid) <= 3:
        raise ConfigError(f"input_stem: expected an input grid (input_pos_shape) of 1 to 3 axes, got {list(grid)}")
    return {"channels": list(channels), "strides": list(strides), "kernel_size": kernel}


def stem_shape(grid: Sequence[int], stem: Mapping[str, Any] | None) -> tuple[int, ...]:
    """Return the grid after the stem: each layer takes every axis ``n`` to ``ceil(n / stride)``;
    ``grid`` itself without a stem."""
    shape = tuple(int(n) for n in grid)
    if stem is None:
        return shape
    for stride in stem.get("strides", [1] * len(stem["channels"])):
        shape = tuple(math.ceil(n / stride) for n in shape)
    return shape
