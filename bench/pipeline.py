"""Pipeline-parallel throughput on one machine: 1F1B vs GPipe vs DDP vs one process (issue 5, bench).

The model of the core benchmark's shapes (bench/core/shapes.py: "cifar", "long"), trained one
step at a time (forward, cross-entropy, backward; no optimizer step), measured four ways with
the same total of 2 CPU threads:

- ``single``: one process x 2 threads, the plain `Perceiver` (``single-1t``: one thread, a reference);
- ``gpipe`` / ``1f1b``: 2 processes x 1 thread, a 2-stage pipeline (gloo over loopback) with
  M microbatches, stages cut by gperc's cost model;
- ``ddp``: 2 processes x 1 thread, DDP with half the batch each.

samples/s = B / median step time (of the slowest rank). CPU s/step sums the process CPU time of
all ranks: the work a mode spends per step, less sensitive than wall time to other processes
sharing the cores. Writes the key "pipeline" of
bench/results.json (read-modify-write under the same lock as bench/run.py) and bench/pipeline.md.

    .venv/bin/python bench/pipeline.py                         # cifar and long, about 10 minutes on 2 cores
    .venv/bin/python bench/pipeline.py --shapes cifar --steps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from core.shapes import SHAPES, Shape  # noqa: E402

MODES = ("single", "single-1t", "gpipe", "1f1b", "ddp")
MICROBATCHES = {"cifar": 4, "long": 2, "tiny": 2}


def shape_config(shape: Shape):
    """The `PerceiverConfig` of a core-benchmark shape (no position encoding, dropout 0, one query)."""
    from gperc_core import PerceiverConfig

    return PerceiverConfig(input_len=shape.m, input_dim=shape.c, latent_len=shape.n, latent_dim=shape.d,
                           num_heads=shape.h, num_layers=shape.layers, ffw_latent=shape.ffw, ffw_output=shape.ffw,
                           output_len=shape.outputs, output_dim=shape.d, n_classes=shape.classes,
                           input_pos_enc="none", dropout=0.0, seed=0)


def _batch(shape: Shape, rows: slice | None = None):
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape.b, shape.m, shape.c, generator=gen)
    y = torch.randint(0, shape.classes, (shape.b,), generator=gen)
    return (x, y) if rows is None else (x[rows], y[rows])


def _worker(ctx, shape_name: str, mode: str, microbatches: int, warmup: int, steps: int) -> dict:
    """One rank of one measurement; returns its step times (seconds)."""
    import torch
    import torch.nn.functional as F

    from gperc_core.model.perceiver import Perceiver

    shape = SHAPES[shape_name]
    config = shape_config(shape)
    times: list[float] = []
    cpu: list[float] = []
    plan = None
    if mode in ("gpipe", "1f1b"):
        from gperc_core.parallel.pipeline import build_pipeline

        handle = build_pipeline(config, schedule=mode, microbatches=microbatches)
        plan = handle.plan.describe()
        x, y = _batch(shape)
        for i in range(warmup + steps):
            handle.zero_grad()
            t0, c0 = time.perf_counter(), time.process_time()
            handle.step(x, y)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    else:
        model = Perceiver(config)
        if mode == "ddp":
            from gperc_core.parallel.distributed import wrap_ddp

            half = shape.b // ctx.world_size
            x, y = _batch(shape, slice(ctx.rank * half, (ctx.rank + 1) * half))
            model = wrap_ddp(model)
        else:
            x, y = _batch(shape)
        for i in range(warmup + steps):
            model.zero_grad(set_to_none=True)
            t0, c0 = time.perf_counter(), time.process_time()
            F.cross_entropy(model(x), y).backward()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    return {"times": times, "cpu": cpu, "plan": plan, "threads": torch.get_num_threads()}


def measure(shape_name: str, mode: str, warmup: int, steps: int, timeout_s: float) -> dict:
    """Run one measurement in fresh processes; returns its record."""
    from gperc_core.parallel.distributed import RankFailure, spawn_workers

    shape = SHAPES[shape_name]
    micro = MICROBATCHES.get(shape_name, 2)
    world, threads = {"single": (1, 2), "single-1t": (1, 1)}.get(mode, (2, 1))
    record = {"shape": shape_name, "mode": mode, "ranks": world, "threads_per_rank": threads, "batch": shape.b,
              "microbatches": micro if mode in ("gpipe", "1f1b") else None}
    try:
        per_rank = spawn_workers(_worker, world, args=(shape_name, mode, micro, warmup, steps), threads=threads,
                                 timeout_s=timeout_s)
    except RankFailure as exc:
        return {**record, "status": "failed", "reason": str(exc)[:500]}
    slowest = [max(ts) for ts in zip(*(r["times"] for r in per_rank))]
    cpu = [sum(cs) for cs in zip(*(r["cpu"] for r in per_rank))]
    median = statistics.median(slowest)
    return {**record, "status": "ok", "step_times_s": [round(t, 4) for t in slowest], "median_s": round(median, 4),
            "samples_per_s": round(shape.b / median, 3), "cpu_s_per_step": round(statistics.median(cpu), 4),
            "plan": per_rank[0]["plan"]}


def bubble(stages: int, microbatches: int) -> float:
    """Idle fraction of an S-stage fill-drain pipeline with M microbatches: (S-1)/(M+S-1)."""
    return (stages - 1) / (microbatches + stages - 1)


def markdown(result: dict) -> str:
    """The Markdown report of a result dict."""
    lines = ["# Pipeline parallelism on one CPU machine", "",
             f"Generated {result['generated']} by `{result['command']}` on {result['machine']['cpu']} "
             f"({result['machine']['cores']} cores, load average {result['machine']['load_average_start']} at the "
             f"start, {result['machine']['load_average_end']} at the end; torch {result['machine']['torch']}).", "",
             "| shape | mode | ranks x threads | microbatches | s/step (median) | samples/s | vs single | "
             "vs single-1t | CPU s/step (all ranks) | CPU work vs single-1t |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    single = {r["shape"]: r for r in result["runs"] if r["mode"] == "single" and r["status"] == "ok"}
    one = {r["shape"]: r for r in result["runs"] if r["mode"] == "single-1t" and r["status"] == "ok"}
    for r in result["runs"]:
        if r["status"] != "ok":
            lines.append(f"| {r['shape']} | {r['mode']} | {r['ranks']} x {r['threads_per_rank']} | "
                         f"{r['microbatches'] or '-'} | failed: {r['reason'][:80]} | | | | | |")
            continue
        base, ref = single.get(r["shape"]), one.get(r["shape"])
        ratio = f"{r['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "-"
        ratio1 = f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x" if ref else "-"
        work = f"{r['cpu_s_per_step'] / ref['cpu_s_per_step']:.2f}x" if ref else "-"
        lines.append(f"| {r['shape']} | {r['mode']} | {r['ranks']} x {r['threads_per_rank']} | "
                     f"{r['microbatches'] or '-'} | {r['median_s']:.3f} | {r['samples_per_s']:.2f} | {ratio} | "
                     f"{ratio1} | {r['cpu_s_per_step']:.2f} | {work} |")
    lines += ["", "Stage cuts (cost model):", ""]
    for r in result["runs"]:
        if r.get("plan") and r["mode"] == "1f1b":
            lines += [f"- {r['shape']}: " + "; ".join(p.strip() for p in r["plan"].splitlines()[1:])]
    lines += ["", result["method"], ""]
    if result.get("notes"):
        lines += [result["notes"], ""]
    return "\n".join(lines)


METHOD = """How: each measurement runs in fresh processes (gperc_core.parallel.distributed.spawn_workers: gloo, file
rendezvous, forkserver), one measurement at a time. A step zeroes the gradients, runs forward,
cross-entropy and backward (the pipeline's `PipelineHandle.step`, which also broadcasts the loss);
no optimizer step. The time of a step is that of the slowest rank; the table reports the median
of the timed steps after the warm-up steps. Both sides use 2 threads in all: one process with
2 threads, or 2 processes with 1 thread each.

Reading it: a 2-stage pipeline on one machine can at best match the single process (the same
arithmetic, split in two), and loses (a) the pipeline bubble, (S-1)/(M+S-1) of the time with
GPipe and 1F1B (1F1B saves activation memory, not time), (b) the imbalance of the two stages,
(c) copies of latents and gradients over loopback, and (d) smaller matmuls per microbatch.
DDP splits the batch instead and has no bubble, so on one machine it is the better use of
two cores; pipelining pays when the model does not fit one device's memory, or across GPUs
with fast links."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["cifar", "long"], choices=sorted(SHAPES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="process-group timeout of each measurement")
    parser.add_argument("--results", type=Path, default=BENCH / "results.json")
    parser.add_argument("--table", type=Path, default=BENCH / "pipeline.md")
    parser.add_argument("--notes", default="", help="text appended to the report")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"

    import torch

    from run import cpu_name, update_results

    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                          "load_average_start": [round(x, 2) for x in os.getloadavg()]}, "runs": []}
    for shape in args.shapes:
        for mode in args.modes:
            t0 = time.monotonic()
            record = measure(shape, mode, args.warmup, args.steps, args.timeout)
            result["runs"].append(record)
            what = (f"{record['samples_per_s']:.2f} samples/s ({record['median_s']:.3f} s/step)"
                    if record["status"] == "ok" else f"FAILED {record['reason'][:200]}")
            print(f"{shape:6s} {mode:6s} {what}  [{time.monotonic() - t0:.0f} s]", flush=True)
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["bubble_2_stages"] = {str(m): round(bubble(2, m), 3) for m in sorted(set(MICROBATCHES.values()))}
    result["generated"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result["command"] = "bench/pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["method"] = METHOD
    result["notes"] = args.notes
    update_results(args.results, "pipeline", result)
    args.table.write_text(markdown(result))
    print(f"wrote {args.results} (key 'pipeline') and {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
