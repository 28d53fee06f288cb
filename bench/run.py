"""`make bench`: the core benchmark of gperc against peer Perceiver implementations (issue 2, item 6).

One training step (forward, cross-entropy, backward) of gperc, krasserm perceiver-io 0.11.0,
lucidrains perceiver-pytorch and HF transformers' Perceiver on identical shapes ("cifar",
"long", "huge"), in fp32 and under bf16 autocast, each measurement in its own process (one at a
time, 2 torch threads, a time limit and a memory limit), plus the machine's fp32/bf16 matmul
peak. Writes the "core" key of bench/results.json (other keys are left as they are) and the
Markdown table bench/core.md. The peers live in .peers-venv, created by bench/setup_peers.sh
when missing.

    .venv/bin/python bench/run.py                      # everything (about 30-40 minutes on 2 cores)
    .venv/bin/python bench/run.py --shapes cifar       # one shape; other records are kept
    .venv/bin/python bench/run.py --impls gperc --precisions bf16 --profile-dir bench/profiles
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from core.report import add_derived, check_goals, markdown  # noqa: E402
from core.runner import run_child  # noqa: E402
from core.shapes import SHAPES  # noqa: E402
from core.worker import IMPLS, PRECISIONS, PROTOTYPES  # noqa: E402

# warm-up steps, timed steps, time limit (s) per measurement
SCHEDULE = {"cifar": (1, 3, 400), "long": (1, 2, 600), "huge": (0, 1, 700), "tiny": (1, 2, 120)}
METHOD = """\
- One process per implementation x shape x precision, run one after another with
  `torch.set_num_threads(2)` and `OMP_NUM_THREADS=2`. A step clears the gradients, runs the
  forward (under `torch.autocast("cpu", dtype=torch.bfloat16)` for bf16), `cross_entropy` in fp32
  on the `[B, 10]` logits, and `backward`; no optimizer step. Warm-up steps are not timed; the
  table reports the median of the timed steps (cifar 1 warm-up + 3 timed, long 1 + 2, huge 0 + 1: one huge step is 20-400 s).
- samples/s = B / median step time. GFLOP/s = the analytic FLOP count of the standard Perceiver
  IO of the shape (bench/core/flops.py: matmuls only, K/V projected to width D, training = 3x
  forward), the same count for every implementation, divided by the median step time; "% of
  matmul peak" divides it by the best square-matmul rate of the same dtype (the better of its
  wall-time and CPU-time rates, as load from other processes depresses the first). gperc's
  input-space cross-attention does fewer FLOPs than this count for narrow inputs, so on "long"
  and "huge" its GFLOP/s is an effective rate. "CPU s/step" is the process CPU time of a step
  (both threads): the view of the work that other processes' load changes least.
- Peak RSS = the child's resident-set high-water mark (`getrusage(RUSAGE_SELF).ru_maxrss`), which
  includes Python, torch and the imported libraries; "RSS over base" subtracts the resident set
  measured after imports and before the model is built. Memory guard: RLIMIT_AS in the child
  (--mem-limit-gb) and a resident-set watch by the parent (--rss-limit-gb); a run over either
  limit or the time limit is recorded as failed with the reason.
- Same model everywhere: input already C channels, no position encoding, N learned latents of
  width D, H heads in every attention, one cross-attention layer, L self-attention layers, MLP
  widening 4, one learned output query of width D, 10 classes, dropout 0. Exact per-library
  construction: bench/core/impl_*.py (lucidrains' MLPs are GEGLU, as that library defines them).
- Other processes share the 2 cores, so times are noisy: each record keeps every step time."""


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on the folder of ``path`` while reading and rewriting ``path``
    (a lock on the folder leaves no lock file behind and survives the file's atomic replace)."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def update_results(path: Path, key: str, value: dict) -> None:
    """Read ``path`` (JSON object), set ``key`` to ``value``, write it back atomically."""
    with locked(path):
        data = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
        data[key] = value
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)


def read_core(path: Path) -> dict:
    """Return the existing "core" results (empty when there are none)."""
    if not path.exists() or not path.read_text().strip():
        return {}
    return json.loads(path.read_text()).get("core", {})


def ensure_peers(venv: Path) -> str | None:
    """Create the peers' venv when missing; returns None, or why the peers cannot run."""
    proc = subprocess.run(["bash", str(BENCH / "setup_peers.sh"), str(venv)], text=True, capture_output=True)
    if proc.returncode:
        return f"peers venv set-up failed (bench/setup_peers.sh exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    return None


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=["cifar", "long", "huge"], choices=sorted(SHAPES))
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS + PROTOTYPES)
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every implementation this many times, interleaved, and pool the step times "
                        "(spreads the drift of other processes' load evenly over the implementations)")
    p.add_argument("--steps", type=int, default=0, help="timed steps (0: per-shape default)")
    p.add_argument("--warmup", type=int, default=-1, help="warm-up steps (-1: per-shape default)")
    p.add_argument("--timeout", type=float, default=0, help="seconds per measurement (0: per-shape default)")
    p.add_argument("--mem-limit-gb", type=float, default=20.0, help="RLIMIT_AS of each child (virtual memory)")
    p.add_argument("--rss-limit-gb", type=float, default=18.0, help="kill a child whose resident set passes this")
    p.add_argument("--peers-venv", type=Path, default=ROOT / ".peers-venv")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: re-render the table and goals from the stored results")
    p.add_argument("--no-peak", action="store_true", help="keep the stored matmul peak instead of measuring")
    p.add_argument("--profile-dir", type=Path, default=None,
                   help="also write a torch.profiler table of one step per run into this folder")
    p.add_argument("--results", type=Path, default=BENCH / "results.json")
    p.add_argument("--table", type=Path, default=BENCH / "core.md")
    p.add_argument("--notes", type=Path, default=BENCH / "core_notes.md",
                   help="hand-written observations appended to the table (noise, profiles)")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "bench.md",
                   help="the docs site page (the same table; bench/update_readme.py rewrites it too)")
    return p.parse_args(argv)


def measure_peak(args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(BENCH / "core" / "matmul_peak.py"), "--threads", str(args.threads)]
    record = run_child(cmd, timeout_s=300, rss_limit_mb=args.rss_limit_gb * 1024)
    print(f"matmul peak: fp32 {record.get('fp32', {}).get('gflops')} GFLOP/s, "
          f"bf16 {record.get('bf16', {}).get('gflops')} GFLOP/s", flush=True)
    return record


def measure_one(args: argparse.Namespace, impl: str, shape: str, precision: str, peers_error: str | None) -> dict:
    warmup, steps, timeout = SCHEDULE[shape]
    warmup = warmup if args.warmup < 0 else args.warmup
    steps = args.steps or steps
    timeout = args.timeout or timeout
    base = {"impl": impl, "shape": shape, "precision": precision}
    python = sys.executable if impl.startswith("gperc") else str(args.peers_venv / "bin" / "python")
    if not impl.startswith("gperc") and peers_error:
        return {**base, "status": "failed", "reason": peers_error}
    cmd = [python, str(BENCH / "core" / "worker.py"), "--impl", impl, "--shape", shape, "--precision", precision,
           "--warmup", str(warmup), "--steps", str(steps), "--threads", str(args.threads),
           "--mem-limit-gb", str(args.mem_limit_gb), "--max-seconds", str(timeout / 2)]
    if args.profile_dir:
        cmd += ["--profile", str(args.profile_dir / f"{impl}-{shape}-{precision}.txt")]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    record = run_child(cmd, timeout_s=timeout, rss_limit_mb=args.rss_limit_gb * 1024, env=env, cwd=str(ROOT))
    return {**base, **record}


def pool(first: dict, later: dict) -> dict:
    """Pool two measurements of the same run: all step times, their median, the larger peak RSS."""
    if first.get("status") != "ok":
        return later
    if later.get("status") != "ok":
        return first
    import statistics

    times = first["step_times_s"] + later["step_times_s"]
    median = statistics.median(times)
    b = first["samples_per_s"] * first["median_s"]
    return {**first, "step_times_s": times, "step_cpu_s": first.get("step_cpu_s", []) + later.get("step_cpu_s", []),
            "median_s": round(median, 4), "min_s": round(min(times), 4), "samples_per_s": round(b / median, 3),
            "peak_rss_mb": max(first["peak_rss_mb"], later["peak_rss_mb"]),
            "rounds": first.get("rounds", 1) + 1, "wall_s": round(first.get("wall_s", 0) + later.get("wall_s", 0), 1)}


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """Replace old records by new ones with the same (impl, shape, precision); keep a stable order."""
    keyed = {(r["impl"], r["shape"], r["precision"]): r for r in old if "impl" in r}
    keyed.update({(r["impl"], r["shape"], r["precision"]): r for r in new})
    order = {name: i for i, name in enumerate(SHAPES)}
    impls = IMPLS + PROTOTYPES
    return sorted(keyed.values(), key=lambda r: (order.get(r["shape"], 99), PRECISIONS.index(r["precision"]),
                                                 impls.index(r["impl"]) if r["impl"] in impls else 99))


def write_outputs(args: argparse.Namespace, core: dict, quiet: bool = False) -> None:
    """Derive ratios and goals, then write results.json ("core"), the table and the README section."""
    add_derived(core["runs"], core.get("matmul_peak") or {})
    core["goals"] = check_goals(core["runs"])
    core["method"] = METHOD
    core["notes"] = args.notes.read_text().strip() if args.notes.exists() else ""
    update_results(args.results, "core", core)
    args.table.write_text(markdown(core))
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text(markdown(core, level=1))
    if quiet:
        return
    for g in core["goals"]:
        print(f"goal: {g['goal']}: {g['measured']} -> {g['met']}")
    print(f"wrote {args.results} (key 'core'), {args.table} and {args.docs}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the runner's clean-up (kill the child)
    if args.report_only:
        core = read_core(args.results)
        if not core.get("runs"):
            print(f"no core results in {args.results}: run without --report-only first", file=sys.stderr)
            return 2
        write_outputs(args, core)
        return 0
    peers_error = None
    if any(not i.startswith("gperc") for i in args.impls):
        peers_error = ensure_peers(args.peers_venv)
        if peers_error:
            print(peers_error, file=sys.stderr)
    core = read_core(args.results)
    import torch

    core["machine"] = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
                       "torch": torch.__version__, "python": platform.python_version(),
                       "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    if not args.no_peak or "matmul_peak" not in core:
        core["matmul_peak"] = measure_peak(args)
    for shape in args.shapes:
        for precision in args.precisions:
            pooled: dict[str, dict] = {}
            for _, impl in ((k, i) for k in range(args.rounds) for i in args.impls):
                t0 = time.monotonic()
                r = measure_one(args, impl, shape, precision, peers_error)
                r = pooled[impl] = pool(pooled[impl], r) if impl in pooled else r
                what = (f"{r['samples_per_s']:.2f} samples/s, {r['median_s']:.3f} s/step, "
                        f"peak RSS {r['peak_rss_mb'] / 1024:.2f} GiB" if r.get("status") == "ok"
                        else f"FAILED: {r.get('reason')}")
                print(f"{shape:6s} {precision} {impl:10s} {what}  [{time.monotonic() - t0:.0f} s]", flush=True)
                # written after every measurement, so an interrupted run keeps what it measured
                core["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
                core["runs"] = merge(core.get("runs", []), [r])
                core["generated"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                core["command"] = ("make bench" if argv is None and sys.argv[1:] == []
                                   else "bench/run.py " + " ".join(sys.argv[1:]))
                write_outputs(args, core, quiet=True)
    write_outputs(args, core)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
