"""The shared post-hoc evaluation helpers: accuracy of log-probabilities and the per-run Markdown tables."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_splits import accuracy, tables  # noqa: E402


def test_accuracy_counts_rows_whose_best_class_is_the_target():
    log_probs = torch.log(torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]]))
    assert accuracy(log_probs, torch.tensor([0, 0, 0])) == pytest.approx(2 / 3)


def test_tables_give_mean_and_std_per_split_then_every_run():
    results = {"runs/a": {"validation": {"x": 0.5, "y": 1.0}, "test": {"x": 0.25, "y": 0.75}},
               "runs/b": {"validation": {"x": 1.0, "y": 1.0}, "test": {"x": 0.75, "y": 0.75}}}
    text = tables(results, ["x", "y"], ("note", lambda split: f"<{split}>"))
    lines = text.splitlines()
    assert lines[0] == "| split | x | y | note |" and lines[1] == "| --- | ---: | ---: | ---: |"
    assert lines[2] == "| validation | 0.7500 ± 0.3536 | 1.0000 ± 0.0000 | <validation> |"
    assert lines[3] == "| test | 0.5000 ± 0.3536 | 0.7500 ± 0.0000 | <test> |"
    assert lines[5:7] == ["| run | split | x | y |", "| --- | --- | ---: | ---: |"]
    assert lines[7] == "| a | validation | 0.5000 | 1.0000 |" and lines[-1] == "| b | test | 0.7500 | 0.7500 |"
    assert tables(results, ["x"]).splitlines()[0] == "| split | x |"
