"""TensorBoard logging of a run (``training.tensorboard = true`` or ``gperc train --tensorboard``).

`TensorBoardLog` writes, into ``RUN/tensorboard/`` with `torch.utils.tensorboard.SummaryWriter`
(which needs the ``tensorboard`` package, ``gperc-core[tensorboard]``):

- every ``metrics.jsonl`` record as scalars ``<split>/<key>`` at its ``step`` (train: ``loss``,
  ``lr``, ``samples_per_s``; eval: ``loss``, ``accuracy``, ``perplexity``, ...);
- the run's config as text: ``config/model`` (the `PerceiverConfig`), ``config/training`` (the
  `TrainingConfig`) and ``config/task`` (``task.json``: task name, card, overrides).

A resumed run opens the writer with ``purge_step`` = the step after the one it resumes from (whose
records were logged before its checkpoint was written), so TensorBoard drops what the interrupted
run logged after its last checkpoint and no step appears twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from gperc_core.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"
"""The run sub-folder of the event files."""

_NOT_SCALARS = frozenset({"split", "step", "epoch"})


def tensorboard_dir(run_dir: str | Path) -> Path:
    """Return the folder a run's TensorBoard event files go to (``RUN/tensorboard``)."""
    return Path(run_dir) / TENSORBOARD_DIR


def _text(value: Any) -> str:
    """Markdown TensorBoard shows as-is: ``value`` as indented JSON in a code block."""
    body = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)
    return "\n".join("    " + line for line in body.splitlines())


class TensorBoardLog:
    """A `SummaryWriter` on ``RUN/tensorboard`` fed with the trainer's metrics records.

    ``start_step`` > 0 (a resumed run) purges the events after it that an earlier, interrupted writer
    left behind. Raises `ConfigError` when the ``tensorboard`` package is missing."""

    def __init__(self, run_dir: str | Path, start_step: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError("training.tensorboard: expected the tensorboard package to be installed "
                              "(pip install 'gperc-core[tensorboard]'), got none") from exc
        self.start_step = int(start_step)
        self.writer = SummaryWriter(str(tensorboard_dir(run_dir)),
                                    purge_step=self.start_step + 1 if self.start_step > 0 else None)

    def write_config(self, model: Mapping[str, Any], training: Mapping[str, Any], task: Any) -> None:
        """Record the run's config as text (at the start step)."""
        for name, value in (("model", model), ("training", training), ("task", task)):
            self.writer.add_text(f"config/{name}", _text(value), global_step=self.start_step)
        self.writer.flush()

    def log(self, record: Mapping[str, Any]) -> None:
        """Add the numeric fields of one ``metrics.jsonl`` record as scalars ``<split>/<key>`` at its step."""
        split, step = record.get("split", "train"), int(record["step"])
        for key, value in record.items():
            if key not in _NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{split}/{key}", float(value), global_step=step)
        if split != "train":
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


__all__ = ["TensorBoardLog", "tensorboard_dir", "TENSORBOARD_DIR"]
