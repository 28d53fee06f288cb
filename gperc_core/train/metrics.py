"""Evaluation metrics and the ``metrics.jsonl`` log of a run.

`MetricAccumulator` sums loss and correct predictions over batches (classification: one label per
sample; dense: one label per output query, `IGNORE_INDEX` ignored) without keeping the logits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import torch

from gperc_core.model.sentinels import IGNORE_INDEX
from gperc_core.train.loss import MaskedCrossEntropy

_EVAL_LOSS = MaskedCrossEntropy()


class MetricAccumulator:
    """Running loss and accuracy over evaluation batches; `compute` returns the metrics dict."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.correct = 0
        self.count = 0
        self.samples = 0

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of ``logits`` and ``target`` (shapes as in `MaskedCrossEntropy`)."""
        flat_logits = logits.float().reshape(-1, logits.shape[-1])
        flat_target = target.reshape(-1)
        keep = flat_target != IGNORE_INDEX
        n = int(keep.sum())
        if n:
            self.loss_sum += float(_EVAL_LOSS.total(flat_logits, flat_target))
            self.correct += int((flat_logits.argmax(-1)[keep] == flat_target[keep]).sum())
        self.count += n
        self.samples += int(target.shape[0])

    def compute(self) -> dict[str, float]:
        """Return ``loss`` (mean per labelled position), ``accuracy``, ``perplexity`` and ``samples``."""
        if not self.count:
            return {"loss": float("nan"), "accuracy": float("nan"), "perplexity": float("nan"),
                    "samples": self.samples}
        loss = self.loss_sum / self.count
        return {"loss": loss, "accuracy": self.correct / self.count,
                "perplexity": math.exp(min(loss, 50.0)), "samples": self.samples}


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path`` (flushed and fsync'd so a crash keeps it)."""
    import os

    with open(path, "a+b") as handle:
        torn = False
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        # a line torn by a crash stays on its own line: the record appended now is not glued to it
        handle.write((("\n" if torn else "") + json.dumps(record, sort_keys=False) + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records (objects) of a JSON-lines file, skipping torn or corrupted lines."""
    path = Path(path)
    if not path.is_file():
        return
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(record, dict):  # a corrupted line that still parses (a number, a list) is skipped too
            yield record
