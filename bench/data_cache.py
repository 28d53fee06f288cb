"""Cold vs warm conversion through the converted-samples cache, and `gperc eval` ready-to-compute time.

For each card, in fresh processes (as a user meets them), with an empty ``GPERC_DATA_CACHE``:

1. cold: ``create_task(card)`` + ``split(train)`` + ``split(eval)`` converting everything (and filling
   the cache);
2. warm: the same in a new process, reading the cache;
3. a 1-step run (``gperc train CARD --max-steps 1``), then ``gperc eval RUN`` in a new process:
   seconds from interpreter start until the model and the eval split are ready to compute, and the
   whole command's wall time.

Usage: ``python bench/data_cache.py image/digits text/wordnet-supersense [--out bench/data_cache.md]``.
Prints one Markdown row per card (and appends them to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONVERT = """
import json, time, sys
t0 = time.time()
from gperc_core.data.tasks import create_task
task = create_task(sys.argv[1])
task.split(task.card.train_split); task.split(task.card.eval_split)
print(json.dumps({"seconds": time.time() - t0}))
"""

READY = """
import json, time, sys
t0 = time.time()
from gperc_core.api.runs import open_run
run = open_run(sys.argv[1], device="cpu")
data = run.task.split(run.task.card.eval_split)
print(json.dumps({"seconds": time.time() - t0, "samples": len(data)}))
"""


def _python(code: str, *args: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.time()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.time() - t0


def bench_card(card: str, work: Path) -> dict:
    """Return the cold / warm / eval figures of ``card`` (cache and run folders under ``work``)."""
    env = {**os.environ, "GPERC_DATA_CACHE": str(work / "cache")}
    cold = _python(CONVERT, card, env=env)["seconds"]
    warm = _python(CONVERT, card, env=env)["seconds"]
    run = work / "run"
    gperc = [sys.executable, "-m", "gperc_core"]
    _timed([*gperc, "train", card, "--max-steps", "1", "--out", str(run), "--quiet", "--device", "cpu"], env)
    ready = _python(READY, str(run), env=env)
    eval_s = _timed([*gperc, "eval", str(run), "--device", "cpu"], env)
    size = sum(f.stat().st_size for f in (work / "cache").rglob("*") if f.is_file())
    return {"card": card, "cold_s": cold, "warm_s": warm, "eval_ready_s": ready["seconds"], "eval_s": eval_s,
            "eval_samples": ready["samples"], "cache_mb": size / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="+")
    parser.add_argument("--out", default=None, help="append the Markdown rows to this file")
    args = parser.parse_args()
    rows = []
    for card in args.cards:
        with tempfile.TemporaryDirectory(prefix="gperc-bench-cache-") as tmp:
            r = bench_card(card, Path(tmp))
        load = os.getloadavg()
        row = (f"| {r['card']} | {r['cold_s']:.1f} | {r['warm_s']:.1f} | {r['eval_ready_s']:.1f} | {r['eval_s']:.1f} | "
               f"{r['eval_samples']} | {r['cache_mb']:.1f} | {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} |")
        print(row, flush=True)
        rows.append(row)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
