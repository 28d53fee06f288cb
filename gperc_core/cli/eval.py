"""``gperc eval RUN_DIR``: evaluate a trained run on its task's evaluation split and print the metrics."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``eval`` command."""
    parser = subparsers.add_parser("eval", help="evaluate a run folder's model (its best weights) on its task's test split",
                                   description="Evaluate a run folder written by 'gperc train'; the last line "
                                               "is a one-line summary.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--split", default=None, help="the task's split: its test split (default: the card's "
                        "eval_split), its validation split ('validation' when held out of train) or its training split")
    parser.add_argument("--checkpoint", action="store_true",
                        help="evaluate the latest resumable checkpoint instead of the final model")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate with `gperc_core.api.evaluation.evaluate` and print; returns 0."""
    from gperc_core.api.evaluation import evaluate
    from gperc_core.io.runs import check_run_dir
    from gperc_core.plugins.manager import plugin_manager_from_args

    result = evaluate(args.run_dir, split=args.split, checkpoint=args.checkpoint, device=args.device,
                      pm=plugin_manager_from_args(args))
    baseline = result.pop("baseline") or {}
    task, split, source = result["task"], result["split"], result["source"]
    if args.json:
        print(json.dumps(result))
        return 0
    metrics = {k: v for k, v in result.items() if k not in ("task", "split", "source", "role")}
    print(f"run: {check_run_dir(args.run_dir)}  model: {source}")
    for key, value in metrics.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    base = f" (baseline {baseline['accuracy']:.4f}: {baseline.get('method', '')})" if "accuracy" in baseline else ""
    role = result.get("role")
    print(f"{task} {role + ' split ' if role else 'split '}{split!r}: accuracy={metrics['accuracy']:.4f} loss={metrics['loss']:.4f} "
          f"samples={metrics['samples']}{base}")
    return 0
