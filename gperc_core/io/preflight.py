"""Check before you build: a checkpoint's config against its weights file, before any allocation.

`read_header` reads a safetensors file's header (8-byte little-endian length + JSON: each tensor's
dtype, shape and byte range) without reading a tensor, and checks that every declared tensor fits
in the file, so a header cannot promise more memory than the file holds. `expected_state` builds
the model a config describes on the meta device (shapes and dtypes, no memory), and `check_weights`
compares the two: a missing or extra tensor, a shape or a dtype kind that differs is a
`CheckpointError` naming the config field that implies the shape, the expected value (read from the
weights) and the actual one (in ``config.json``). Buffers a model computes rather than loads
(sinusoid and Fourier position tables) are bounded too. `preflight` runs all of it for a checkpoint
folder, after `gperc_core.config.bounds.check_model_bounds` has bounded the config by arithmetic.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from gperc_core.config.bounds import check_model_bounds
from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import CheckpointError, ConfigError

MAX_HEADER_BYTES = 100 * 2 ** 20
"""The largest safetensors header read (the format's own limit)."""

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
_TORCH_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                 torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                 torch.bool: "BOOL"}

Build = Callable[[PerceiverConfig], torch.nn.Module]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors header or of a model: ``dtype`` (safetensors spelling) and ``shape``."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        """``"float"``, ``"int"`` or ``"bool"``: what a load may convert between (precision only)."""
        return "float" if self.dtype.startswith(("F", "BF")) else ("bool" if self.dtype == "BOOL" else "int")


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """Return tensor name -> `TensorInfo` of the safetensors file ``path``, reading only its header.

    A missing file, a header that is not JSON, an unknown dtype, a negative dimension, or a tensor
    whose byte range does not fit its shape or the file is a `CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: expected a safetensors file, found none")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a readable safetensors file (expected at least 8 bytes, got {len(head)})")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path}: not a readable safetensors file (header length {n} exceeds the file "
                                  f"of {size} bytes or the {MAX_HEADER_BYTES}-byte limit)")
        raw = handle.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a readable safetensors file (header is not a JSON object)")
    data_bytes = size - 8 - n
    out: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        out[name] = _entry(path, name, entry, data_bytes)
    return out


def _entry(path: Path, name: str, entry: Any, data_bytes: int) -> TensorInfo:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise CheckpointError(f"{where}: expected a header entry {{dtype, shape, data_offsets}}, got {entry!r:.80}")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise CheckpointError(f"{where}: dtype: expected one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise CheckpointError(f"{where}: shape: expected a list of integers >= 0, got {shape!r:.80}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes):
        raise CheckpointError(f"{where}: data_offsets: expected [begin, end] within the file's {data_bytes} data "
                              f"bytes, got {offsets!r:.80} (truncated or corrupted file)")
    need = math.prod(shape) * DTYPE_BYTES[dtype]
    if offsets[1] - offsets[0] != need:
        raise CheckpointError(f"{where}: expected {need} bytes for shape {shape} {dtype}, got a byte range of "
                              f"{offsets[1] - offsets[0]}")
    return TensorInfo(dtype, tuple(shape))


def expected_state(build: Build, config: PerceiverConfig) -> tuple[dict[str, TensorInfo], int]:
    """Build ``build(config)`` on the meta device (no memory); return its state dict as name ->
    `TensorInfo` and the bytes of the buffers it computes rather than loads (non-persistent)."""
    with torch.device("meta"):
        model = build(config)
    state = {k: TensorInfo(_TORCH_DTYPES.get(v.dtype, str(v.dtype)), tuple(v.shape))
             for k, v in model.state_dict().items()}
    persistent = {id(v) for v in model.state_dict().values()}
    derived = sum(b.numel() * b.element_size() for b in model.buffers() if id(b) not in persistent)
    return state, derived


def derived_limit() -> int:
    """The most bytes of computed buffers a loaded model may need: a quarter of the physical memory
    (16 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (AttributeError, ValueError, OSError):
        return 2 ** 34


def _blame(config: PerceiverConfig, build: Build, name: str, want: TensorInfo, got: TensorInfo) -> str | None:
    """Name the config field behind a shape mismatch of tensor ``name``: the field whose value is the
    differing dimension and which, set to the weights' value, gives the weights' shape (tried on the
    meta device). Returns ``"field: expected X, got Y"`` or ``None``."""
    values = config.to_dict()
    for w, g in zip(want.shape, got.shape):
        if w == g:
            continue
        fields = [k for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool) and v == w]
        for field in fields:
            try:
                trial, _ = expected_state(build, config.replace(**{field: g}))
            except (ConfigError, ValueError, TypeError, RuntimeError):
                continue
            if trial.get(name) == got:
                return f"{field}: expected {g}, got {w}"
        if fields:
            return f"{' / '.join(fields)}: expected {g}, got {w}"
    return None


def check_weights(config: PerceiverConfig, build: Build, header: Mapping[str, TensorInfo], source: str,
                  config_source: str = "config.json") -> None:
    """Compare the model ``build(config)`` would be (built on the meta device) with the weights file's
    ``header``; raise `CheckpointError` naming the field, the expected and the actual value."""
    try:
        expected, derived = expected_state(build, config)
    except ConfigError as exc:
        raise CheckpointError(f"{config_source}: {exc}") from exc
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: expected the tensors of {config_source}'s model, got "
                              f"{len(missing)} missing {missing[:3]} and {len(unexpected)} unexpected {unexpected[:3]}")
    for name, want in expected.items():
        got = header[name]
        if want.shape != got.shape:
            blame = _blame(config, build, name, want, got) if len(want.shape) == len(got.shape) else None
            raise CheckpointError(f"{source}: checkpoint does not match the model's config (shape mismatch: "
                                  f"{config_source} {blame or 'fields'}; {name} has shape {list(got.shape)} in the "
                                  f"weights, the config implies {list(want.shape)})")
        if want.kind != got.kind:
            raise CheckpointError(f"{source}: {name}: expected a {want.kind} dtype like {want.dtype}, got {got.dtype}")
    if derived > derived_limit():
        raise CheckpointError(f"{config_source}: expected a model whose computed position tables fit in "
                              f"{derived_limit():,} bytes, got one needing {derived:,} (input_len / input_pos_shape "
                              f"{config.input_len} / {config.input_pos_shape})")


def check_config(config: PerceiverConfig | Mapping[str, Any], source: str) -> None:
    """Bound ``config``'s sizes by arithmetic; a size beyond gperc's sanity bounds is a `CheckpointError`
    naming ``source`` and the field."""
    values = config.to_dict() if isinstance(config, PerceiverConfig) else config
    try:
        check_model_bounds(values, where=f"{source} ")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc


def preflight(config: PerceiverConfig, weights: str | Path, build: Build, config_source: str = "config.json"
              ) -> PerceiverConfig:
    """Check a checkpoint before building it: ``config``'s sizes against sane bounds, then the header of
    the weights file ``weights`` against ``build(config)`` built on the meta device. Returns ``config``;
    every failure is a `CheckpointError` naming the file, the field, the expected and the actual value."""
    check_config(config, config_source)
    check_weights(config, build, read_header(weights), str(weights), config_source)
    return config


__all__ = ["TensorInfo", "read_header", "expected_state", "check_weights", "check_config", "preflight",
           "derived_limit", "MAX_HEADER_BYTES", "DTYPE_BYTES"]
