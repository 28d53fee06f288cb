"""`evaluate`: the metrics of a trained run folder on a split of its task (``gperc eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate(run_dir: str | Path, *, split: str | None = None, checkpoint: bool = False, device: str = "auto",
             pm: Any = None) -> dict[str, Any]:
    """Evaluate the run folder ``run_dir`` (written by `gperc_core.api.train` / ``gperc train``).

    Args:
        run_dir: the run folder.
        split: the task's split; default its test split (the card's ``eval_split``). The task's
            validation split (``"validation"`` when held out of the training split) and its training
            split (without the held-out part) can be asked for too.
        checkpoint: evaluate the latest resumable checkpoint instead of the final model (the
            checkpoint is used anyway when the run has no final model yet).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or any torch device name.
        pm: the plugin manager to rebuild the task with; default the installed plugins.

    Returns:
        ``{"task": name, "split": split, "role": "test" / "validation" / "train" / None (another
        split), "source": folder the weights came from (str; the run's model is its best weights),
        "baseline": the card's baseline table or None, **metrics}`` where the metrics are those of
        `gperc_core.train.trainer.evaluate_model` (``loss``, ``accuracy``, ``samples``, ...).
        bf16 autocast follows the run's ``training.bf16`` (auto when unset).

    Raises:
        CheckpointError: ``run_dir`` is not a run folder, or it holds no model or checkpoint, or a
            damaged one.
        TaskError: ``split`` is not a split of the task's dataset.
        TaskError: the plugins of the task's modalities are not installed.
    """
    from gperc_core.api.runs import open_run
    from gperc_core.train.trainer import auto_bf16, evaluate_model

    run = open_run(run_dir, checkpoint=checkpoint, device=device, pm=pm)
    task = run.task
    split = split or task.card.eval_split
    bf16 = auto_bf16(run.device, run.model.config) if task.training.bf16 is None else task.training.bf16
    metrics = evaluate_model(run.model, task.split(split), task.training.eval_batch_size, run.device, bf16)
    role = next((r for r, name in task.split_names.items() if name == split), None)
    return {"task": task.name, "split": split, "role": role, "source": str(run.source),
            "baseline": task.card.baseline or None, **metrics}
