"""Turn the core benchmark records into the Markdown table and the goal checks of issue 2.

`add_derived(records, peaks)` adds GFLOP/s, the share of the matmul peak and the ratio to the
best peer to each record; `check_goals(records)` returns the four goals with pass/fail and the
measured ratios; `markdown(core)` renders bench/core.md from the "core" results.
"""

from __future__ import annotations

from .flops import train_step_flops
from .shapes import get_shape

PEERS = ("krasserm", "lucidrains", "hf")
NAMES = {"gperc": "gperc", "krasserm": "krasserm perceiver-io", "lucidrains": "lucidrains perceiver-pytorch",
         "hf": "HF transformers Perceiver", "gperc_proto": "gperc + attention dispatch (prototype)"}


def _ok(r: dict | None) -> bool:
    return bool(r) and r.get("status") == "ok"


def find(records: list[dict], impl: str, shape: str, precision: str) -> dict | None:
    """Return the record of ``impl`` on ``shape`` in ``precision``, or None."""
    for r in records:
        if (r.get("impl"), r.get("shape"), r.get("precision")) == (impl, shape, precision):
            return r
    return None


def capacity(peaks: dict, precision: str) -> float | None:
    """Return the matmul peak of ``precision``: the better of the wall-time and CPU-time rates
    (on a shared machine the wall-time rate is depressed by other processes)."""
    p = peaks.get(precision) or {}
    rates = [v for v in (p.get("gflops"), p.get("gflops_cpu_time")) if v]
    return max(rates) if rates else None


def short_reason(reason: str) -> str:
    """Shorten a failure reason for the table (allocator messages become the size that failed)."""
    import re

    hit = re.search(r"tried to allocate (\d+) bytes", reason)
    if hit:
        return f"out of memory (an allocation of {int(hit.group(1)) / 2**30:.1f} GiB failed)"
    return reason.replace("|", "/")[:120]


def add_derived(records: list[dict], peaks: dict) -> None:
    """Add ``train_gflop``, ``gflops``, ``peak_share`` and ``ratio_to_best_peer`` in place."""
    for r in records:
        shape = get_shape(r["shape"])
        r["train_gflop"] = round(train_step_flops(shape) / 1e9, 3)
        if _ok(r):
            r["gflops"] = round(r["train_gflop"] / r["median_s"], 2)
            peak = capacity(peaks, r["precision"])
            r["peak_share"] = round(r["gflops"] / peak, 4) if peak else None
    for r in records:
        peers = [find(records, p, r["shape"], r["precision"]) for p in PEERS]
        rates = [p["samples_per_s"] for p in peers if _ok(p) and p is not r]
        r["ratio_to_best_peer"] = round(r["samples_per_s"] / max(rates), 3) if _ok(r) and rates else None


def median_cpu(r: dict) -> float | None:
    """Return the median process CPU seconds per step of a record (None when not recorded)."""
    cpu = sorted(r.get("step_cpu_s") or [])
    return cpu[len(cpu) // 2] if cpu else None


def _ratio(a: dict | None, b: dict | None, key: str) -> float | None:
    if not (_ok(a) and _ok(b)):
        return None
    return round(a[key] / b[key], 3)


def _cpu_speedup(a: dict | None, b: dict | None) -> str:
    """Return ", <b's CPU s / a's CPU s>x by CPU time" when both records have CPU times, else ""."""
    if not (_ok(a) and _ok(b)) or not median_cpu(a) or not median_cpu(b):
        return ""
    return f" ({median_cpu(b) / median_cpu(a):.2f}x by CPU time)"


def check_goals(records: list[dict]) -> list[dict]:
    """Return the issue's goals, each with ``goal``, ``measured`` and ``met`` (True/False/None)."""
    goals = []
    for precision, target in (("fp32", 1.2), ("bf16", 1.5)):
        g, k = find(records, "gperc", "cifar", precision), find(records, "krasserm", "cifar", precision)
        ratio = _ratio(g, k, "samples_per_s")
        goals.append({"goal": f"cifar {precision}: gperc samples/s >= {target}x krasserm",
                      "measured": f"{ratio}x{_cpu_speedup(g, k)}" if ratio is not None
                      else "n/a (a run failed or is missing)",
                      "met": None if ratio is None else ratio >= target})
    for precision in ("fp32", "bf16"):
        g, k = find(records, "gperc", "long", precision), find(records, "krasserm", "long", precision)
        speed = _ratio(g, k, "samples_per_s")
        memory = _ratio(g, k, "peak_rss_mb")
        if speed is None and _ok(g) and k and k.get("status") == "failed":
            goals.append({"goal": f"long {precision}: >= 2x krasserm's samples/s at <= 0.5x its peak RSS",
                          "measured": f"krasserm failed ({k.get('reason')}); gperc ran", "met": True})
            continue
        met = None if speed is None else (speed >= 2.0 and memory <= 0.5)
        goals.append({"goal": f"long {precision}: >= 2x krasserm's samples/s at <= 0.5x its peak RSS",
                      "measured": (f"{speed}x samples/s{_cpu_speedup(g, k)}, {memory}x peak RSS" if speed is not None
                                   else "n/a (a run failed or is missing)"), "met": met})
    for precision in ("fp32", "bf16"):
        g = find(records, "gperc", "huge", precision)
        peers = [find(records, i, "huge", precision) for i in PEERS]
        trained = [r for r in peers if _ok(r)]
        if not g:
            goals.append({"goal": f"huge {precision}: gperc trains a full step within 24 GB, where the peers cannot",
                          "measured": "n/a (not run)", "met": None})
            continue
        detail = (f"gperc peak RSS {g['peak_rss_mb'] / 1024:.1f} GiB, {g['median_s']:.0f} s/step" if _ok(g)
                  else f"gperc failed: {short_reason(str(g.get('reason')))}")
        detail += "; peers that trained: " + (", ".join(
            f"{r['impl']} ({r['peak_rss_mb'] / 1024:.1f} GiB, {r['median_s']:.0f} s/step)" for r in trained) or "none")
        goals.append({"goal": f"huge {precision}: gperc trains a full step within 24 GB, where the peers cannot",
                      "measured": detail,
                      "met": _ok(g) and g["peak_rss_mb"] <= 24 * 1024 and not trained})
    return goals


def _fmt(v, spec: str = "{:.2f}") -> str:
    return "" if v is None else spec.format(v)


def markdown(core: dict, level: int = 1) -> str:
    """Render the Markdown page (bench/core.md) for the "core" results; ``level`` is the level of
    its top heading."""
    peaks = core.get("matmul_peak") or {}
    top, sub = "#" * level, "#" * (level + 1)
    lines = [f"{top} Core benchmark: one training step, gperc vs peer Perceivers", "",
             "`make bench` (or `.venv/bin/python bench/run.py`) builds the peers' venv `.peers-venv` if "
             "missing (bench/setup_peers.sh, pins in bench/requirements-peers.txt), measures every "
             "implementation x shape x precision in its own process and rewrites this table, "
             "bench/core.md and the \"core\" key of bench/results.json. Shapes: cifar B=32 M=1024 C=64 N=128 "
             "D=256 H=8 L=6; long B=2 M=65536 C=32 N=256 D=512 H=8 L=4; huge B=1 M=1,048,576 C=32 N=256 D=512 "
             "H=8 L=4.", "",
             f"Generated by `{core.get('command', 'make bench')}` on {core.get('generated', '?')}; "
             f"{core.get('machine', {}).get('cpu', '?')}, {core.get('machine', {}).get('threads', '?')} torch threads, "
             f"torch {core.get('machine', {}).get('torch', '?')}; load average (1/5/15 min) at start "
             f"{core.get('machine', {}).get('load_average_start', '?')}, at end "
             f"{core.get('machine', {}).get('load_average_end', '?')} (the machine has "
             f"{core.get('machine', {}).get('cores', '?')} cores; a load above that means other processes "
             f"shared them).", "",
             f"Matmul peak (best square `torch.mm`, wall time): fp32 "
             f"{_fmt((peaks.get('fp32') or {}).get('gflops'), '{:.1f}')} GFLOP/s, bf16 "
             f"{_fmt((peaks.get('bf16') or {}).get('gflops'), '{:.1f}')} GFLOP/s; by CPU time (what the threads do "
             f"while they run): fp32 {_fmt((peaks.get('fp32') or {}).get('gflops_cpu_time'), '{:.1f}')}, bf16 "
             f"{_fmt((peaks.get('bf16') or {}).get('gflops_cpu_time'), '{:.1f}')} GFLOP/s.", "",
             "| shape | precision | implementation | samples/s | step s (median) | CPU s/step | GFLOP/s "
             "| % of matmul peak | peak RSS GiB | RSS over base GiB | vs best peer |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in core.get("runs", []):
        name = NAMES.get(r.get("impl"), r.get("impl"))
        if _ok(r):
            share = r.get("peak_share")
            lines.append(
                f"| {r['shape']} | {r['precision']} | {name} | {r['samples_per_s']:.2f} | {r['median_s']:.3f} "
                f"| {_fmt(median_cpu(r), '{:.2f}')} | {_fmt(r.get('gflops'), '{:.1f}')} | {_fmt(share * 100 if share else None, '{:.0f}%')} "
                f"| {r['peak_rss_mb'] / 1024:.2f} | {(r['peak_rss_mb'] - r.get('base_rss_mb', 0)) / 1024:.2f} "
                f"| {_fmt(r.get('ratio_to_best_peer'), '{:.2f}x')} |")
        else:
            reason = short_reason(str(r.get("reason", "failed")))
            lines.append(f"| {r.get('shape')} | {r.get('precision')} | {name} | failed: {reason} | | | | | "
                         f"{_fmt(r.get('peak_rss_mb', 0) / 1024, '{:.2f}')} | | |")
    lines += ["", f"{sub} Goals (issue 2)", "", "| goal | measured | met |", "|---|---|---|"]
    for g in core.get("goals", []):
        met = {True: "yes", False: "**no**", None: "n/a"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['measured']} | {met} |")
    lines += ["", f"{sub} How it is measured", "", core.get("method", ""), ""]
    if core.get("notes"):
        lines += [f"{sub} Notes", "", core["notes"], ""]
    return "\n".join(lines)
