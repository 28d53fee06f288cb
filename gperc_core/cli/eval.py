"""``gperc eval RUN_DIR``: evaluate a trained run on its task's evaluation split and print the metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``eval`` command."""
    parser = subparsers.add_parser("eval", help="evaluate a run folder on its task's test split",
                                   description="Evaluate a run folder written by 'gperc train'; the last line "
                                               "is a one-line summary.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--split", default=None, help="dataset split (default: the card's eval split)")
    parser.add_argument("--checkpoint", action="store_true",
                        help="evaluate the latest resumable checkpoint instead of the final model")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(func=run)


def load_run_model(run_dir: str | Path, checkpoint: bool = False, device: Any = "cpu"):
    """Return the model of a run: the final ``model.safetensors``, else (or with ``checkpoint``) the latest
    checkpoint's weights."""
    from gperc_core.errors import CheckpointError
    from gperc_core.model.fusion import load_any_model
    from gperc_core.io.runs import check_run_dir, latest_checkpoint

    run_dir = check_run_dir(run_dir)
    final = run_dir / "model.safetensors"
    source = latest_checkpoint(run_dir) if checkpoint or not final.is_file() else run_dir
    if source is None:
        raise CheckpointError(f"run folder {str(run_dir)!r}: expected a trained model or a checkpoint, found neither")
    return load_any_model(source, map_location=device), source


def run(args: argparse.Namespace) -> int:
    """Evaluate and print; returns 0."""
    from gperc_core.plugins.manager import plugin_manager_from_args
    from gperc_core.io.runs import check_run_dir
    from gperc_core.data.tasks import Task
    from gperc_core.train.trainer import auto_bf16, evaluate_model, resolve_device

    run_dir = check_run_dir(args.run_dir)
    device = resolve_device(args.device)
    task = Task.from_run(run_dir, plugin_manager_from_args(args))
    model, source = load_run_model(run_dir, args.checkpoint, device)
    if model.config != task.config:
        task.config = model.config
    split = args.split or task.card.eval_split
    bf16 = auto_bf16(device, model.config) if task.training.bf16 is None else task.training.bf16
    metrics = evaluate_model(model, task.split(split), task.training.eval_batch_size, device, bf16)
    if args.json:
        print(json.dumps({"task": task.name, "split": split, "source": str(source), **metrics}))
        return 0
    print(f"run: {run_dir}  model: {source}")
    for key, value in metrics.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    baseline = task.card.baseline or {}
    base = f" (baseline {baseline['accuracy']:.4f}: {baseline.get('method', '')})" if "accuracy" in baseline else ""
    print(f"{task.name} {split}: accuracy={metrics['accuracy']:.4f} loss={metrics['loss']:.4f} "
          f"samples={metrics['samples']}{base}")
    return 0
