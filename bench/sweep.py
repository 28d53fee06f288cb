"""Tune a card on its validation split: train several variants of it at once and rank them.

A sweep file (TOML) lists variants: a name, a card and overrides. Each variant trains once per seed,
or once per fold of a card with ``[cross_validation]``, through `bench/tasks.py`'s runner (its own
process, a wall-clock limit, the best checkpoint chosen on the validation split); ``--jobs`` runs go
at the same time. The ranking is by the mean **validation** accuracy of the chosen checkpoints: the
test figures are recorded beside it (each run tests its chosen weights once) but must not be used to
choose, so the table prints them last. The figure to report is a fresh `bench/tasks.py` run of the
chosen card.

Each run's chosen checkpoint is the best of many evaluations of one validation split, so the ranking's
figure is optimistic, the more so the smaller the split (a 17-graph MUTAG fold: 0.89 chosen against a mean
curve that never passes 0.82). The table therefore also gives the **mean validation curve**: the validation
accuracy per epoch averaged over a variant's runs, its best epoch and its last. Its maximum is one choice
over the average of all runs, not a best-of per run, and is what a fixed epoch count would expect.

    # sweep.toml
    jobs = 4                       # runs at a time (default: --jobs)
    threads = 2                    # torch threads per run
    limit_min = 8                  # wall-clock limit per run
    [[variant]]
    name = "base"
    task = "graph/mutag"
    [[variant]]
    name = "lr5e-4"
    task = "graph/mutag"
    set = ["training.lr=5e-4", "training.epochs=120"]
    seeds = 1                      # runs per variant, seeds 0..N-1 (cross-validated cards: every fold per seed)
    folds = 10                     # cross-validated cards: folds 0..N-1 (default every fold)

    .venv/bin/python bench/sweep.py sweep.toml --out sweep-out/      # writes sweep-out/sweep.json, .md
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from tasks import _f as f, plan_runs, run_one, summarise  # noqa: E402

from gperc_core.train.metrics import read_jsonl  # noqa: E402

VARIANT_KEYS = {"name", "task", "set", "seeds", "folds", "threads", "limit_min"}


def load_sweep(path: Path) -> dict[str, Any]:
    """Read and check a sweep file; returns ``{"jobs", "threads", "limit_min", "variants": [...]}``."""
    spec = tomllib.loads(path.read_text())
    variants = spec.get("variant")
    if not isinstance(variants, list) or not variants:
        raise ValueError(f"{path}: expected one or more [[variant]] tables, got {variants!r}")
    names = set()
    for i, v in enumerate(variants):
        unknown = set(v) - VARIANT_KEYS
        if unknown:
            raise ValueError(f"{path}: variant {i}: expected keys among {sorted(VARIANT_KEYS)}, got {sorted(unknown)}")
        if not isinstance(v.get("name"), str) or not isinstance(v.get("task"), str):
            raise ValueError(f"{path}: variant {i}: expected string 'name' and 'task', got {v.get('name')!r}, "
                             f"{v.get('task')!r}")
        if v["name"] in names:
            raise ValueError(f"{path}: variant names must be unique, got {v['name']!r} twice")
        names.add(v["name"])
        if not isinstance(v.get("set", []), list):
            raise ValueError(f"{path}: variant {v['name']!r}: 'set' must be a list of 'KEY=VALUE', got {v['set']!r}")
    return {"jobs": spec.get("jobs"), "threads": spec.get("threads", 2), "limit_min": spec.get("limit_min", 30.0),
            "variants": variants}


def plan(spec: dict[str, Any]) -> list[tuple[dict[str, Any], str, list[str]]]:
    """Every run of the sweep: ``(variant, label, overrides)``."""
    from gperc_core.data.registry import find_card, plugin_manager

    pm = plugin_manager()
    runs = []
    for v in spec["variants"]:
        card = find_card(v["task"], pm)
        seeds = int(v.get("seeds", 1))
        for label, extra in plan_runs(card, seeds, v.get("folds"), cv_seeds=seeds):
            runs.append((v, label, [*extra, *v.get("set", [])]))
    return runs


def validation_curve(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The mean validation accuracy per epoch over ``runs`` (read from each run's ``metrics.jsonl``, epochs
    every run reached): ``{"best", "epoch", "last", "last_epoch", "runs"}``, or ``None`` without curves."""
    curves = []
    for r in runs:
        metrics = Path(str(r.get("run_dir", ""))) / "metrics.jsonl"
        curve = {float(m["epoch"]): float(m["accuracy"]) for m in read_jsonl(metrics)
                 if m.get("split") == "validation" and isinstance(m.get("epoch"), (int, float))
                 and isinstance(m.get("accuracy"), (int, float))}
        if curve:
            curves.append(curve)
    epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    if not epochs:
        return None
    mean = {e: sum(c[e] for c in curves) / len(curves) for e in epochs}
    best = max(epochs, key=lambda e: (mean[e], -e))
    return {"best": mean[best], "epoch": best, "last": mean[epochs[-1]], "last_epoch": epochs[-1], "runs": len(curves)}


def _curve_cell(curve: dict[str, Any] | None) -> str:
    if not curve:
        return "-"
    return f"{curve['best']:.4f} (epoch {curve['epoch']:g}); last {curve['last']:.4f}"


def markdown(results: list[dict[str, Any]]) -> str:
    """The ranking as a Markdown table (by validation; test last, for the record only)."""
    lines = ["| rank | variant | task | overrides | validation (chosen) | validation loss | mean validation curve: best; last | "
             "runs | training time | samples/s | test (not for choosing) |",
             "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(results, 1):
        s = r["summary"]
        lines.append(f"| {i} | {r['name']} | {r['task']} | {' '.join(r['set']) or '(card)'} | "
                     f"{f(s['validation_accuracy_mean'], 4)} | {f(s.get('validation_loss_mean'), 4)} | "
                     f"{_curve_cell(s.get('validation_curve'))} | {s['n']}/{s['runs']} | {f(s['train_time_s_mean'], 0)} s | "
                     f"{f(s['samples_per_s_mean'], 0)} | {f(s['accuracy_mean'], 4)} ± {f(s['accuracy_std'], 3)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run a sweep file; returns 0 when every run produced a result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", type=Path, help="the sweep file (TOML, see the module docstring)")
    p.add_argument("--out", type=Path, required=True, help="folder for sweep.json, sweep.md and the runs")
    p.add_argument("--jobs", type=int, default=None, help="runs at a time (overrides the file's 'jobs'; default 1)")
    args = p.parse_args(argv)
    try:
        spec = load_sweep(args.sweep)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"bench/sweep.py: {exc}", file=sys.stderr)
        return 2
    jobs = int(args.jobs or spec["jobs"] or 1)
    runs = plan(spec)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    print(f"sweep: {len(spec['variants'])} variants, {len(runs)} runs, {jobs} at a time", flush=True)

    done: list[dict[str, Any]] = []
    lock = threading.Lock()

    def collect() -> list[dict[str, Any]]:
        results = []
        for v in spec["variants"]:
            mine = [r for r in done if r["variant"] == v["name"]]
            if mine:
                summary = {**summarise(mine), "validation_curve": validation_curve(mine)}
                results.append({"name": v["name"], "task": v["task"], "set": v.get("set", []),
                                "summary": summary, "runs": mine})
        results.sort(key=lambda r: -(r["summary"]["validation_accuracy_mean"] or -1.0))
        (args.out / "sweep.json").write_text(json.dumps({"wall_s": round(time.time() - start, 1), "jobs": jobs,
                                                         "complete": len(done) == len(runs), "results": results},
                                                        indent=2))
        return results

    def finished(record: dict[str, Any]) -> None:
        with lock:  # sweep.json holds every finished run, so a sweep cut short keeps what it has
            done.append(record)
            collect()

    def one(item: tuple[dict[str, Any], str, list[str]]) -> dict[str, Any]:
        v, label, overrides = item
        record = run_one(v["task"], f"{v['name']}-{label}", float(v.get("limit_min", spec["limit_min"])) * 60,
                         overrides, int(v.get("threads", spec["threads"])), args.out / "runs")
        print(f"  {v['name']} {label}: {record.get('status')}, validation {record.get('validation_accuracy')}, "
              f"{record.get('train_time_s')} s", flush=True)
        record = {"variant": v["name"], **record}
        finished(record)
        return record

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        records = list(pool.map(one, runs))
    results = collect()
    table = markdown(results)
    (args.out / "sweep.md").write_text(table)
    print(table, flush=True)
    return 0 if all(isinstance(r.get("accuracy"), (int, float)) for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
