"""Sane upper bounds on a model config's sizes, checked by arithmetic before anything is built.

A config read from a file (a checkpoint's ``config.json``, a task card's ``[model]`` table, a run's
``task.json`` overrides, a ``--set``) could ask for a model no machine holds (``latent_len = 10**9``);
`check_model_bounds` refuses it by name before a single tensor is allocated. The bounds are far
above any model gperc trains (a 16M-long input, a 16M-token vocabulary, 4096 layers), so they only
stop files that are corrupt or hostile.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from gperc_core.errors import ConfigError

MAX_SIZE = 2 ** 24
"""The largest length, width, vocabulary or class count a config may ask for."""

MAX_COUNT = 2 ** 12
"""The largest number of layers, heads, Fourier bands or ensemble members."""

MAX_WIDENING = 2 ** 8
"""The largest feed-forward widening factor."""

MAX_ELEMENTS = 2 ** 34
"""The largest product of two sizes (one weight matrix or position table: 64 GiB of float32)."""

SIZE_FIELDS = ("input_len", "input_dim", "latent_len", "latent_dim", "output_len", "output_dim", "ffw_latent",
               "ffw_output", "input_num_tokens", "n_classes")
COUNT_FIELDS = ("num_heads", "num_layers", "cross_heads", "self_heads", "decoder_heads", "fourier_num_bands",
                "ensemble_size")
WIDENING_FIELDS = ("cross_widening", "self_widening")
_PAIRS = (("input_len", "input_dim"), ("latent_len", "latent_dim"), ("output_len", "output_dim"),
          ("input_num_tokens", "input_dim"), ("latent_dim", "ffw_latent"), ("output_dim", "ffw_output"),
          ("n_classes", "output_dim"))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(where: str, key: str, value: Any, limit: float) -> None:
    if _number(value) and value > limit:
        raise ConfigError(f"{where}{key}: expected at most {int(limit):,} (gperc's sanity bound), got {value!r}")


def check_model_bounds(values: Mapping[str, Any], where: str = "") -> None:
    """Raise `ConfigError` naming the field (prefixed with ``where``, e.g. ``"config.json: "``) when a
    size in ``values`` (a config dict, or a card's ``[model]`` table) exceeds gperc's sanity bounds.
    Values of the wrong type are left to the config's own validation."""
    for key in SIZE_FIELDS:
        _check(where, key, values.get(key), MAX_SIZE)
    for key in COUNT_FIELDS:
        _check(where, key, values.get(key), MAX_COUNT)
    for key in WIDENING_FIELDS:
        _check(where, key, values.get(key), MAX_WIDENING)
    shape = values.get("input_pos_shape")
    if isinstance(shape, (list, tuple)) and shape and all(_number(s) for s in shape):
        _check(where, "input_pos_shape", math.prod(shape), MAX_SIZE)
    for a, b in _PAIRS:
        x, y = values.get(a), values.get(b)
        if _number(x) and _number(y) and x * y > MAX_ELEMENTS:
            raise ConfigError(f"{where}{a} x {b}: expected a product of at most {MAX_ELEMENTS:,} (gperc's sanity "
                              f"bound), got {x!r} x {y!r}")
    fusion = values.get("fusion")
    if isinstance(fusion, Mapping):
        for modality, entry in fusion.items():
            if isinstance(entry, Mapping):
                for key in ("input_len", "input_dim", "input_num_tokens"):
                    _check(where, f"fusion.{modality}.{key}", entry.get(key), MAX_SIZE)


__all__ = ["check_model_bounds", "MAX_SIZE", "MAX_COUNT", "MAX_WIDENING", "MAX_ELEMENTS"]
