"""The machine's matmul peak: the best GFLOP/s of large square matmuls, fp32 and bf16.

Run as ``python bench/core/matmul_peak.py --threads 2``; prints one JSON object
``{"fp32": {"gflops": ..., "size": ...}, "bf16": {...}, "threads": ...}``. For each dtype and
each size in ``--sizes`` it runs ``--repeats`` timed ``a @ b`` after one warm-up and keeps the
best rate (2*n^3 FLOPs per product); the peak is the best over sizes. ``gflops_cpu_time`` is
the same from process CPU time (per thread, times the threads): on a machine shared with other
processes it is the better estimate of what the cores can do.
"""

from __future__ import annotations

import argparse
import json
import time


def best_rate(n: int, dtype, repeats: int) -> tuple[float, float]:
    """Return the best GFLOP/s of ``repeats`` products of two ``n x n`` matrices of ``dtype``, by
    wall time and by process CPU time per thread times the thread count (the rate the threads
    reach while they run, which other processes on the machine do not lower)."""
    import torch

    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, (time.process_time() - c0) / torch.get_num_threads())
    return 2 * n**3 / best / 1e9, 2 * n**3 / best_cpu / 1e9


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        both = {n: best_rate(n, dtype, args.repeats) for n in args.sizes}
        size = max(both, key=lambda n: both[n][0])
        out[name] = {"gflops": round(both[size][0], 1), "size": size,
                     "gflops_cpu_time": round(max(r[1] for r in both.values()), 1),
                     "by_size": {str(n): round(r[0], 1) for n, r in both.items()}}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
