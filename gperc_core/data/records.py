"""Run records: what a run folder's ``task.json`` stores about its task, and reading it back.

The record holds the task name, its card, the overrides, the class names, the training settings,
the plugins that supplied the data and whether its samples bring their own decoder queries: enough for `gperc_core.data.tasks.Task.from_run` to rebuild
the task with the run's saved model config (evaluation, prediction, resuming).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.data.cards import TaskCard, merge_overrides, validate_card
from gperc_core.errors import CheckpointError, TaskError


def task_record(name: str, card: TaskCard, overrides: Mapping[str, Any], class_names: list[str] | None,
                training: Mapping[str, Any], plugins: list[str], sample_queries: bool | None = None) -> dict[str, Any]:
    """Return the ``task.json`` dict of a task (``sample_queries``: whether its samples carry
    ``output_array`` queries; ``None`` leaves it to be read from the data)."""
    return {"task": name, "card": card.to_dict(), "overrides": dict(overrides), "class_names": class_names,
            "training": dict(training), "plugins": sorted(plugins), "sample_queries": sample_queries}


def write_record(record: Mapping[str, Any], run_dir: str | Path) -> Path:
    """Write ``record`` as ``task.json`` into ``run_dir`` atomically; returns its path."""
    from gperc_core.io.checkpoint import atomic_write_json
    from gperc_core.io.runs import TASK_FILE

    return atomic_write_json(Path(run_dir) / TASK_FILE, dict(record))


@dataclass
class RunTask:
    """What a run folder says about its task: the record's card and class names, the overrides to
    rebuild it with (recorded, then the new ones), the saved model config and whether its samples
    bring their own decoder queries (``None`` in runs recorded before gperc wrote it)."""

    name: str
    card: TaskCard
    overrides: dict[str, Any]
    config: PerceiverConfig
    class_names: list[str] | None
    sample_queries: bool | None = None


def read_run(run_dir: str | Path, overrides: Mapping[str, Any] | None = None, *, task: str | None = None,
             resume: bool = False) -> RunTask:
    """Read the task of ``run_dir``: its ``task.json`` and the model config (``config.json``, else the
    latest checkpoint's).

    ``overrides`` are applied over the recorded ones. ``task`` (optional) must equal the recorded task
    name. With ``resume`` the recorded ``training.max_steps`` is dropped unless ``overrides`` set it
    (a resumed run trains on to its epochs). Raises `CheckpointError` when the folder holds no model.
    """
    from gperc_core.io.checkpoint import read_config
    from gperc_core.io.runs import TASK_FILE, latest_checkpoint, read_task_file

    record = read_task_file(run_dir)
    if task and task != record["task"]:
        raise TaskError(f"TASK: expected {record['task']!r} (the task of {run_dir}) with --resume, got {task!r}")
    card = validate_card(record["card"], source=str(Path(run_dir) / TASK_FILE))
    new = merge_overrides({}, overrides or {})
    merged = merge_overrides(record.get("overrides", {}), new)
    if resume and "training.max_steps" not in new and "max_steps" not in new:
        merged.pop("training.max_steps", None)
    source = Path(run_dir) if (Path(run_dir) / "config.json").is_file() else latest_checkpoint(run_dir)
    if source is None:
        raise CheckpointError(f"run folder {str(run_dir)!r}: expected a trained model (config.json) or a "
                              f"checkpoint, found neither")
    return RunTask(name=record["task"], card=card, overrides=merged, config=read_config(source),
                   class_names=record.get("class_names"), sample_queries=record.get("sample_queries"))


__all__ = ["task_record", "write_record", "RunTask", "read_run"]
