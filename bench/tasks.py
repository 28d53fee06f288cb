"""`make bench-tasks`: train each task card with its own defaults over seeds (or folds) and report the
test figure, the time to reach the card's goal and the cost.

Each run (a card with one seed, or one fold of a card with ``[cross_validation]``) trains in its own
process (``gperc train``'s code path: `create_task` + `Trainer`) into ``bench/runs/<task>/<run>``,
with a wall-clock limit; a run that hits the limit is stopped with SIGTERM, which checkpoints it, and
its best weights so far are tested and reported as partial. Selection is on the validation split; the
test split is evaluated once per run, with the best weights. Seeds set ``model.seed`` and
``training.seed`` (initialisation, shuffling, dropout); folds set ``cross_validation.fold``.

Writes the "tasks" key of ``bench/results.json`` (read-modify-write under the same lock as
bench/run.py: other keys and the other cards' entries are kept): per card its per-run records
(``runs``) and a summary, and the Markdown table ``bench/tasks.md`` (the README's table is made from
the same results by bench/update_readme.py).

    .venv/bin/python bench/tasks.py                              # every card: 3 seeds, or every fold
    .venv/bin/python bench/tasks.py graph/karate --seeds 2 --set training.epochs=5
    .venv/bin/python bench/tasks.py graph/mutag --folds 3        # folds 0..2 of the card's 10
    .venv/bin/python bench/tasks.py graph/mutag --cv-seeds 3     # every fold with seeds 0, 1, 2 (repeated CV)
    .venv/bin/python bench/tasks.py --limit-min 30 image/fashion-mnist
    .venv/bin/python bench/tasks.py --table                      # only rewrite bench/tasks.md
    .venv/bin/python bench/tasks.py text/wordnet-supersense --resume  # after an interruption

Every run writes its record to ``result.json`` in its run folder. With ``--resume`` a run whose folder
already holds a finished record of the same card and overrides is reused, and an interrupted one (a
checkpoint, no record) continues from its latest checkpoint (``gperc train --resume``'s code path:
training time and samples/s count both parts; the record says ``resumed_from_step``); without it
every run starts afresh.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from run import update_results  # noqa: E402  (bench/run.py: the shared, locked results writer)

KEY = "tasks"
DEFAULT_SEEDS = 3
DEFAULT_ORDER = ["image/digits", "graph/karate", "graph/mutag", "multimodal/av-digits", "audio/spoken-digits",
                 "image/digits-segmentation", "text/wordnet-supersense", "text/wordnet-mlm", "image/fashion-mnist"]


def seed_overrides(seed: int) -> list[str]:
    """The ``--set`` assignments of seed ``seed`` (model initialisation, shuffling and dropout)."""
    return [f"model.seed={seed}", f"training.seed={seed}"]


def fold_overrides(fold: int) -> list[str]:
    """The ``--set`` assignment of fold ``fold`` of a card with ``[cross_validation]``."""
    return [f"cross_validation.fold={fold}"]


def time_to_goal(records: list[dict[str, Any]], goal: dict[str, Any] | None) -> float | None:
    """Training seconds until the validation metric first reached the goal (``None``: never, or no goal)."""
    metrics = [k for k in (goal or {}) if k != "note"]
    if not metrics:
        return None
    metric, target = metrics[0], float(goal[metrics[0]])
    for r in records:
        if r.get("split") in ("validation", "eval") and isinstance(r.get(metric), (int, float)) and r[metric] >= target:
            return float(r.get("train_time_s", 0.0))
    return None


RESULT_FILE = "result.json"


def run_differs(recorded: dict[str, Any], task_record: dict[str, Any]) -> str | None:
    """``None`` when a run folder's ``task.json`` (``recorded``) is of the same task, card and overrides
    as ``task_record`` (the record of the task about to run), else what differs, with both values."""
    now = json.loads(json.dumps(task_record))  # tuples -> lists, as in the file
    for key in ("task", "card", "overrides"):
        if recorded.get(key) != now.get(key):
            if isinstance(now.get(key), dict) and isinstance(recorded.get(key), dict):
                keys = sorted(k for k in {*now[key], *recorded[key]} if now[key].get(k) != recorded[key].get(k))
                return f"{key} ({', '.join(f'{k}: recorded {recorded[key].get(k)!r}, now {now[key].get(k)!r}' for k in keys)})"
            return f"{key} (recorded {recorded.get(key)!r}, now {now.get(key)!r})"
    return None


def worker(task_name: str, out_dir: Path, overrides: list[str], result_path: Path, resume: bool = False) -> int:
    """Train one run (in this process; with ``resume`` continue the run in ``out_dir`` from its latest
    checkpoint) and write its result JSON to ``result_path`` and ``out_dir/result.json``."""
    import torch

    from gperc_core.data.tasks import create_task, parse_assignments
    from gperc_core.io.runs import read_task_file
    from gperc_core.train.metrics import read_jsonl
    from gperc_core.train.trainer import Trainer

    t0 = time.perf_counter()
    task = create_task(task_name, **{"training.progress": False, **parse_assignments(overrides)})
    trainer = Trainer(task, out_dir)
    resumed_from = None
    if resume:
        differs = run_differs(read_task_file(out_dir), task.record())
        if differs is not None:
            print(f"--resume: expected {out_dir} to hold a run of the same task, card and overrides, got another "
                  f"{differs}; run without --resume to start afresh", file=sys.stderr)
            return 3
        resumed_from = trainer.load_checkpoint()
    data_s = time.perf_counter() - t0
    card = task.card
    record: dict[str, Any] = {
        "task": task_name, "splits": dict(trainer.split_names), "train_samples": len(trainer.loader),
        "validation_samples": len(trainer.eval_data), "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "epochs": trainer.cfg.epochs, "batch_size": trainer.cfg.batch_size, "total_steps": trainer.total_steps,
        "device": str(trainer.device), "bf16": trainer.bf16, "threads": torch.get_num_threads(),
        "data_s": round(data_s, 1), "overrides": overrides, "baseline": card.baseline or None, "goal": card.goal or None,
        "cross_validation": card.cross_validation or None, "seed": task.training.seed}
    status = "done"
    tested = [r for r in read_jsonl(out_dir / "metrics.jsonl") if r.get("split") == "test"
              and r.get("step") == trainer.step] if resumed_from is not None else []
    finished = trainer.step >= trainer.total_steps or trainer.stopped_early
    try:
        # a finished run (its record lost) is not trained or tested again: its test record stands
        test = tested[-1] if (finished and tested) else trainer.fit()["test"]
    except KeyboardInterrupt:
        status = "time limit"
        test = trainer.run_test()  # the best weights so far, on the test split, once
    best = trainer.best
    evals = [r for r in read_jsonl(out_dir / "metrics.jsonl") if r.get("split") == "validation"]
    record.update(status=status, steps=trainer.step, early_stopped=trainer.stopped_early,
                  test_samples=test.get("samples"), accuracy=test["accuracy"], loss=test["loss"],
                  perplexity=test.get("perplexity"), validation_accuracy=best.get("accuracy"),
                  validation_loss=best.get("loss"), selected_on=trainer.metric,
                  best_step=best.get("step"), best_epoch=best.get("epoch"),
                  time_to_goal_s=time_to_goal(evals, card.goal), train_time_s=round(trainer.train_time, 1),
                  samples_per_s=round(trainer.samples_seen / max(trainer.train_time, 1e-9), 1),
                  resumed_from_step=resumed_from)
    result_path.write_text(json.dumps(record, indent=2))
    return 0


def finished_record(out_dir: Path, overrides: list[str]) -> dict[str, Any] | None:
    """The record in ``out_dir/result.json`` when it is of a finished run with ``overrides``, else ``None``."""
    path = out_dir / RESULT_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("status") == "done" and record.get("overrides") == overrides else None


def run_one(task_name: str, label: str, limit_s: float, overrides: list[str], threads: int,
            runs_dir: Path = BENCH / "runs", resume: bool = False) -> dict[str, Any]:
    """Train one run of ``task_name`` in a child process with a wall-clock limit into
    ``runs_dir/<task>/<label>``; returns its record. With ``resume`` a finished record there (same
    overrides) is returned as it is, and a folder with a checkpoint is continued."""
    from gperc_core.io.runs import is_run_dir, latest_checkpoint

    out_dir = runs_dir / task_name.replace("/", "-") / label
    if resume:
        done = finished_record(out_dir, overrides)
        if done is not None:
            return {**done, "reused": True}
    cont = resume and is_run_dir(out_dir) and latest_checkpoint(out_dir) is not None
    if not cont:
        shutil.rmtree(out_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / RESULT_FILE
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", task_name, "--out", str(out_dir),
               "--result", str(result_path)] + [a for o in overrides for a in ("--set", o)] + (["--resume"] if cont else [])
        start = time.time()
        load_start = os.getloadavg()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the trainer checkpoints and the worker reports partial results
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        wall = time.time() - start
        if result_path.is_file():
            record = json.loads(result_path.read_text())
        else:
            record = {"task": task_name, "status": f"failed (exit {proc.returncode})", "overrides": overrides}
    record.update(run=label, wall_s=round(wall, 1), load_average_start=[round(x, 2) for x in load_start],
                  load_average_end=[round(x, 2) for x in os.getloadavg()], run_dir=str(out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    if out_dir.is_dir():
        (out_dir / RESULT_FILE).write_text(json.dumps(record, indent=2))
    return record


def plan_runs(card: Any, seeds: int, folds: int | None, cv_seeds: int = 1) -> list[tuple[str, list[str]]]:
    """The runs of ``card``: ``(label, overrides)`` per fold of its ``[cross_validation]`` (the first
    ``folds`` of them, default all; with ``cv_seeds > 1`` every fold once per seed ``0..cv_seeds-1``:
    repeated cross-validation), else per seed ``0..seeds-1``."""
    cv = card.cross_validation or {}
    if cv:
        k = int(cv["folds"]) if folds is None else min(int(folds), int(cv["folds"]))
        if cv_seeds == 1:
            return [(f"fold-{i}", fold_overrides(i)) for i in range(k)]
        return [(f"seed-{s}-fold-{i}", [*fold_overrides(i), *seed_overrides(s)])
                for s in range(cv_seeds) for i in range(k)]
    return [(f"seed-{i}", seed_overrides(i)) for i in range(seeds)]


def command(task_name: str, args: argparse.Namespace, cross_validation: bool) -> str:
    """The command that reproduces a card's row."""
    parts = [".venv/bin/python", "bench/tasks.py", task_name]
    if cross_validation:
        if args.folds is not None:
            parts += ["--folds", str(args.folds)]
        if args.cv_seeds != 1:
            parts += ["--cv-seeds", str(args.cv_seeds)]
    else:
        parts += ["--seeds", str(args.seeds)]
    parts += ["--limit-min", f"{args.limit_min:g}"]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    for o in args.overrides:
        parts += ["--set", o]
    return " ".join(shlex.quote(p) for p in parts)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of a card's runs: test accuracy mean / std / n, validation accuracy of the chosen
    checkpoints, goal met, time to the goal (on validation), training time, samples/s, load."""
    ok = [r for r in runs if isinstance(r.get("accuracy"), (int, float))]
    first = runs[0] if runs else {}
    goal = next((r.get("goal") for r in runs if r.get("goal")), None) or {}
    mean, std = _mean_std([r["accuracy"] for r in ok])
    val, _ = _mean_std([r["validation_accuracy"] for r in ok if isinstance(r.get("validation_accuracy"), (int, float))])
    val_loss, _ = _mean_std([r["validation_loss"] for r in ok if isinstance(r.get("validation_loss"), (int, float))])
    reached = [r["time_to_goal_s"] for r in ok if isinstance(r.get("time_to_goal_s"), (int, float))]
    target = goal.get("accuracy")
    statuses = sorted({r.get("status", "-") for r in runs})
    by_seed: dict[int, list[float]] = {}
    for r in ok:
        by_seed.setdefault(int(r.get("seed") or 0), []).append(r["accuracy"])
    return {
        "n": len(ok), "runs": len(runs), "accuracy_mean": mean, "accuracy_std": std, "validation_accuracy_mean": val,
        "validation_loss_mean": val_loss,
        "goal": goal or None, "goal_met": (mean >= target) if (mean is not None and target is not None) else None,
        "time_to_goal_s": statistics.median(reached) if reached else None, "reached_goal": len(reached),
        "train_time_s_mean": _mean_std([r["train_time_s"] for r in ok if "train_time_s" in r])[0],
        "samples_per_s_mean": _mean_std([r["samples_per_s"] for r in ok if "samples_per_s" in r])[0],
        "load_average_start": max((r["load_average_start"][0] for r in runs if r.get("load_average_start")), default=None),
        "threads": first.get("threads"), "baseline": first.get("baseline"), "epochs": first.get("epochs"),
        "status": ", ".join(statuses), "cross_validation": bool(first.get("cross_validation")),
        "seed_means": [statistics.fmean(by_seed[k]) for k in sorted(by_seed)],
        "seed_runs": [len(by_seed[k]) for k in sorted(by_seed)],
        "perplexity_mean": _mean_std([r["perplexity"] for r in ok if isinstance(r.get("perplexity"), (int, float))
                                      and math.isfinite(r["perplexity"])])[0],
    }


def read_tasks(path: Path) -> dict[str, Any]:
    """Return the existing "tasks" results of ``path`` (empty when there are none)."""
    if not path.exists() or not path.read_text().strip():
        return {}
    return json.loads(path.read_text()).get(KEY, {})


def card_entry(value: dict[str, Any]) -> dict[str, Any]:
    """A card's entry of the "tasks" results as ``{"runs", "summary", "command"}``; an entry written before
    seeds and the validation split (one flat run record) reads as one run."""
    if "runs" in value and isinstance(value["runs"], list):
        return value
    run = dict(value)
    if "validation_accuracy" not in run:
        run["validation_accuracy"] = None  # selection was on the test split then: no validation figure
    return {"runs": [run], "summary": summarise([run]), "command": None, "legacy": True}


def _f(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _minutes(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 6 else f"{seconds:.1f} s"


def accuracy_cell(summary: dict[str, Any]) -> str:
    """``mean ± std (n runs)`` (``(n folds)`` for cross-validation; repeated cross-validation adds the
    folds per seed and each seed's mean)."""
    if summary.get("accuracy_mean") is None:
        return "-"
    seed_means = summary.get("seed_means") or []
    if summary.get("cross_validation") and len(seed_means) > 1:
        means = ", ".join(f"{m:.3f}" for m in seed_means)
        # summaries written before "seed_runs" existed came from complete runs: n // seeds folds each
        per_seed = summary.get("seed_runs") or [summary["n"] // len(seed_means)] * len(seed_means)
        folds = (f"{per_seed[0]} folds" if len(set(per_seed)) == 1
                 else "folds per seed " + ", ".join(str(k) for k in per_seed))
        return (f"{summary['accuracy_mean']:.3f} ± {summary['accuracy_std']:.3f} ({summary['n']} runs: "
                f"{folds} x {len(seed_means)} seeds, seed means {means})")
    what = ("fold" if summary.get("cross_validation") else "run") + ("s" if summary["n"] != 1 else "")
    return f"{summary['accuracy_mean']:.3f} ± {summary['accuracy_std']:.3f} ({summary['n']} {what})"


def goal_cell(summary: dict[str, Any]) -> str:
    goal = summary.get("goal") or {}
    if "accuracy" not in goal:
        return goal.get("note", "-") if goal else "-"
    met = {True: "met", False: "not met", None: "-"}[summary.get("goal_met")]
    mean = summary.get("accuracy_mean")
    reads_as_met = isinstance(mean, (int, float)) and round(mean, 3) >= round(goal["accuracy"], 3)
    if summary.get("goal_met") is False and reads_as_met:
        met += f" (mean {mean:.4f})"  # the 3-decimal mean would read as the goal
    return f"≥ {goal['accuracy']:.3f}: {met}"


def markdown(tasks: dict[str, Any]) -> str:
    """Return the Markdown table of the task results (one row per card), beside each card's baseline."""
    lines = ["# gperc tasks: test accuracy with each card's defaults", "",
             "Measured by `bench/tasks.py`: each card trains with its own defaults, once per seed (model "
             "initialisation, shuffling, dropout: `--set model.seed=S --set training.seed=S`), or once per fold "
             "for cards with `[cross_validation]` (`--set cross_validation.fold=K`), each run in its own process "
             "on the shared CPU of the build machine (its highest load average at a run's start and the torch "
             "threads are given: other jobs ran at the same time, so times are upper bounds). The best "
             "checkpoint of a run is chosen on the validation split (held out of the training split, or the "
             "dataset's own); the **test** figure is those weights evaluated once on the test split, as "
             "mean ± sample std over the runs. 'Time to goal' is the training time until the **validation** "
             "accuracy first reached the card's goal (the median over the runs that reached it; the test "
             "figure decides whether the goal is met). Per-run records: `bench/results.json` (key "
             "\"tasks\").", "",
             "| task | test accuracy, mean ± std | validation accuracy (chosen) | goal (test) | baseline | "
             "time to goal (validation) | training time | samples/s | threads, load | status | command |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in sorted(tasks):
        entry = card_entry(tasks[name])
        s = entry["summary"]
        base = s.get("baseline") or {}
        baseline = f"{base['accuracy']:.3f} ({base.get('method', '')})" if "accuracy" in base else "-"
        reached = s.get("reached_goal", 0)
        ttg = "-" if not (s.get("goal") or {}).get("accuracy") else (
            f"{_minutes(s['time_to_goal_s'])} ({reached}/{s['runs']} runs)" if reached else f"not reached (0/{s['runs']})")
        load = f"{s.get('threads', '-')}, {s['load_average_start']:.1f}" if s.get("load_average_start") is not None else "-"
        cmd = f"`{entry['command']}`" if entry.get("command") else "(before seeds and the validation split)"
        extra = f", perplexity {s['perplexity_mean']:.1f}" if s.get("perplexity_mean") else ""
        lines.append(f"| {name} | {accuracy_cell(s)}{extra} | {_f(s.get('validation_accuracy_mean'))} | {goal_cell(s)} | "
                     f"{baseline} | {ttg} | {_minutes(s.get('train_time_s_mean'))} | {_f(s.get('samples_per_s_mean'), 0)} "
                     f"| {load} | {s.get('status', '-')} | {cmd} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one run of it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="*", help="task cards to run (default: every card of the registry)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"runs per card, seeds 0..N-1 (default {DEFAULT_SEEDS}; cards with cross-validation run folds)")
    p.add_argument("--folds", type=int, default=None,
                   help="cards with [cross_validation]: run folds 0..N-1 only (default: every fold)")
    p.add_argument("--cv-seeds", type=int, default=1,
                   help="cards with [cross_validation]: run every fold with seeds 0..N-1 (repeated cross-validation; "
                        "default 1: seed 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every run (recorded beside its result)")
    p.add_argument("--limit-min", type=float, default=30.0, help="wall-clock limit per run in minutes (default 30)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per run (default: the core count, or 1 when the machine is already "
                        "busy: oversubscribed OpenMP threads made a step 20x slower here)")
    p.add_argument("--results", type=Path, default=BENCH / "results.json")
    p.add_argument("--markdown", type=Path, default=BENCH / "tasks.md", help=argparse.SUPPRESS)
    p.add_argument("--runs-dir", type=Path, default=BENCH / "runs", help=argparse.SUPPRESS)
    p.add_argument("--table", action="store_true", help="only rewrite bench/tasks.md from results.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true",
                   help="reuse finished runs in the runs folder (same card and overrides) and continue interrupted ones")
    p.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.out, args.overrides, args.result, resume=args.resume)
    if args.seeds < 1 or args.cv_seeds < 1 or (args.folds is not None and args.folds < 1):
        print(f"--seeds / --cv-seeds / --folds: expected integers >= 1, got {args.seeds} / {args.cv_seeds} / "
              f"{args.folds}", file=sys.stderr)
        return 2
    if not args.table:
        from gperc_core.data.registry import find_card, plugin_manager
        from gperc_core.data.tasks import list_tasks

        known = list_tasks()
        names = args.tasks or [t for t in DEFAULT_ORDER if t in known] + [t for t in known if t not in DEFAULT_ORDER]
        unknown = [t for t in names if t not in known]
        if unknown:
            print(f"unknown tasks {unknown}; known: {known}", file=sys.stderr)
            return 2
        threads = args.threads or (1 if os.getloadavg()[0] >= (os.cpu_count() or 1) else os.cpu_count() or 1)
        pm = plugin_manager()
        for name in names:
            card = find_card(name, pm)
            plan = plan_runs(card, args.seeds, args.folds, args.cv_seeds)
            runs = []
            for label, extra in plan:
                print(f"== {name} {label} (limit {args.limit_min:g} min)", flush=True)
                record = run_one(name, label, args.limit_min * 60, [*extra, *args.overrides], threads, args.runs_dir,
                                 resume=args.resume)
                record["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
                runs.append(record)
                print(f"   {record.get('status')}: test accuracy {record.get('accuracy')} (validation "
                      f"{record.get('validation_accuracy')}) in {record.get('train_time_s')} s training "
                      f"({record.get('samples_per_s')} samples/s)", flush=True)
            tasks = read_tasks(args.results)
            tasks[name] = {"runs": runs, "summary": summarise(runs),
                           "command": command(name, args, bool(card.cross_validation))}
            update_results(args.results, KEY, tasks)
    args.markdown.write_text(markdown(read_tasks(args.results)))
    print(f"wrote {args.results} (key '{KEY}') and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
