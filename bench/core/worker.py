"""One measurement in one process: a training step of one implementation on one shape.

Run as ``python bench/core/worker.py --impl gperc --shape cifar --precision fp32`` (with the
project's .venv for gperc, .peers-venv for the peers). The last stdout line is one JSON object:
``status`` ("ok" or "failed"), per-step times, the median, samples/s, peak RSS, and on failure
the reason. ``step_cpu_s`` is the process CPU time of each step (all threads): with other
processes on the machine, wall time grows while CPU time mostly does not. A step is: gradients
cleared, forward (under ``torch.autocast("cpu", bfloat16)`` for bf16), ``cross_entropy`` in
fp32, ``backward``. No optimizer step.

Memory: ``peak_rss_mb`` is the process's resident-set high-water mark (``getrusage`` ru_maxrss,
which includes the interpreter and the imported libraries); ``base_rss_mb`` is the resident set
after imports, before the model is built. ``--mem-limit-gb`` sets RLIMIT_AS so that an
allocation beyond it fails inside the process (reported as failed) instead of taking the machine
down; the parent also watches RSS.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so that `core` imports

IMPLS = ("gperc", "krasserm", "lucidrains", "hf")
PROTOTYPES = ("gperc_proto",)  # measured on request (--impls gperc_proto), not by default
PRECISIONS = ("fp32", "bf16")


def current_rss_mb() -> float:
    """Return this process's current resident set size in MiB (from /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Return this process's resident-set high-water mark in MiB (ru_maxrss is KiB on Linux; the kernel
    updates it lazily, so it can trail the current resident set, which is a lower bound)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, current_rss_mb())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", required=True, choices=IMPLS + PROTOTYPES)
    p.add_argument("--shape", required=True)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed ones")
    p.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mem-limit-gb", type=float, default=0.0, help="RLIMIT_AS in GB (0: none)")
    p.add_argument("--max-seconds", type=float, default=0.0,
                   help="stop timing after this many seconds of steps (at least one timed step)")
    p.add_argument("--profile", default="", help="write a torch.profiler table of one step to this path")
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (peak memory is then the CUDA allocator's)")
    p.add_argument("--sdpa", default="any", choices=("any", "flash"),
                   help="'flash': restrict scaled_dot_product_attention to the flash kernel, then the "
                        "memory-efficient one (CUDA)")
    return p.parse_args(argv)


def train_step(model, forward, x, y, precision: str):
    """Run one training step (no optimizer); returns the loss as a float (which waits for the device)."""
    import torch
    import torch.nn.functional as F

    for p in model.parameters():
        p.grad = None
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = forward(x)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    return float(loss.detach())


def measure(args: argparse.Namespace) -> dict:
    """Build the model, run warm-up and timed steps; returns the result record."""
    import torch

    from core.shapes import get_shape

    torch.set_num_threads(args.threads)
    shape = get_shape(args.shape)
    impl = importlib.import_module(f"core.impl_{args.impl}")
    record: dict = {"impl": args.impl, "shape": shape.name, "precision": args.precision,
                    "version": impl.version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "base_rss_mb": round(current_rss_mb(), 1)}
    device = torch.device(args.device)
    record["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    torch.manual_seed(0)
    model, forward = impl.build(shape)
    model.to(device).train()
    record["parameters"] = sum(p.numel() for p in model.parameters())
    x = torch.randn(shape.b, shape.m, shape.c, device=device)
    y = torch.randint(0, shape.classes, (shape.b,), device=device)
    record["model_rss_mb"] = round(current_rss_mb(), 1)
    if args.sdpa == "flash":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kernels = sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION], set_priority=True)
        kernels.__enter__()  # for the rest of this process
        record["sdpa"] = "flash, then memory-efficient"
    for _ in range(args.warmup):
        train_step(model, forward, x, y, args.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    cpu_times: list[float] = []
    start = time.perf_counter()
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = train_step(model, forward, x, y, args.precision)  # float(loss) synchronises the device
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if args.max_seconds and time.perf_counter() - start > args.max_seconds:
            break
    if args.profile:
        write_profile(model, forward, x, y, args.precision, Path(args.profile))
    median = statistics.median(times)
    record.update(status="ok", loss=loss, step_times_s=[round(t, 4) for t in times], median_s=round(median, 4),
                  min_s=round(min(times), 4), step_cpu_s=[round(t, 4) for t in cpu_times],
                  samples_per_s=round(shape.b / median, 3), peak_rss_mb=round(peak_rss_mb(), 1))
    if device.type == "cuda":
        record["peak_device_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return record


def write_profile(model, forward, x, y, precision: str, path: Path) -> None:
    """Profile one training step and write the top ops by self CPU time to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        train_step(model, forward, x, y, precision)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
    by_shape = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=20)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table + "\n\nby input shape:\n" + by_shape + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.mem_limit_gb > 0:
        limit = int(args.mem_limit_gb * 1e9)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        record = measure(args)
    except BaseException as exc:  # noqa: BLE001 - any failure is a result, not a crash of the benchmark
        kind = "out of memory" if isinstance(exc, MemoryError) or "alloc" in str(exc).lower() else "error"
        record = {"impl": args.impl, "shape": args.shape, "precision": args.precision, "status": "failed",
                  "reason": f"{kind}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}",
                  "peak_rss_mb": round(peak_rss_mb(), 1)}
        traceback.print_exc(file=sys.stderr)
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
