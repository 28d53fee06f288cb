"""The GPU check (issue 11): core benchmark against the peers, one card trained, the distributed path.

`bench/gpu.sh` sets up a Python and calls this driver; it can also run alone:

    python bench/gpu.py --device cuda --out OUT        # on a CUDA machine (about 5-7 minutes)
    python bench/gpu.py --device cpu --quick --out DIR # the same parts on tiny sizes, CPU, gloo (~1 minute)

Each part runs in its own process under its own time limit and writes ``OUT/<part>.json``
(``status`` "ok", "failed" or "skipped", with the reason), so one failing part does not lose the
others; ``OUT/summary.json`` collects the statuses and the headline ratios (gperc vs krasserm).

Parts:
- ``env``: Python, torch, CUDA, the GPU, which optional packages import.
- ``core``: bench/core/worker.py per implementation x shape x precision (bf16 autocast; on CUDA
  `scaled_dot_product_attention` restricted to the flash kernel, then the memory-efficient one),
  gperc against krasserm perceiver-io and lucidrains perceiver-pytorch where they import.
- ``train``: `gperc_core.api.train` of image/digits (scikit-learn's digits: no download) for a
  fixed number of steps on the device, bf16 on CUDA, the converted-sample cache off (so the HF
  ``datasets`` package is not needed).
- ``dist``: DDP and a pipeline on `spawn_workers` with NCCL on CUDA (one GPU per rank; with one
  GPU a world of 1, which still runs NCCL and the strategies' device placement) or gloo on CPU (a
  world of 2): loss and gradients equal to the single-process model's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PARTS = ("env", "core", "train", "dist")
# seconds per part (CUDA); the total stays under the 8 minutes of the issue with the set-up
TIMEOUTS = {"env": 60, "core": 240, "train": 120, "dist": 90}
QUICK_TIMEOUTS = {"env": 60, "core": 120, "train": 120, "dist": 120}


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- parts
def part_env(args: argparse.Namespace) -> dict:
    import importlib.util

    import torch

    record = {"python": sys.executable, "python_version": platform.python_version(), "torch": torch.__version__,
              "cuda_available": torch.cuda.is_available(), "setup": os.environ.get("GPERC_GPU_SETUP", "direct"),
              "packages": {name: importlib.util.find_spec(name) is not None
                           for name in ("gperc_core", "perceiver", "perceiver_pytorch", "einops", "fairscale",
                                        "datasets", "transformers", "sklearn", "torchvision")}}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        record.update(gpu=props.name, gpus=torch.cuda.device_count(), gpu_memory_gb=round(props.total_memory / 2**30, 1),
                      cuda=torch.version.cuda, flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                      bf16_supported=torch.cuda.is_bf16_supported())
        try:
            record["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            record["nvidia_smi"] = f"unavailable: {exc}"
    return {"status": "ok", **record}


def _core_plan(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    if args.quick:
        return [("gperc", "tiny", "fp32"), ("gperc", "tiny", "bf16"), ("krasserm", "tiny", "bf16")]
    plan = [(impl, "cifar", "bf16") for impl in ("gperc", "krasserm", "lucidrains")]
    plan += [(impl, "long", "bf16") for impl in ("gperc", "krasserm", "lucidrains")]
    plan += [(impl, "cifar", "fp32") for impl in ("gperc", "krasserm")]
    plan += [(impl, "huge", "bf16") for impl in ("gperc", "krasserm")]
    return plan


def part_core(args: argparse.Namespace) -> dict:
    import importlib.util

    needs = {"krasserm": ("perceiver", "einops", "fairscale"), "lucidrains": ("perceiver_pytorch", "einops"),
             "hf": ("transformers",)}
    warmup, steps = (0, 1) if args.quick else (3, 10)
    runs = []
    deadline = time.monotonic() + (TIMEOUTS["core"] if not args.quick else QUICK_TIMEOUTS["core"]) - 10
    for impl, shape, precision in _core_plan(args):
        base = {"impl": impl, "shape": shape, "precision": precision}
        missing = [m for m in needs.get(impl, ()) if importlib.util.find_spec(m) is None]
        left = deadline - time.monotonic()
        if missing:
            runs.append({**base, "status": "skipped", "reason": f"not installed: {', '.join(missing)}"})
            continue
        if left < 15:
            runs.append({**base, "status": "skipped", "reason": "out of the part's time"})
            continue
        cmd = [sys.executable, str(BENCH / "core" / "worker.py"), "--impl", impl, "--shape", shape,
               "--precision", precision, "--warmup", str(warmup), "--steps", str(steps), "--device", args.device,
               "--threads", str(args.threads), "--max-seconds", "20"]
        if args.device == "cuda":
            cmd += ["--sdpa", "flash"]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=min(90, left), cwd=str(ROOT))
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            record = json.loads(lines[-1]) if lines else {
                "status": "failed", "reason": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
        except subprocess.TimeoutExpired:
            record = {"status": "failed", "reason": f"timed out after {min(90, left):.0f} s"}
        runs.append({**base, **record, "wall_s": round(time.monotonic() - t0, 1)})
    ratios = {}
    ok = {(r["impl"], r["shape"], r["precision"]): r for r in runs if r.get("status") == "ok"}
    for (impl, shape, precision), r in ok.items():
        peer = ok.get(("krasserm", shape, precision))
        if impl == "gperc" and peer:
            ratios[f"{shape} {precision}"] = {"gperc_samples_per_s": r["samples_per_s"],
                                              "krasserm_samples_per_s": peer["samples_per_s"],
                                              "ratio": round(r["samples_per_s"] / peer["samples_per_s"], 2),
                                              "gperc_peak_mb": r.get("peak_device_mb", r.get("peak_rss_mb")),
                                              "krasserm_peak_mb": peer.get("peak_device_mb", peer.get("peak_rss_mb"))}
    status = "ok" if any(r.get("impl") == "gperc" and r.get("status") == "ok" for r in runs) else "failed"
    return {"status": status, "device": args.device, "warmup": warmup, "steps": steps, "ratios_vs_krasserm": ratios,
            "runs": runs}


def part_train(args: argparse.Namespace) -> dict:
    os.environ.setdefault("GPERC_DATA_CACHE", "off")  # no HF `datasets` needed, nothing written to ~/.cache
    from gperc_core.api.training import train

    overrides = {"training.device": args.device, "training.max_steps": 3 if args.quick else 400,
                 "training.bf16": args.device == "cuda"}
    if args.quick:
        overrides.update({"training.max_train_samples": 64, "training.max_eval_samples": 32, "training.epochs": 1})
    with tempfile.TemporaryDirectory(prefix="gperc-gpu-train-") as tmp:
        summary = train("image/digits", Path(tmp) / "run", overrides=overrides)
    keep = ("step", "total_steps", "eval", "train_time_s", "samples_per_s", "eval_split", "baseline")
    return {"status": "ok", "task": "image/digits", "overrides": overrides,
            **{k: summary.get(k) for k in keep}}


def _dist_check(ctx) -> dict:
    """One rank: DDP and a pipeline of the tiny Perceiver, each against the single-process model."""
    import copy

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from gperc_core import PerceiverConfig
    from gperc_core.model.perceiver import Perceiver

    device = ctx.device
    out: dict = {"rank": ctx.rank, "world_size": ctx.world_size, "backend": ctx.backend, "device": str(device)}
    config = PerceiverConfig(input_len=12, input_dim=3, latent_len=4, latent_dim=8, output_len=1, output_dim=8,
                             ffw_latent=16, ffw_output=16, num_heads=2, num_layers=2, n_classes=5, dropout=0.0, seed=7)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 12, 3, generator=gen).to(device)
    target = torch.randint(0, 5, (8,), generator=gen).to(device)
    # every rank sees the same batch, so the averaged gradient equals the single-process gradient
    total = torch.ones(1, device=device)
    dist.all_reduce(total)
    out["all_reduce"] = float(total.item())
    reference = Perceiver(config).to(device)
    F.cross_entropy(reference(x), target).backward()
    ref_grads = {k: p.grad.detach().clone() for k, p in reference.named_parameters() if p.grad is not None}
    for p in reference.parameters():
        p.grad = None
    model = copy.deepcopy(reference)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    F.cross_entropy(ddp(x), target).backward()
    out["ddp_grad_diff"] = max((p.grad - ref_grads[k]).abs().max().item()
                               for k, p in model.named_parameters() if p.grad is not None)
    try:
        from gperc_core.parallel.pipeline import build_pipeline

        handle = build_pipeline(config, microbatches=2 * ctx.world_size)
        loss = handle.step(x, target)
        ref_loss = F.cross_entropy(Perceiver(config).to(device)(x), target)
        out["pipeline_loss_diff"] = abs(float(loss) - float(ref_loss))
        grads = {k: p.grad for k, p in handle.named_parameters() if p.grad is not None}
        out["pipeline_grad_diff"] = max((g.to(device) - ref_grads[k]).abs().max().item() for k, g in grads.items())
    except Exception as exc:  # noqa: BLE001 - recorded, the DDP result stands
        out["pipeline_error"] = f"{type(exc).__name__}: {exc}"
    return out


def part_dist(args: argparse.Namespace) -> dict:
    import torch

    from gperc_core.parallel.distributed import spawn_workers

    if args.device == "cuda":
        world = min(2, torch.cuda.device_count())
        note = ("NCCL needs one GPU per rank: with one GPU this is a world of 1 (NCCL collectives, DDP and a "
                "1-stage pipeline on the GPU)") if world < 2 else ""
    else:
        world, note = 2, ""
    # the ranks import the check by module name: bench/ on their path
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(BENCH))
    from gpu import _dist_check as check

    per_rank = spawn_workers(check, world, timeout_s=60, device=args.device)
    tol = 1e-4
    ok = all(r["ddp_grad_diff"] < tol and r.get("pipeline_loss_diff", 1.0) < tol
             and r.get("pipeline_grad_diff", 1.0) < tol for r in per_rank)
    return {"status": "ok" if ok else "failed", "tolerance": tol, "note": note, "ranks": per_rank,
            **({} if ok else {"reason": "a difference above the tolerance, or a pipeline error (see ranks)"})}


def write_dev_metadata(site: Path) -> list[str]:
    """Make gperc-core and the plugins of this checkout importable with their entry points, without
    pip or a build backend (the GPU machine has no network and no hatchling): for each
    pyproject.toml write ``<name>-<version>.dist-info`` (METADATA, entry_points.txt) under ``site``;
    the sources come from PYTHONPATH (gpu.sh sets it). Returns the distributions written."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    written = []
    for pyproject in [ROOT / "pyproject.toml", *sorted((ROOT / "gperc_plugins").glob("*/pyproject.toml"))]:
        project = tomllib.loads(pyproject.read_text())["project"]
        name, version = project["name"], project["version"]
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        meta = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        meta += [f"Requires-Dist: {req}" for req in project.get("dependencies", [])]
        (info / "METADATA").write_text("\n".join(meta) + "\n")
        groups = dict(project.get("entry-points", {}))
        if project.get("scripts"):
            groups["console_scripts"] = project["scripts"]
        lines = []
        for group, entries in groups.items():
            lines.append(f"[{group}]")
            lines += [f"{key} = {value}" for key, value in entries.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        (info / "INSTALLER").write_text("bench/gpu.py\n")
        written.append(f"{name} {version}")
    return written


PART_FUNCS = {"env": part_env, "core": part_core, "train": part_train, "dist": part_dist}


# ---------------------------------------------------------------------------------------------- driver
def run_part(args: argparse.Namespace, part: str) -> dict:
    """Run one part in a child process under its time limit; returns (and writes) its record."""
    timeout = (QUICK_TIMEOUTS if args.quick else TIMEOUTS)[part]
    path = args.out / f"{part}.json"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--device", args.device,
           "--out", str(args.out), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
        tail = (proc.stdout + proc.stderr)[-2000:]
        if path.exists():
            record = json.loads(path.read_text())
        else:
            record = {"part": part, "status": "failed", "reason": f"exit {proc.returncode} without a result",
                      "output_tail": tail}
    except subprocess.TimeoutExpired as exc:
        tail = ((exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace"))[-2000:]
        record = {"part": part, "status": "failed", "reason": f"timed out after {timeout} s", "output_tail": tail}
    record["part_wall_s"] = round(time.monotonic() - t0, 1)
    write_json(path, record)
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--quick", action="store_true", help="tiny sizes (the CPU test of the script's parts)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or BENCH / "gpu-out"))
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--dev-metadata", type=Path, metavar="SITE",
                   help="only write gperc's dist-info (entry points) into SITE and exit (used by gpu.sh)")
    p.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # internal: run one part in this process
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: 2 on CPU, 8 with CUDA)")
    args = p.parse_args(argv)
    if not args.threads:
        args.threads = 8 if args.device == "cuda" else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dev_metadata:
        print("\n".join(write_dev_metadata(args.dev_metadata)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part:
        import torch

        torch.set_num_threads(args.threads)
        try:
            record = PART_FUNCS[args.part](args)
        except BaseException as exc:  # noqa: BLE001 - a failure is this part's result
            record = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc)[:1000]}",
                      "traceback": traceback.format_exc()[-3000:]}
        write_json(args.out / f"{args.part}.json", {"part": args.part, **record})
        return 0
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "device": args.device,
               "quick": args.quick, "parts": {}}
    for part in args.parts:
        record = run_part(args, part)
        summary["parts"][part] = {"status": record.get("status"), "wall_s": record.get("part_wall_s"),
                                  **({"reason": record["reason"]} if record.get("reason") else {})}
        if part == "core":
            summary["ratios_vs_krasserm"] = record.get("ratios_vs_krasserm")
        if part == "env":
            summary["gpu"] = record.get("gpu")
        print(f"gpu.py: {part}: {record.get('status')} ({record.get('part_wall_s')} s)"
              + (f": {record.get('reason')}" if record.get("reason") else ""), flush=True)
        write_json(args.out / "summary.json", summary)
    summary["ended"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    write_json(args.out / "summary.json", summary)
    return 0 if all(p["status"] in ("ok", "skipped") for p in summary["parts"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
