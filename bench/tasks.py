"""`make bench-tasks`: train each task of the registry with its card's defaults and report the result.

Each task trains in its own process (``gperc train``'s code path: `create_task` + `Trainer`) into
``bench/runs/<task>``, with a wall-clock limit; a task that hits the limit is stopped with SIGTERM,
which checkpoints it, and its last evaluation is reported as partial. Writes the "tasks" key of
``bench/results.json`` (read-modify-write under the same lock as bench/run.py: other keys and the
other tasks' entries are kept) and the Markdown table ``bench/tasks.md``, beside each card's
baseline (DATASETS.md).

    .venv/bin/python bench/tasks.py                          # every task of the registry
    .venv/bin/python bench/tasks.py image/digits graph/mutag # some tasks
    .venv/bin/python bench/tasks.py --limit-min 30 --set training.epochs=5 image/fashion-mnist
    .venv/bin/python bench/tasks.py --table                  # only rewrite bench/tasks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
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
DEFAULT_ORDER = ["image/digits", "graph/karate", "graph/mutag", "multimodal/av-digits", "audio/spoken-digits",
                 "image/digits-segmentation", "text/wordnet-supersense", "text/wordnet-mlm", "image/fashion-mnist"]


def worker(task_name: str, out_dir: Path, overrides: list[str], result_path: Path) -> int:
    """Train one task (in this process) and write its result JSON to ``result_path``."""
    import torch

    from gperc_core.data.tasks import create_task, parse_assignments
    from gperc_core.train.trainer import Trainer

    t0 = time.perf_counter()
    task = create_task(task_name, **{"training.progress": False, **parse_assignments(overrides)})
    trainer = Trainer(task, out_dir)
    data_s = time.perf_counter() - t0
    record: dict[str, Any] = {
        "task": task_name, "train_samples": len(trainer.loader), "eval_samples": len(trainer.eval_data),
        "parameters": sum(p.numel() for p in trainer.model.parameters()), "epochs": trainer.cfg.epochs,
        "batch_size": trainer.cfg.batch_size, "total_steps": trainer.total_steps, "device": str(trainer.device),
        "bf16": trainer.bf16, "threads": torch.get_num_threads(), "data_s": round(data_s, 1),
        "overrides": overrides, "baseline": task.card.baseline or None}
    status = "done"
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        status = "time limit"
        result = {"step": trainer.step, "eval": trainer.evaluate(), "train_time_s": trainer.train_time,
                  "samples_per_s": trainer.samples_seen / max(trainer.train_time, 1e-9)}
    record.update(status=status, steps=result["step"], accuracy=result["eval"]["accuracy"],
                  loss=result["eval"]["loss"], train_time_s=round(result["train_time_s"], 1),
                  samples_per_s=round(result["samples_per_s"], 1),
                  best_epoch_accuracy=max((r["accuracy"] for r in _evals(out_dir)), default=None))
    result_path.write_text(json.dumps(record, indent=2))
    return 0


def _evals(out_dir: Path) -> list[dict[str, Any]]:
    from gperc_core.train.metrics import read_jsonl

    return [r for r in read_jsonl(out_dir / "metrics.jsonl") if r.get("split") == "eval"]


def run_task(task_name: str, limit_s: float, overrides: list[str], threads: int) -> dict[str, Any]:
    """Train ``task_name`` in a child process with a wall-clock limit; returns its result record."""
    out_dir = BENCH / "runs" / task_name.replace("/", "-")
    shutil.rmtree(out_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", task_name, "--out", str(out_dir),
               "--result", str(result_path)] + [a for o in overrides for a in ("--set", o)]
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
    record.update(wall_s=round(wall, 1), load_average_start=[round(x, 2) for x in load_start],
                  load_average_end=[round(x, 2) for x in os.getloadavg()], run_dir=str(out_dir.relative_to(ROOT)),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    return record


def read_tasks(path: Path) -> dict[str, Any]:
    """Return the existing "tasks" results of ``path`` (empty when there are none)."""
    if not path.exists() or not path.read_text().strip():
        return {}
    return json.loads(path.read_text()).get(KEY, {})


def markdown(tasks: dict[str, Any]) -> str:
    """Return the Markdown table of the task results, beside each card's baseline."""
    lines = ["# gperc tasks: test accuracy with each card's defaults", "",
             "Measured by `bench/tasks.py` (one process per task on the shared 2-core CPU of the build "
             "machine; its load average at the start and the torch threads are given: other jobs ran at "
             "the same time, so times are upper bounds). Accuracy is on the card's evaluation split after "
             "the last epoch; 'best epoch' is the best of the per-epoch evaluations.", "",
             "| task | test accuracy | best epoch | baseline | steps | training time | samples/s | threads, load | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in sorted(tasks):
        r = tasks[name]
        base = r.get("baseline") or {}
        baseline = f"{base['accuracy']:.3f} ({base.get('method', '')})" if "accuracy" in base else "-"
        acc = f"{r['accuracy']:.4f}" if isinstance(r.get("accuracy"), float) else "-"
        best = f"{r['best_epoch_accuracy']:.4f}" if isinstance(r.get("best_epoch_accuracy"), float) else "-"
        steps = f"{r.get('steps', '-')}/{r.get('total_steps', '-')} ({r.get('epochs', '-')} ep)"
        time_s = f"{r['train_time_s'] / 60:.1f} min" if isinstance(r.get("train_time_s"), (int, float)) else "-"
        load = f"{r.get('threads', '-')}, {r['load_average_start'][0]:.1f}" if r.get("load_average_start") else "-"
        extra = f" ({', '.join(r['overrides'])})" if r.get("overrides") else ""
        lines.append(f"| {name} | {acc} | {best} | {baseline} | {steps} | {time_s} | {r.get('samples_per_s', '-')} | "
                     f"{load} | {r.get('status', '-')}{extra} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one task of it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="*", help="tasks to run (default: every task of the registry)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every task (recorded beside its result)")
    p.add_argument("--limit-min", type=float, default=30.0, help="wall-clock limit per task in minutes (default 30)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per task (default: the core count, or 1 when the machine is already "
                        "busy: oversubscribed OpenMP threads made a step 20x slower here)")
    p.add_argument("--results", type=Path, default=BENCH / "results.json")
    p.add_argument("--table", action="store_true", help="only rewrite bench/tasks.md from results.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.out, args.overrides, args.result)
    if not args.table:
        from gperc_core.data.tasks import list_tasks

        known = list_tasks()
        names = args.tasks or [t for t in DEFAULT_ORDER if t in known] + [t for t in known if t not in DEFAULT_ORDER]
        unknown = [t for t in names if t not in known]
        if unknown:
            print(f"unknown tasks {unknown}; known: {known}", file=sys.stderr)
            return 2
        threads = args.threads or (1 if os.getloadavg()[0] >= (os.cpu_count() or 1) else os.cpu_count() or 1)
        for name in names:
            print(f"== {name} (limit {args.limit_min:.0f} min)", flush=True)
            record = run_task(name, args.limit_min * 60, args.overrides, threads)
            record["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
            tasks = read_tasks(args.results)
            tasks[name] = record
            update_results(args.results, KEY, tasks)
            print(f"   {record.get('status')}: accuracy {record.get('accuracy')} in {record.get('train_time_s')} s "
                  f"training ({record.get('samples_per_s')} samples/s)", flush=True)
    (BENCH / "tasks.md").write_text(markdown(read_tasks(args.results)))
    print(f"wrote {args.results} (key '{KEY}') and {BENCH / 'tasks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
