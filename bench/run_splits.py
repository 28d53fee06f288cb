"""Evaluate trained run folders again, outside training: their best weights, their validation and test
splits, their log-probabilities per split, and the Markdown tables of per-run accuracies.

Shared by the post-hoc evaluators (`bench/modality_subsets.py`, `bench/warp_ensemble.py`), which each
evaluate a run's weights in several ways and report which way to choose on the validation columns.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

SPLITS = ("validation", "test")


def load_run(run_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """``(task, model, {split: data})``: the run's task, its best weights in evaluation mode, and its
    validation and test splits (built as the trainer builds them; nothing is written)."""
    from gperc_core.data.tasks import Task
    from gperc_core.model.build import load_any_model
    from gperc_core.train.trainer import Trainer

    task = Task.from_run(run_dir)
    model = load_any_model(run_dir / "best").eval()
    trainer = Trainer(task, run_dir / "eval-scratch")  # for its split objects only
    return task, model, {"validation": trainer.eval_data, "test": trainer.test_data}


@torch.no_grad()
def split_log_probs(data: Any, logits_of: Callable[[dict[str, Any]], torch.Tensor], batch_size: int = 256
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-probabilities [n, classes], targets [n])`` over the split ``data``, batch by batch, of
    ``logits_of`` (a batch dict -> logits)."""
    outs, targets = [], []
    for start in range(0, len(data), batch_size):
        batch = dict(data.batch(torch.arange(start, min(len(data), start + batch_size))))
        outs.append(torch.log_softmax(logits_of(batch).float(), -1))
        targets.append(batch["target"])
    return torch.cat(outs), torch.cat(targets)


def accuracy(log_probs: torch.Tensor, target: torch.Tensor) -> float:
    """The share of rows whose highest log-probability is the target's."""
    return (log_probs.argmax(-1) == target).float().mean().item()


def tables(results: Mapping[str, Mapping[str, Mapping[str, float]]], columns: list[str],
           extra: tuple[str, Callable[[str], str]] | None = None) -> str:
    """Markdown: one row per split with each column's mean ± std over the runs (and, with ``extra``
    = ``(heading, split -> cell)``, one more cell), then one row per run and split."""
    head = "| split | " + " | ".join(columns) + (f" | {extra[0]} |" if extra else " |")
    lines = [head, "| --- |" + " ---: |" * (len(columns) + bool(extra))]
    for split in SPLITS:
        cols = [[r[split][c] for r in results.values()] for c in columns]
        cells = [f"{statistics.fmean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}" for v in cols]
        lines.append(f"| {split} | " + " | ".join(cells) + (f" | {extra[1](split)} |" if extra else " |"))
    lines += ["", "| run | split | " + " | ".join(columns) + " |", "| --- | --- |" + " ---: |" * len(columns)]
    for run, r in results.items():
        for split in SPLITS:
            lines.append(f"| {Path(run).name} | {split} | " + " | ".join(f"{r[split][c]:.4f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write(results: Mapping[str, Any], table: str, out: Path | None) -> None:
    """Print ``table``; with ``out``, write OUT.json (``results``) and OUT.md (``table``)."""
    print(table)
    if out is not None:
        out.with_suffix(".json").write_text(json.dumps(results, indent=2))
        out.with_suffix(".md").write_text(table)
