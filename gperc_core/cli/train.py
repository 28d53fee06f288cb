"""``gperc train TASK``: train a task of the registry and write a run folder (a thin shell over
`gperc_core.api.train` and `gperc_core.api.resume`; under ``torchrun`` every rank runs it).

``--set key=value`` overrides anything of the card (``model.latent_dim=64``, ``training.lr=3e-4``,
``options.image.representation=patches``); ``--resume DIR`` continues a run from its latest
checkpoint exactly. Ctrl-C (or SIGTERM) saves a resumable checkpoint before exiting.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--init", default=None, metavar="DIR",
                        help="start from the weights of a gperc model folder, e.g. from 'gperc convert' (training.init)")
    from gperc_core.config.training import INIT_HEADS

    parser.add_argument("--init-head", default=None, choices=INIT_HEADS,
                        help="with --init: load the head's weights too ('keep', default) or start the decoder and "
                             "its output queries afresh ('new': fine-tune on another objective; training.init_head)")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    parser.add_argument("--bf16", dest="bf16", action="store_true", default=None, help="bf16 autocast on")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="bf16 autocast off")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument("--device", default=None, help="'auto' (default), 'cpu' or 'cuda'")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--tensorboard", action="store_true", default=None,
                        help="also log to RUN/tensorboard/ (training.tensorboard)")
    from gperc_core.parallel.options import ParallelOptions

    ParallelOptions.add_arguments(parser)  # --pipeline-stages, --microbatches, --schedule, --dist-timeout, ...


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the overrides the command line asks for (``--set`` plus the shortcut flags)."""
    from gperc_core.data.tasks import parse_assignments

    overrides = parse_assignments(args.assignments)
    flags = {"training.epochs": args.epochs, "training.max_steps": args.max_steps,
             "training.batch_size": args.batch_size, "training.lr": args.lr, "training.bf16": args.bf16,
             "training.compile": args.compile, "training.device": args.device,
             "training.init": getattr(args, "init", None), "training.init_head": getattr(args, "init_head", None),
             "training.progress": False if args.quiet else None, "training.tensorboard": args.tensorboard}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides


def run(args: argparse.Namespace) -> int:
    """Train (or resume) with `gperc_core.api.train` / `gperc_core.api.resume` on this rank and print
    where everything is; returns 0, or 130 when interrupted (after checkpointing)."""
    import sys

    from gperc_core.api.training import TrainingInterrupted, resume, train
    from gperc_core.errors import TaskError
    from gperc_core.io.runs import check_run_dir, read_task_file
    from gperc_core.parallel.options import ParallelOptions
    from gperc_core.plugins.manager import plugin_manager_from_args

    pm = plugin_manager_from_args(args)
    overrides = cli_overrides(args)
    parallel = ParallelOptions.from_args(args)
    log = lambda message: print(message, flush=True)  # noqa: E731
    try:
        if args.resume:
            run_dir = check_run_dir(args.resume)
            recorded = read_task_file(run_dir)["task"]
            if args.task and args.task != recorded:
                raise TaskError(f"TASK: expected {recorded!r} (the task of {run_dir}) with --resume, got {args.task!r}")
            if args.out and Path(args.out).resolve() != run_dir.resolve():
                raise TaskError(f"--out: expected nothing or the --resume folder {str(run_dir)!r}, got {args.out!r}")
            result = resume(run_dir, overrides=overrides, parallel=parallel, pm=pm, log=log)
        elif not args.task:
            raise TaskError("TASK: expected a task name (see 'gperc tasks') or --resume DIR, got neither")
        else:
            result = train(args.task, args.out, overrides=overrides, parallel=parallel, pm=pm, log=log)
    except TrainingInterrupted as stop:
        if stop.is_main:
            print(f"\ninterrupted at step {stop.step}; checkpoint: {stop.checkpoint}\n"
                  f"resume with: gperc train --resume {stop.run_dir}", file=sys.stderr)
        return 130
    if not result["is_main"]:
        return 0
    ev = result["eval"]
    print(f"run folder: {result['run_dir']}")
    print(f"checkpoint: {result['checkpoint']}")
    print(f"model:      {result['model']}")
    print(f"metrics:    {result['metrics']}")
    print(f"plot:       {result['plot']}")
    baseline, goal, best = result["baseline"], result.get("goal") or {}, result.get("validation") or {}
    base = f" (baseline {baseline['accuracy']:.4f})" if "accuracy" in baseline else ""
    if "accuracy" in best:
        on = ev.get("selected_on", "accuracy")
        print(f"{result['task']} validation split {result['validation_split']!r}: best by {on}: "
              f"accuracy={best['accuracy']:.4f} loss={best['loss']:.4f} at step {best['step']} (epoch {best['epoch']:g}): the weights reported"
              f"{', early stopping' if result.get('early_stopped') else ''}")
    met = ""
    if "accuracy" in goal:
        met = f", goal {goal['accuracy']:.4f} {'met' if ev['accuracy'] >= goal['accuracy'] else 'not met'}"
    print(f"{result['task']} test split {result['eval_split']!r}: accuracy={ev['accuracy']:.4f} loss={ev['loss']:.4f}"
          f"{base}{met}; after {result['step']}/{result['total_steps']} steps, {result['train_time_s']:.1f} s "
          f"training, {result['samples_per_s']:.0f} samples/s")
    return 0
