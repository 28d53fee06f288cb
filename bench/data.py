"""Data-loading share of the trainer's step time, and the trainer's samples/s, per card.

For each card, builds the task and a `Trainer` (the card's defaults, a subset of the training
split), then runs a few tens of training steps through ``Trainer.train_batches`` (the trainer's
own batch iteration: DataLoader workers, collators, per-epoch transforms) and times separately the
wait for the next batch (data) and ``train_step`` (compute). Reports per card: the data share of
the step time (the goal is < 5 %), samples/s over data + compute, and the worker count.

    PYTHONPATH=... .venv/bin/python bench/data.py                       # the three cards of issue 9
    PYTHONPATH=... .venv/bin/python bench/data.py --steps 20 image/fashion-mnist
    PYTHONPATH=... .venv/bin/python bench/data.py --label before --json bench/data-before.json

Keep runs short: the machine is shared. Results and the commands go in bench/data.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CARDS = ["image/fashion-mnist", "audio/spoken-digits", "text/wordnet-supersense"]


def measure(card: str, steps: int, warmup: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Time ``steps`` training steps of ``card`` (after ``warmup`` untimed ones); returns the record."""
    import torch

    from gperc_core.data.tasks import create_task
    from gperc_core.train.trainer import Trainer

    t0 = time.perf_counter()
    settings = {"training.progress": False, "training.max_train_samples": 2048, "training.max_eval_samples": 64,
                **overrides}
    task = create_task(card, **settings)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(task, out)
        setup_s = time.perf_counter() - t0
        data_s = compute_s = 0.0
        samples = 0
        batches = trainer.train_batches(0)
        for i in range(warmup + steps):
            t1 = time.perf_counter()
            step, batch = next(batches)
            t2 = time.perf_counter()
            trainer.train_step(batch)
            t3 = time.perf_counter()
            if i >= warmup:
                data_s += t2 - t1
                compute_s += t3 - t2
                samples += int(batch["target"].shape[0])
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    total = data_s + compute_s
    return {"card": card, "steps": steps, "batch_size": trainer.cfg.batch_size,
            "num_workers": getattr(getattr(trainer, "loader", None), "num_workers", None), "threads": torch.get_num_threads(),
            "setup_s": round(setup_s, 1), "data_s": round(data_s, 3), "compute_s": round(compute_s, 3),
            "data_share": round(data_s / max(total, 1e-9), 4), "samples_per_s": round(samples / max(total, 1e-9), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="*", default=CARDS)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--label", default="after")
    parser.add_argument("--json", type=Path, default=None, help="append the records to this JSON list")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from gperc_core.data.tasks import parse_assignments

    overrides = parse_assignments(args.set)
    load = os.getloadavg()
    records = []
    for card in args.cards:
        record = {"label": args.label, "load": [round(x, 2) for x in load], **measure(card, args.steps, args.warmup,
                                                                                       overrides)}
        print(json.dumps(record), flush=True)
        records.append(record)
    if args.json is not None:
        old = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(old + records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
