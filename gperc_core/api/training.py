"""Train and resume from Python (the ``gperc train`` command is a thin shell over these).

``train("image/digits", overrides={"training.epochs": 2})`` trains a task of the registry into a
fresh run folder and returns a summary dict; ``resume(run_dir)`` continues a run exactly from its
latest checkpoint. Under ``torchrun`` every rank calls the same function with the same arguments:
`gperc_core.parallel.make_strategy` sets up DDP or the pipeline from ``parallel``
(`gperc_core.parallel.options.ParallelOptions`), rank 0 picks the run folder and shares it, and only
rank 0 writes files. Ctrl-C (or SIGTERM) saves a resumable checkpoint, then raises
`TrainingInterrupted` (a `KeyboardInterrupt`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from gperc_core.errors import CheckpointError, TaskError

__all__ = ["train", "resume", "default_out", "TrainingInterrupted"]

Log = Callable[[str], None]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM after saving a checkpoint: ``run_dir``, ``step``,
    ``checkpoint``, and ``is_main`` (whether this is the process that prints)."""

    def __init__(self, run_dir: Path, step: int, checkpoint: Path | None, is_main: bool = True) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint: {checkpoint}")
        self.run_dir, self.step, self.checkpoint, self.is_main = run_dir, step, checkpoint, is_main


def default_out(task: str) -> Path:
    """Return a fresh run folder name for ``task``: ``runs/<modality>-<task>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{task.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def _run(make_task: Callable[[], Any], out: Callable[[Any], Path], parallel: Any, device: Any,
         resuming: bool, log: Log | None, verify: Callable[[Path], None] = lambda run_dir: None) -> dict[str, Any]:
    """Set up the strategy, take the run folder's writer lock (on the writing process), ``verify`` the
    folder under it, build the task and the trainer, train, and return the summary."""
    from gperc_core.io.lock import run_lock
    from gperc_core.io.runs import PLOT_FILE, latest_checkpoint
    from gperc_core.parallel import make_strategy, wants_distributed
    from gperc_core.train.trainer import Trainer

    t0 = time.perf_counter()
    made: Path | None = None  # the run folder, when this call created it (removed again if the run fails empty)
    failed = False
    # a process group first (so that a failure while loading the data ends every rank); one process
    # waits for the task, whose training.device says where it runs
    strategy = make_strategy(parallel, device=device) if wants_distributed(parallel) else None
    stack = contextlib.ExitStack()
    try:
        with strategy.guard() if strategy is not None else contextlib.nullcontext():
            run_dir = Path(out(strategy))
            made = None if run_dir.exists() else run_dir
            lock = run_lock(run_dir, enabled=strategy is None or strategy.is_main)
            stack.enter_context(lock)  # released after the strategy closes, even on failure
            verify(run_dir)
            task = make_task()
            initialising = bool(task.training.init) and not resuming
            if initialising:
                from gperc_core.api.convert import initialise

                initialise(task, task.training.init, task.training.init_head)
            if strategy is None:
                strategy = make_strategy(parallel, device=task.training.device)
            trainer = Trainer(task, run_dir, strategy=strategy)
            if resuming:
                trainer.load_checkpoint()
            say = log if (log is not None and strategy.is_main) else (lambda message: None)
            if strategy.world_size > 1:
                say(strategy.describe())
            if initialising:
                say(f"initialised from {task.training.init}: " + (
                    "every weight" if task.training.init_head == "keep"
                    else "the body; the head (decoder and output queries) starts afresh (init_head 'new')"))
            params = sum(p.numel() for _, p in strategy.named_parameters())
            names = trainer.split_names
            say(f"task {task.name}: {len(trainer.loader)} train ({names['train']!r}) / {len(trainer.eval_data)} "
                f"validation ({names['validation']!r}{', held out of train' if task.card.holds_out_validation else ''}) "
                f"samples; test split {names['test']!r} evaluated once at the end with the best weights; "
                f"{params:,} parameters{' on this rank' if strategy.world_size > 1 else ''}, device {trainer.device}, "
                f"bf16 {'on' if trainer.bf16 else 'off'}, {trainer.total_steps} steps ({trainer.cfg.epochs} epochs); "
                f"data ready in {time.perf_counter() - t0:.1f} s")
            try:
                result = trainer.fit()
            except KeyboardInterrupt as exc:
                raise TrainingInterrupted(run_dir, trainer.step, latest_checkpoint(run_dir), strategy.is_main) from exc
    except BaseException:
        failed = True
        raise
    finally:
        try:
            if strategy is not None:
                strategy.close()
        finally:
            stack.close()  # releases the lock (its file goes)
            if failed and made is not None:  # a run that failed before writing anything (a misspelt task,
                with contextlib.suppress(OSError):  # a bad value) leaves no folder behind
                    made.rmdir()  # only an empty one
    return {**result, "task": task.name, "run_dir": run_dir, "checkpoint": latest_checkpoint(run_dir),
            "model": run_dir / "model.safetensors", "metrics": run_dir / "metrics.jsonl", "plot": run_dir / PLOT_FILE,
            "eval_split": task.card.eval_split, "validation_split": task.card.validation_split,
            "baseline": dict(task.card.baseline or {}), "goal": dict(task.card.goal or {}),
            "is_main": strategy.is_main}


def train(task: Any, out_dir: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None,
          parallel: Any = None, pm: Any = None, log: Log | None = None) -> dict[str, Any]:
    """Train ``task`` (a task name, or a `gperc_core.data.tasks.Task`) into the run folder ``out_dir``
    (default ``runs/<task>-<time>``, chosen by rank 0) and return the summary: ``step``, ``total_steps``,
    ``eval`` (the reported figure: the best weights, chosen on the validation split, evaluated once on
    the test split; also under ``test``), ``validation`` (the best validation record), ``last_validation``,
    ``best_step``, ``early_stopped``, ``splits`` (role -> split name), ``train_time_s``,
    ``samples_per_s``, ``run_dir``, ``checkpoint``, ``model`` (the best weights), ``metrics``, ``plot``,
    ``eval_split`` (the test split), ``validation_split``, ``baseline``, ``goal``, ``is_main``.

    ``overrides`` are ``--set`` style assignments (``{"training.lr": 3e-4, "model.latent_dim": 64}``),
    ``parallel`` a `ParallelOptions` (used under torchrun), ``pm`` the plugin manager, ``log`` receives
    the progress lines of the main process (e.g. ``print``). An ``out_dir`` that holds a run is a
    `CheckpointError`.
    """
    from gperc_core.data.tasks import create_task
    from gperc_core.io.runs import is_run_dir, latest_checkpoint

    overrides = dict(overrides or {})
    if isinstance(task, str):
        name = task
        make_task = lambda: create_task(name, pm=pm, **overrides)  # noqa: E731
    elif task is None:
        raise TaskError("task: expected a task name (see 'gperc tasks') or a Task, got None")
    else:
        if overrides:
            raise TaskError(f"overrides: expected none with a Task object (create it with them), got {sorted(overrides)}")
        name, make_task = task.name, (lambda: task)

    def out(strategy: Any) -> Path:
        """The run folder: ``out_dir``, else a fresh name chosen by rank 0 and shared with every rank."""
        chosen = default_out(name) if out_dir is None else Path(out_dir)
        if out_dir is None and strategy is not None:
            chosen = Path(strategy.broadcast_object(str(chosen)))
        return chosen

    def verify(chosen: Path) -> None:
        """Under the writer lock (so that two runs cannot both pass): the folder holds no run yet."""
        if is_run_dir(chosen) and latest_checkpoint(chosen) is not None:
            raise CheckpointError(f"out_dir {str(chosen)!r}: expected a new or empty run folder, got one that holds "
                                  f"a run; continue it with --resume {chosen} (gperc_core.api.resume) or choose "
                                  f"another --out")

    device = overrides.get("training.device", "auto")
    return _run(make_task, out, parallel, device, resuming=False, log=log, verify=verify)


def resume(run_dir: str | Path, *, overrides: Mapping[str, Any] | None = None, parallel: Any = None,
           pm: Any = None, log: Log | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` exactly from its latest checkpoint (written by any mode) and return
    the summary of `train`. ``overrides`` add to the run's own (``training.max_steps`` only applies when
    given again)."""
    from gperc_core.data.registry import validate_card
    from gperc_core.data.tasks import create_task, merge_overrides
    from gperc_core.io.runs import check_run_dir, read_task_file

    folder = check_run_dir(run_dir)
    record = read_task_file(folder)
    overrides = dict(overrides or {})
    merged = merge_overrides(record.get("overrides", {}), overrides)
    if "training.max_steps" not in overrides:
        merged.pop("training.max_steps", None)

    def make_task() -> Any:
        """The run's task, its model config checked against the latest checkpoint before any build."""
        from gperc_core.io.runs import check_resumable
        from gperc_core.model.build import model_for_config

        card = validate_card(record["card"], source=str(folder / "task.json"))
        task = create_task(record["task"], pm=pm, card=card, **merged)
        check_resumable(folder, task.config if task.config is not None else task.infer_config(), model_for_config)
        return task

    device = merged.get("training.device", "auto")
    return _run(make_task, lambda strategy: folder, parallel, device, resuming=True, log=log)
