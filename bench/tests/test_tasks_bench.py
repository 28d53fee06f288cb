"""Tests of bench/tasks.py (`make bench-tasks`): runs over seeds or folds, one process each, the
summary (mean ± std, goal, time to the goal on validation) and the Markdown table. One tiny real run
(graph/karate, 2 folds of 2 epochs); the rest on synthetic records."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

import tasks  # noqa: E402


def test_plan_runs_seeds_or_folds():
    plain = SimpleNamespace(cross_validation={})
    assert tasks.plan_runs(plain, 3, None) == [
        ("seed-0", ["model.seed=0", "training.seed=0"]), ("seed-1", ["model.seed=1", "training.seed=1"]),
        ("seed-2", ["model.seed=2", "training.seed=2"])]
    cv = SimpleNamespace(cross_validation={"folds": 10, "seed": 0})
    assert [label for label, _ in tasks.plan_runs(cv, 3, None)] == [f"fold-{k}" for k in range(10)]
    assert tasks.plan_runs(cv, 3, 2) == [("fold-0", ["cross_validation.fold=0"]), ("fold-1", ["cross_validation.fold=1"])]


def test_repeated_cross_validation_runs_every_fold_per_seed_and_reports_seed_means():
    cv = SimpleNamespace(cross_validation={"folds": 10, "seed": 0})
    plan = tasks.plan_runs(cv, 3, 2, cv_seeds=2)
    assert plan == [("seed-0-fold-0", ["cross_validation.fold=0", "model.seed=0", "training.seed=0"]),
                    ("seed-0-fold-1", ["cross_validation.fold=1", "model.seed=0", "training.seed=0"]),
                    ("seed-1-fold-0", ["cross_validation.fold=0", "model.seed=1", "training.seed=1"]),
                    ("seed-1-fold-1", ["cross_validation.fold=1", "model.seed=1", "training.seed=1"])]
    runs = [{"accuracy": a, "seed": seed, "cross_validation": {"folds": 2, "seed": 0}, "status": "done"}
            for seed, a in [(0, 0.8), (0, 0.9), (1, 0.6), (1, 0.7)]]
    s = tasks.summarise(runs)
    assert s["seed_means"] == pytest.approx([0.85, 0.65]) and s["accuracy_mean"] == pytest.approx(0.75)
    assert tasks.accuracy_cell(s) == "0.750 ± 0.129 (4 runs: 2 folds x 2 seeds, seed means 0.850, 0.650)"
    one_seed = tasks.summarise([r for r in runs if r["seed"] == 0])
    assert tasks.accuracy_cell(one_seed) == "0.850 ± 0.071 (2 folds)"
    args = SimpleNamespace(folds=None, cv_seeds=3, seeds=3, limit_min=30.0, threads=2, overrides=[])
    assert tasks.command("graph/mutag", args, True).endswith("graph/mutag --cv-seeds 3 --limit-min 30 --threads 2")


def test_repeated_cross_validation_counts_the_folds_of_each_seed_when_a_run_failed():
    runs = [{"accuracy": a, "seed": seed, "cross_validation": {"folds": 2, "seed": 0}, "status": "done"}
            for seed, a in [(0, 0.8), (0, 0.9), (1, 0.6)]]
    runs.append({"accuracy": None, "seed": 1, "cross_validation": {"folds": 2, "seed": 0}, "status": "failed"})
    s = tasks.summarise(runs)
    assert s["seed_runs"] == [2, 1] and s["n"] == 3
    assert tasks.accuracy_cell(s) == ("0.767 ± 0.153 (3 runs: folds per seed 2, 1 x 2 seeds, "
                                      "seed means 0.850, 0.600)")
    old = dict(s, n=4, seed_runs=None)  # a summary written before seed_runs: complete runs assumed
    assert "(4 runs: 2 folds x 2 seeds" in tasks.accuracy_cell(old)


def test_time_to_goal_reads_the_validation_records():
    records = [{"split": "validation", "accuracy": 0.5, "train_time_s": 1.0},
               {"split": "test", "accuracy": 0.99, "train_time_s": 2.0},
               {"split": "validation", "accuracy": 0.9, "train_time_s": 3.0},
               {"split": "validation", "accuracy": 0.95, "train_time_s": 4.0}]
    assert tasks.time_to_goal(records, {"accuracy": 0.9}) == 3.0
    assert tasks.time_to_goal(records, {"accuracy": 0.99}) is None  # the test record does not count
    assert tasks.time_to_goal(records, {"note": "x"}) is None and tasks.time_to_goal(records, None) is None


def test_summary_and_table():
    runs = [{"accuracy": a, "validation_accuracy": v, "time_to_goal_s": t, "train_time_s": 10.0, "samples_per_s": 100.0,
             "goal": {"accuracy": 0.8}, "baseline": {"accuracy": 0.7, "method": "lr"}, "threads": 2, "epochs": 5,
             "load_average_start": [l, 0, 0], "status": "done", "cross_validation": None}
            for a, v, t, l in [(0.8, 0.85, 4.0, 0.5), (0.9, 0.95, 2.0, 1.5), (0.85, 0.75, None, 0.1)]]
    s = tasks.summarise(runs)
    assert s["n"] == 3 and s["accuracy_mean"] == pytest.approx(0.85) and s["accuracy_std"] == pytest.approx(0.05)
    assert s["goal_met"] and s["time_to_goal_s"] == 3.0 and s["reached_goal"] == 2 and s["load_average_start"] == 1.5
    table = tasks.markdown({"x/y": {"runs": runs, "summary": s, "command": "python bench/tasks.py x/y --seeds 3"}})
    row = next(line for line in table.splitlines() if line.startswith("| x/y "))
    assert row.startswith("| x/y | 0.850 ± 0.050 (3 runs) | 0.850 | ≥ 0.800: met | 0.700 (lr) | 3.0 s (2/3 runs) |")
    assert "`python bench/tasks.py x/y --seeds 3`" in row
    assert "time to goal (validation)" in table and "test accuracy, mean ± std" in table
    short = tasks.summarise([{**r, "accuracy": a} for r, a in zip(runs, (0.7996, 0.7996, 0.7996))])
    assert tasks.goal_cell(short) == "≥ 0.800: not met (mean 0.7996)"  # 0.800 to 3 decimals, yet short of it
    assert tasks.goal_cell({**s, "accuracy_mean": 0.75, "goal_met": False}) == "≥ 0.800: not met"
    legacy = tasks.markdown({"old/card": {"accuracy": 0.5, "train_time_s": 3.0, "status": "done"}})
    assert "| old/card | 0.500 ± 0.000 (1 run) |" in legacy


def test_tiny_cross_validated_run(tmp_path):
    """graph/karate, folds 0 and 1, 2 epochs each: two processes, per-run records, the table."""
    results, md = tmp_path / "results.json", tmp_path / "tasks.md"
    argv = ["graph/karate", "--folds", "2", "--threads", "1", "--limit-min", "3", "--set", "training.epochs=2",
            "--results", str(results), "--markdown", str(md), "--runs-dir", str(tmp_path / "runs")]
    assert tasks.main(argv) == 0
    entry = json.loads(results.read_text())["tasks"]["graph/karate"]
    runs = entry["runs"]
    assert [r["run"] for r in runs] == ["fold-0", "fold-1"] and all(r["status"] == "done" for r in runs)
    assert [r["overrides"][0] for r in runs] == ["cross_validation.fold=0", "cross_validation.fold=1"]
    for r in runs:
        assert r["splits"] == {"train": "train", "validation": "validation", "test": "test"}
        assert 0.0 <= r["accuracy"] <= 1.0 and r["validation_accuracy"] is not None and r["steps"] == 2
        assert r["best_step"] in (1, 2) and r["load_average_start"] and r["train_time_s"] >= 0
    assert entry["summary"]["n"] == 2 and entry["summary"]["cross_validation"]
    assert entry["command"] == ".venv/bin/python bench/tasks.py graph/karate --folds 2 --limit-min 3 --threads 1 --set training.epochs=2"
    table = md.read_text()
    assert "| graph/karate | " in table and "(2 folds)" in table and entry["command"] in table


def test_resume_continues_an_interrupted_run_and_reuses_finished_ones(tmp_path):
    """--resume: a run stopped at step 1 of 2 continues from its checkpoint; a finished one is reused as
    it is; a folder of other overrides is refused rather than continued."""
    from gperc_core.data.tasks import create_task, parse_assignments
    from gperc_core.train.trainer import Trainer

    results, md, runs_dir = tmp_path / "results.json", tmp_path / "tasks.md", tmp_path / "runs"
    base = ["graph/karate", "--folds", "1", "--threads", "1", "--limit-min", "3",
            "--results", str(results), "--markdown", str(md), "--runs-dir", str(runs_dir)]
    overrides = ["cross_validation.fold=0", "training.epochs=2"]
    out_dir = runs_dir / "graph-karate" / "fold-0"
    task = create_task("graph/karate", **{"training.progress": False, **parse_assignments(overrides)})
    Trainer(task, out_dir).fit(max_steps=1)  # as if stopped after the first of two epochs

    def only_run() -> dict:
        return json.loads(results.read_text())["tasks"]["graph/karate"]["runs"][0]

    assert tasks.main([*base, "--set", "training.epochs=2", "--resume"]) == 0
    run = only_run()
    assert run["status"] == "done" and run["resumed_from_step"] == 1 and run["steps"] == 2
    assert json.loads((out_dir / "result.json").read_text())["steps"] == 2

    assert tasks.main([*base, "--set", "training.epochs=2", "--resume"]) == 0
    again = only_run()
    assert again["reused"] is True and again["accuracy"] == run["accuracy"] and again["date"] == run["date"]

    assert tasks.main([*base, "--set", "training.epochs=3", "--resume"]) == 0
    assert only_run()["status"] == "failed (exit 3)"
    assert tasks.main([*base, "--set", "training.epochs=3"]) == 0  # without --resume: afresh
    assert only_run()["status"] == "done" and only_run()["steps"] == 3 and only_run()["resumed_from_step"] is None
