"""Checkpoints in a safe format, written atomically.

Tensors go to safetensors, everything else to JSON; nothing is ever unpickled. Every file is
written to a temporary file in the same folder, flushed and fsync'd, then renamed over the target,
so a crash or a full disk never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from gperc_core.config.bounds import check_model_bounds
from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import CheckpointError, ConfigError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 2 ** 20
"""The largest ``config.json`` read (real ones are about 1 KB)."""


def atomic_write_bytes(path: str | Path, data: bytes | Sequence[bytes]) -> Path:
    """Write ``data`` (bytes, or a sequence of chunks written in order) to ``path`` atomically
    (temporary file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file atomically (copied to CPU and made contiguous)."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write_bytes(path, _with_digest(save(flat, metadata=dict(metadata) if metadata else None)))


DIGEST_KEY = "gperc_sha256"
"""The header metadata key holding the SHA-256 of a safetensors file's data section (files written
before it existed load unverified)."""


def _split(raw: bytes) -> tuple[dict[str, Any], memoryview]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), memoryview(raw)[8 + n:]


def _with_digest(raw: bytes) -> list[bytes | memoryview]:
    """The chunks of safetensors bytes ``raw`` with the SHA-256 of its data section in the header's
    metadata (the data section is not copied)."""
    header, data = _split(raw)
    header.setdefault("__metadata__", {})[DIGEST_KEY] = hashlib.sha256(data).hexdigest()
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep the data section 8-byte aligned, as safetensors does
    return [struct.pack("<Q", len(encoded)), encoded, data]


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file; raise `CheckpointError` naming the file when it is missing or corrupted
    (a header that does not parse, or data whose SHA-256 differs from the one recorded at save)."""
    from safetensors.torch import load

    from gperc_core.io.preflight import read_header

    path = Path(path)
    read_header(path)  # a header that promises more than the file holds is refused before reading it
    raw = path.read_bytes()
    try:
        header, data = _split(raw)
        recorded = (header.get("__metadata__") or {}).get(DIGEST_KEY)
        tensors = load(raw)
    except Exception as exc:  # safetensors raises its own error type for corrupted headers/data
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        raise CheckpointError(f"{path}: expected data with SHA-256 {recorded} (recorded at save), got "
                              f"{hashlib.sha256(data).hexdigest()}: the file is corrupted")
    return {k: v.to(device) for k, v in tensors.items()}


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return the model's persistent state dict without wrapper prefixes (DDP, torch.compile)."""
    state = model.state_dict()
    out = {}
    for key, value in state.items():
        for prefix in ("_orig_mod.", "module."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_state_checked(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly; a missing, unexpected or mis-shaped key is a `CheckpointError`."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise CheckpointError(f"{source}: checkpoint does not match the model's config ({', '.join(parts)})")
    model.load_state_dict(dict(state), strict=True)


def save_model(model: torch.nn.Module, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for a Perceiver into ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "config", None)
    if not isinstance(config, PerceiverConfig):
        raise CheckpointError(f"model: expected a module with a PerceiverConfig at .config, got {type(config).__name__}")
    save_tensors(directory / WEIGHTS_FILE, model_state(model), metadata={"format": "pt", "library": "gperc"})
    atomic_write_json(directory / CONFIG_FILE, config.to_dict())
    return directory


def read_config(directory: str | Path) -> PerceiverConfig:
    """Read ``config.json`` of a checkpoint folder into a `PerceiverConfig`.

    Lenient, so that every checkpoint written by gperc-core 0.1 loads: `LEGACY_KEYS` (plugin configs'
    data options) are dropped, other keys that are not fields are dropped with a `ConfigWarning`."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: expected a checkpoint folder with {CONFIG_FILE}, found none")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: expected a config of at most {MAX_CONFIG_BYTES} bytes, got "
                              f"{path.stat().st_size}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object of config fields, got {type(data).__name__}")
    try:
        check_model_bounds(data, where=f"{path} ")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    try:
        return PerceiverConfig.from_dict(data, strict=False)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def load_model(directory: str | Path, model_cls: type, map_location: str | torch.device = "cpu"):
    """Return a ``model_cls`` built from ``directory/config.json`` with ``model.safetensors`` loaded into it.

    Checked before anything is allocated (`gperc_core.io.preflight`): the config's sizes against
    sane bounds, and the model it describes (built on the meta device) against the weights file's
    header; a mismatch is a `CheckpointError` naming the field, the expected and the actual value."""
    from gperc_core.io.preflight import preflight

    config = preflight(read_config(directory), Path(directory) / WEIGHTS_FILE, model_cls,
                       str(Path(directory) / CONFIG_FILE))
    model = model_cls(config)
    state = load_tensors(Path(directory) / WEIGHTS_FILE, map_location)
    load_state_checked(model, state, str(Path(directory) / WEIGHTS_FILE))
    return model.to(map_location)
