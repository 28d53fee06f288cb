"""Tests of bench/sweep.py: the sweep file's checks, the ranking by validation (never by test), and one
tiny real sweep (graph/karate, two variants of 2 folds, 2 epochs, two runs at a time)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

import sweep  # noqa: E402


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("jobs = 2\n", "one or more [[variant]]"),
    ('[[variant]]\nname = "a"\n', "string 'name' and 'task'"),
    ('[[variant]]\nname = "a"\ntask = "graph/karate"\nepochs = 3\n', "expected keys among"),
    ('[[variant]]\nname = "a"\ntask = "graph/karate"\n[[variant]]\nname = "a"\ntask = "graph/karate"\n', "twice"),
    ('[[variant]]\nname = "a"\ntask = "graph/karate"\nset = "training.epochs=2"\n', "list of 'KEY=VALUE'"),
])
def test_bad_sweep_files_are_refused(tmp_path, text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sweep.load_sweep(write(tmp_path, text))
    assert sweep.main([str(write(tmp_path, text)), "--out", str(tmp_path / "out")]) == 2


def test_table_ranks_by_validation_and_prints_test_last():
    def result(name, val, test):
        return {"name": name, "task": "t/x", "set": [], "summary": {
            "validation_accuracy_mean": val, "n": 1, "runs": 1, "train_time_s_mean": 1.0, "samples_per_s_mean": 2.0,
            "accuracy_mean": test, "accuracy_std": 0.0}}
    table = sweep.markdown([result("best-on-validation", 0.9, 0.5), result("best-on-test", 0.8, 0.99)])
    header, _, first, second = table.splitlines()
    assert header.endswith("test (not for choosing) |")
    assert "best-on-validation" in first and "best-on-test" in second


def _run_dir(tmp_path: Path, name: str, curve: dict[float, float]) -> dict:
    run = tmp_path / name
    run.mkdir()
    lines = [{"split": "train", "step": 1, "epoch": 1.0, "loss": 0.5}]
    lines += [{"split": "validation", "step": int(e), "epoch": e, "loss": 1.0 - a, "accuracy": a} for e, a in curve.items()]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return {"run_dir": str(run)}


def test_validation_curve_averages_runs_per_epoch(tmp_path):
    runs = [_run_dir(tmp_path, "a", {1.0: 0.5, 2.0: 0.9, 3.0: 0.6}),       # best-of per run: 0.9 and 0.8
            _run_dir(tmp_path, "b", {1.0: 0.7, 2.0: 0.5, 3.0: 0.8, 4.0: 1.0}),  # epoch 4: not reached by "a"
            {"run_dir": str(tmp_path / "missing")}]                         # a run without metrics is skipped
    curve = sweep.validation_curve(runs)
    assert curve == {"best": pytest.approx(0.7), "epoch": 2.0, "last": pytest.approx(0.7), "last_epoch": 3.0, "runs": 2}
    assert sweep.validation_curve([{"run_dir": str(tmp_path / "missing")}]) is None
    assert sweep._curve_cell(curve) == "0.7000 (epoch 2); last 0.7000" and sweep._curve_cell(None) == "-"


def test_tiny_sweep_end_to_end(tmp_path):
    spec = write(tmp_path, """
jobs = 2
threads = 1
limit_min = 3
[[variant]]
name = "two-epochs"
task = "graph/karate"
set = ["training.epochs=2"]
folds = 2
[[variant]]
name = "one-epoch"
task = "graph/karate"
set = ["training.epochs=1"]
folds = 2
""")
    out = tmp_path / "out"
    assert sweep.main([str(spec), "--out", str(out)]) == 0
    data = json.loads((out / "sweep.json").read_text())
    assert data["complete"] and {r["name"] for r in data["results"]} == {"two-epochs", "one-epoch"}
    for r in data["results"]:
        assert [run["run"] for run in sorted(r["runs"], key=lambda x: x["run"])] == [f"{r['name']}-fold-{k}" for k in (0, 1)]
        assert r["summary"]["n"] == 2 and 0.0 <= r["summary"]["validation_accuracy_mean"] <= 1.0
        curve = r["summary"]["validation_curve"]
        assert curve["runs"] == 2 and 1.0 <= curve["epoch"] <= curve["last_epoch"] <= 2.0
        assert curve["best"] <= r["summary"]["validation_accuracy_mean"] + 1e-9  # one choice for all runs: never above best-of per run
    vals = [r["summary"]["validation_accuracy_mean"] for r in data["results"]]
    assert vals == sorted(vals, reverse=True)
    assert (out / "sweep.md").read_text().count("graph/karate") == 2
