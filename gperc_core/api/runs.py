"""Opening a run folder for inference: its task (rebuilt from ``task.json``) and its trained model.

Shared by `gperc_core.api.evaluation` and `gperc_core.api.prediction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class OpenRun:
    """A run folder ready for inference: ``task`` (a `Task` with the run's model config), ``model``
    (in eval mode, on ``device``), ``source`` (the folder its weights came from) and ``run_dir``."""

    run_dir: Path
    task: Any
    model: Any
    source: Path
    device: Any


def load_run_model(run_dir: str | Path, checkpoint: bool = False, device: Any = "cpu") -> tuple[Any, Path]:
    """Return ``(model, source)``: the run's final ``model.safetensors``, else (or with ``checkpoint``)
    the latest checkpoint's weights, and the folder they came from.

    Raises `CheckpointError` when the run folder holds neither.
    """
    from gperc_core.errors import CheckpointError
    from gperc_core.io.runs import check_run_dir, latest_checkpoint
    from gperc_core.model.build import load_any_model

    run_dir = check_run_dir(run_dir)
    final = run_dir / "model.safetensors"
    source = latest_checkpoint(run_dir) if checkpoint or not final.is_file() else run_dir
    if source is None:
        raise CheckpointError(f"run folder {str(run_dir)!r}: expected a trained model or a checkpoint, found neither")
    return load_any_model(source, map_location=device), Path(source)


def open_run(run_dir: str | Path, *, checkpoint: bool = False, device: str = "auto", pm: Any = None) -> OpenRun:
    """Rebuild the task of ``run_dir`` (with plugin manager ``pm``, default: the installed plugins) and
    load its model onto ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ...); the task takes the
    model's config when they differ (a checkpoint of an older config)."""
    from gperc_core.data.tasks import Task
    from gperc_core.io.runs import check_run_dir
    from gperc_core.train.trainer import resolve_device

    run_dir = check_run_dir(run_dir)
    task = Task.from_run(run_dir, pm)
    torch_device = resolve_device(device)
    model, source = load_run_model(run_dir, checkpoint, torch_device)
    if model.config != task.config:
        task.config = model.config
    model.eval()
    return OpenRun(run_dir=run_dir, task=task, model=model, source=source, device=torch_device)
