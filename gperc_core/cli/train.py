"""``gperc train TASK``: train a task of the registry and write a run folder.

``--set key=value`` overrides anything of the card (``model.latent_dim=64``, ``training.lr=3e-4``,
``options.image.representation=patches``); ``--resume DIR`` continues a run from its latest
checkpoint exactly. Ctrl-C (or SIGTERM) saves a resumable checkpoint before exiting.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``train`` command."""
    parser = subparsers.add_parser("train", help="train a task (e.g. image/digits) and write a run folder",
                                   description="Train a task of the registry; prints where the run folder, the "
                                               "checkpoint and the plot are.")
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the training arguments (a distributed launcher may add more to the same parser)."""
    parser.add_argument("task", nargs="?", metavar="TASK", help="task name (see 'gperc tasks'); optional with --resume")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override a card value: model.<field>, training.<field>, options.<modality>.<name>, "
                             "fusion.dim (repeatable)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (training.epochs)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimisation steps")
    parser.add_argument("--batch-size", type=int, default=None, help="training.batch_size")
    parser.add_argument("--lr", type=float, default=None, help="training.lr")
    parser.add_argument("--out", default=None, help="run folder (default runs/<task>-<time>)")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    parser.add_argument("--bf16", dest="bf16", action="store_true", default=None, help="bf16 autocast on")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="bf16 autocast off")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument("--device", default=None, help="'auto' (default), 'cpu' or 'cuda'")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    from gperc_core.parallel.launch import add_arguments as add_distributed_arguments

    add_distributed_arguments(parser)  # --pipeline-stages, --microbatches, --schedule, --dist-timeout, ...


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the overrides the command line asks for (``--set`` plus the shortcut flags)."""
    from gperc_core.data.tasks import parse_assignments

    overrides = parse_assignments(args.assignments)
    flags = {"training.epochs": args.epochs, "training.max_steps": args.max_steps,
             "training.batch_size": args.batch_size, "training.lr": args.lr, "training.bf16": args.bf16,
             "training.compile": args.compile, "training.device": args.device,
             "training.progress": False if args.quiet else None}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides


def default_out(task: str) -> Path:
    """Return a fresh run folder name for ``task``: ``runs/<modality>-<task>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{task.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare(args: argparse.Namespace):
    """Build the task and the `Trainer` the arguments ask for (resuming restores the checkpoint)."""
    from gperc_core.errors import CheckpointError, TaskError
    from gperc_core.plugins.manager import plugin_manager_from_args
    from gperc_core.data.registry import validate_card
    from gperc_core.io.runs import check_run_dir, is_run_dir, latest_checkpoint, read_task_file
    from gperc_core.data.tasks import merge_overrides, create_task
    from gperc_core.train.trainer import Trainer

    pm = plugin_manager_from_args(args)
    overrides = cli_overrides(args)
    if args.resume:
        run_dir = check_run_dir(args.resume)
        record = read_task_file(run_dir)
        if args.task and args.task != record["task"]:
            raise TaskError(f"TASK: expected {record['task']!r} (the task of {run_dir}) with --resume, got {args.task!r}")
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise TaskError(f"--out: expected nothing or the --resume folder {str(run_dir)!r}, got {args.out!r}")
        card = validate_card(record["card"], source=str(run_dir / "task.json"))
        merged = merge_overrides(record.get("overrides", {}), overrides)
        if "training.max_steps" not in overrides:
            merged.pop("training.max_steps", None)
        task = create_task(record["task"], pm=pm, card=card, **merged)
        trainer = (getattr(args, "trainer_factory", None) or Trainer)(task, run_dir)
        trainer.load_checkpoint()
        return task, trainer
    if not args.task:
        raise TaskError("TASK: expected a task name (see 'gperc tasks') or --resume DIR, got neither")
    out = Path(args.out) if args.out else default_out(args.task)
    if is_run_dir(out) and latest_checkpoint(out) is not None:
        raise CheckpointError(f"--out {str(out)!r}: expected a new or empty run folder, got one that holds a run; "
                              f"continue it with --resume {out} or choose another --out")
    task = create_task(args.task, pm=pm, **overrides)
    return task, (getattr(args, "trainer_factory", None) or Trainer)(task, out)


def run(args: argparse.Namespace) -> int:
    """Train and print where everything is; returns 0, or 130 when interrupted (after checkpointing)."""
    import sys

    from gperc_core.io.runs import PLOT_FILE, latest_checkpoint

    from gperc_core.parallel.launch import wants_distributed

    if wants_distributed(args) and not getattr(args, "trainer_factory", None):
        from gperc_core.parallel.launch import run as run_distributed

        return run_distributed(args)  # sets args.trainer_factory and comes back here on every rank
    t0 = time.perf_counter()
    task, trainer = prepare(args)
    setup_s = time.perf_counter() - t0
    params = sum(p.numel() for p in trainer.model.parameters())
    print(f"task {task.name}: {len(trainer.train_data)} train / {len(trainer.eval_data)} eval samples, "
          f"{params:,} parameters, device {trainer.device}, bf16 {'on' if trainer.bf16 else 'off'}, "
          f"{trainer.total_steps} steps ({trainer.cfg.epochs} epochs); data ready in {setup_s:.1f} s", flush=True)
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {trainer.step}; checkpoint: {latest_checkpoint(trainer.out_dir)}\n"
              f"resume with: gperc train --resume {trainer.out_dir}", file=sys.stderr)
        return 130
    out = trainer.out_dir
    ev = result["eval"]
    print(f"run folder: {out}")
    print(f"checkpoint: {latest_checkpoint(out)}")
    print(f"model:      {out / 'model.safetensors'}")
    print(f"metrics:    {out / 'metrics.jsonl'}")
    print(f"plot:       {out / PLOT_FILE}")
    baseline = task.card.baseline or {}
    base = f" (baseline {baseline['accuracy']:.4f})" if "accuracy" in baseline else ""
    print(f"{task.name} {task.card.eval_split}: accuracy={ev['accuracy']:.4f} loss={ev['loss']:.4f}{base} after "
          f"{result['step']}/{result['total_steps']} steps, {result['train_time_s']:.1f} s training, "
          f"{result['samples_per_s']:.0f} samples/s")
    return 0
