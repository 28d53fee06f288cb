"""Tests of bench/selection_ties.py: ties at the best validation accuracy and the epochs each rule picks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

import selection_ties  # noqa: E402


def write_run(folder: Path, curve: list[tuple[float, float]]) -> None:
    folder.mkdir(parents=True)
    lines = [{"split": "train", "step": 1, "loss": 9.0}]
    lines += [{"split": "validation", "epoch": i + 1, "accuracy": a, "loss": loss} for i, (a, loss) in enumerate(curve)]
    lines.append({"split": "test", "accuracy": 0.0, "loss": 9.0})
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")


def test_describe_counts_ties_and_applies_both_rules(tmp_path):
    write_run(tmp_path / "a", [(0.8, 0.5), (0.9, 0.4), (0.9, 0.35), (0.85, 0.3), (0.9, 0.45)])
    d = selection_ties.describe(selection_ties.validation_curve(tmp_path / "a" / "metrics.jsonl"))
    assert d["evals"] == 5 and d["best_accuracy"] == 0.9 and d["tied"] == 3
    assert d["by_accuracy"] == {"epoch": 3, "accuracy": 0.9, "loss": 0.35}  # the tie goes to the lower loss
    assert d["by_loss"] == {"epoch": 4, "accuracy": 0.85, "loss": 0.3}


def test_table_has_a_row_per_run_and_a_summary(tmp_path):
    write_run(tmp_path / "x" / "seed-0", [(0.5, 1.0), (0.5, 0.9)])
    write_run(tmp_path / "x" / "seed-1", [(0.6, 1.0), (0.7, 1.1)])
    out = tmp_path / "t.md"
    assert selection_ties.main([str(tmp_path / "x"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| seed-0 | 2 | 0.5000 | 2 | 2 (0.9000) | 2 (0.5000, 0.9000) |" in text
    assert "| seed-1 | 2 | 0.7000 | 1 | 2 (1.1000) | 1 (0.6000, 1.0000) |" in text
    assert "2 runs; evaluations tied at the best accuracy: mean 1.5, max 2; runs with a tie: 1." in text
