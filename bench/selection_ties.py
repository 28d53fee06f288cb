"""How the best-weights rule behaves on a run's validation curve: ties in accuracy, and what the loss picks.

For every run folder below ROOT (each with a ``metrics.jsonl``), reads the per-epoch validation records
and prints one Markdown row: the evaluations, the best validation accuracy, how many evaluations share
it, the epoch chosen by accuracy (ties: lower loss, `gperc_core.train.trainer.Trainer.is_better`) and
the epoch chosen by the loss (``validation.metric = "loss"``) with its accuracy. Validation figures
only: the rule can be judged without looking at the test split.

    .venv/bin/python bench/selection_ties.py runs/sweep-selection-ties [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def validation_curve(metrics: Path) -> list[dict[str, Any]]:
    """The validation records of one run's ``metrics.jsonl``, in order."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("split") == "validation"]


def describe(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """Ties and choices on one validation curve: ``evals``, ``best_accuracy``, ``tied`` (evaluations at
    the best accuracy), ``by_accuracy`` / ``by_loss`` (the chosen records' epochs and figures)."""
    best_acc = max(r["accuracy"] for r in curve)
    by_acc = min((r for r in curve if r["accuracy"] == best_acc), key=lambda r: r["loss"])
    best_loss = min(r["loss"] for r in curve)
    by_loss = max((r for r in curve if r["loss"] == best_loss), key=lambda r: r["accuracy"])
    return {"evals": len(curve), "best_accuracy": best_acc, "tied": sum(r["accuracy"] == best_acc for r in curve),
            "by_accuracy": {k: by_acc[k] for k in ("epoch", "accuracy", "loss")},
            "by_loss": {k: by_loss[k] for k in ("epoch", "accuracy", "loss")}}


def table(root: Path) -> str:
    """The Markdown table of every run below ``root``, with a mean row per group of runs."""
    lines = ["| run | evaluations | best validation accuracy | evaluations tied at it | chosen by accuracy: "
             "epoch (loss) | chosen by loss: epoch (accuracy, loss) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    ties: list[int] = []
    for metrics in sorted(root.rglob("metrics.jsonl")):
        curve = validation_curve(metrics)
        if not curve:
            continue
        d = describe(curve)
        ties.append(d["tied"])
        a, b = d["by_accuracy"], d["by_loss"]
        lines.append(f"| {metrics.parent.relative_to(root)} | {d['evals']} | {d['best_accuracy']:.4f} | {d['tied']} | "
                     f"{a['epoch']:g} ({a['loss']:.4f}) | {b['epoch']:g} ({b['accuracy']:.4f}, {b['loss']:.4f}) |")
    if ties:
        lines.append(f"\n{len(ties)} runs; evaluations tied at the best accuracy: mean {statistics.mean(ties):.1f}, "
                     f"max {max(ties)}; runs with a tie: {sum(t > 1 for t in ties)}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder with run folders (each with metrics.jsonl) below it")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    text = table(args.root)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
