"""Run folders and resumable training checkpoints, in the safe format of `gperc_core.io.checkpoint`.

A run folder written by the trainer holds::

    task.json                the task name, the card and the overrides (enough to rebuild the task)
    config.json              the model config (PerceiverConfig JSON)       } the final model,
    model.safetensors        the final weights                             } loadable on its own
    metrics.jsonl            one JSON line per logged step and evaluation
    curves.png               the training curves
    checkpoints/latest.json  {"path": "step-00000120"}: the newest complete checkpoint
    checkpoints/step-N/      config.json, model.safetensors, optimizer.safetensors + optimizer.json,
                             rng.safetensors, trainer_state.json

A checkpoint is written into a temporary folder, every file fsync'd, the folder renamed into place,
and only then is ``latest.json`` replaced (atomically); older checkpoints are deleted afterwards. A
crash or a full disk at any moment leaves the previous checkpoint complete and pointed to. Nothing
is pickled: tensors go to safetensors, everything else to JSON.
"""

from __future__ import annotations

import errno
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from gperc_core.io import checkpoint as ckpt
from gperc_core.errors import CheckpointError

TASK_FILE = "task.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "curves.png"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_META = "optimizer.json"
RNG_FILE = "rng.safetensors"
AVERAGES_FILE = "ema.safetensors"
"""The weight averages of ``training.ema_decay`` (`gperc_core.train.ema`) in a checkpoint folder."""
STATE_FILE = "trainer_state.json"


def checkpoints_dir(run_dir: str | Path) -> Path:
    """Return the folder of a run's resumable checkpoints."""
    return Path(run_dir) / CHECKPOINTS_DIR


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` is a run folder written by the trainer (it has ``task.json``)."""
    return (Path(path) / TASK_FILE).is_file()


def check_run_dir(path: str | Path) -> Path:
    """Return ``path`` as a `Path` if it is a run folder; raise `CheckpointError` saying what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"run folder {str(path)!r}: expected a folder written by 'gperc train', found none")
    if not is_run_dir(path):
        raise CheckpointError(f"run folder {str(path)!r}: expected a folder written by 'gperc train' (with "
                              f"{TASK_FILE}), got a folder without it")
    return path


def read_task_file(run_dir: str | Path) -> dict[str, Any]:
    """Return the contents of a run's ``task.json`` (task name, card, overrides)."""
    path = check_run_dir(run_dir) / TASK_FILE
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "task" not in data:
        raise CheckpointError(f"{path}: expected an object with key 'task', got {str(data)[:80]}")
    return data


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Return the newest complete checkpoint folder of a run, or ``None`` when it has none."""
    folder = checkpoints_dir(run_dir)
    pointer = folder / LATEST_FILE
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["path"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{pointer}: expected {{\"path\": \"step-N\"}}, got unreadable content ({exc})") from exc
    path = folder / name
    if not path.is_dir():
        raise CheckpointError(f"{pointer}: points to {name!r}, which does not exist")
    return path


# --------------------------------------------------------------------- optimizer state
def optimizer_to_safe(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors (for safetensors) and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    meta = {"param_groups": state["param_groups"], "scalars": scalars,
            "tensor_keys": sorted(tensors)}
    return tensors, meta


def optimizer_from_safe(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild an optimizer ``state_dict`` from `optimizer_to_safe`'s two halves."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# --------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, torch.Tensor]:
    """Return the torch CPU (and CUDA) generator states as tensors."""
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    return out


def set_rng_state(tensors: Mapping[str, torch.Tensor]) -> None:
    """Restore the states returned by `rng_state` (CUDA ones only where those devices exist)."""
    torch.set_rng_state(tensors["cpu"].to(torch.uint8))
    if torch.cuda.is_available():
        for key, value in tensors.items():
            if key.startswith("cuda.") and int(key.split(".")[1]) < torch.cuda.device_count():
                torch.cuda.set_rng_state(value.to(torch.uint8), int(key.split(".")[1]))


# --------------------------------------------------------------------- writing and reading
def write_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     trainer_state: Mapping[str, Any], keep: int = 1,
                     averages: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write a complete resumable checkpoint for ``step`` and point ``latest.json`` at it; returns its folder.
    ``averages`` (the weight averages of ``training.ema_decay``, by parameter name) go into ``AVERAGES_FILE``.

    All or nothing: on any error (a full disk included) the temporary folder is removed, the
    previous checkpoint stays the latest, and `CheckpointError` says so.
    """
    folder = checkpoints_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = folder / name
    previous = latest_checkpoint(run_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=folder))
    try:
        ckpt.save_model(model, tmp)
        tensors, meta = optimizer_to_safe(optimizer.state_dict())
        ckpt.save_tensors(tmp / OPTIMIZER_TENSORS, tensors)
        ckpt.atomic_write_json(tmp / OPTIMIZER_META, meta)
        ckpt.save_tensors(tmp / RNG_FILE, rng_state())
        if averages is not None:
            ckpt.save_tensors(tmp / AVERAGES_FILE, dict(averages))
        ckpt.atomic_write_json(tmp / STATE_FILE, dict(trainer_state))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        ckpt.atomic_write_json(folder / LATEST_FILE, {"path": name, "step": step})
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        reason = "disk full" if exc.errno == errno.ENOSPC else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"saving checkpoint {final} failed ({reason}); {kept}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(folder, keep=max(1, keep), latest=name)
    return final


def _prune(folder: Path, keep: int, latest: str) -> None:
    steps = sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    old = [p for p in steps if p.name != latest][: max(0, len(steps) - keep)]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint folder: ``weights``, ``optimizer`` (a state_dict), ``rng``, ``state``, ``config``
    and ``averages`` (the weight averages, or ``None`` for a run without ``training.ema_decay``).

    A missing or corrupted file is a `CheckpointError` naming it.
    """
    path = Path(path)
    config = ckpt.read_config(path)
    weights = ckpt.load_tensors(path / ckpt.WEIGHTS_FILE, device)
    opt_tensors = ckpt.load_tensors(path / OPTIMIZER_TENSORS, device)
    meta = _read_json(path / OPTIMIZER_META)
    missing = sorted(set(meta.get("tensor_keys", [])) - set(opt_tensors))
    if missing:
        raise CheckpointError(f"{path / OPTIMIZER_TENSORS}: missing optimizer tensors {missing[:3]}")
    rng = ckpt.load_tensors(path / RNG_FILE)
    state = _read_json(path / STATE_FILE)
    averages = ckpt.load_tensors(path / AVERAGES_FILE, device) if (path / AVERAGES_FILE).is_file() else None
    return {"config": config, "weights": weights, "optimizer": optimizer_from_safe(opt_tensors, meta),
            "rng": rng, "state": state, "averages": averages}


def check_same_config(path: str | Path, checkpoint: Any, ours: Any) -> None:
    """Raise `CheckpointError` naming up to five fields (checkpoint value vs now) when the
    `PerceiverConfig` ``checkpoint`` read from ``path`` differs from ``ours``."""
    theirs_d, ours_d = checkpoint.to_dict(), ours.to_dict()
    diff = sorted(k for k in set(ours_d) | set(theirs_d) if ours_d.get(k) != theirs_d.get(k))
    if diff:
        detail = ", ".join(f"{k}: checkpoint {theirs_d.get(k)!r} vs now {ours_d.get(k)!r}" for k in diff[:5])
        raise CheckpointError(f"{path}: checkpoint from a different model config ({detail})")


def check_resumable(run_dir: str | Path, config: Any, build: Any) -> Path:
    """Before a resumed run builds its model: the latest checkpoint exists, its config equals
    ``config`` (the one the run's task now gives), its weights header matches ``build(config)`` built
    on the meta device, and its optimizer and RNG headers are readable. Returns the checkpoint folder;
    every failure is a `CheckpointError` naming the file and the field."""
    from gperc_core.io.preflight import check_config, preflight, read_header

    path = latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"{run_dir}: expected a run folder with a checkpoint to resume, found none")
    check_config(config, f"{Path(run_dir) / TASK_FILE} (the model config it gives)")
    check_same_config(path, ckpt.read_config(path), config)
    preflight(config, path / ckpt.WEIGHTS_FILE, build, str(path / ckpt.CONFIG_FILE))
    for name in (OPTIMIZER_TENSORS, RNG_FILE):
        read_header(path / name)
    return path


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: expected a JSON file, found none")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


__all__ = ["TASK_FILE", "METRICS_FILE", "PLOT_FILE", "checkpoints_dir", "is_run_dir", "check_run_dir",
           "read_task_file", "latest_checkpoint", "check_same_config", "check_resumable", "write_checkpoint", "read_checkpoint", "optimizer_to_safe",
           "optimizer_from_safe", "rng_state", "set_rng_state"]
