"""Convert `transformers` Perceivers into gperc model folders, and start training from one.

``convert("path/to/hf-folder", "models/lm")`` writes a gperc model folder (``config.json`` +
``model.safetensors``) that `Perceiver.from_pretrained` loads; ``gperc train TASK --init models/lm``
(``training.init``) starts a run from its weights. The task's model config must equal the folder's
(apart from ``seed`` and the dropouts, which change no weight): `initialise` names every differing
field instead of loading a model of another shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gperc_core.errors import CheckpointError, TaskError

__all__ = ["convert", "check_init_config", "initialise", "INIT_IGNORED_FIELDS"]

INIT_IGNORED_FIELDS = frozenset({"seed", "dropout", "modality_dropout", "modality_ensemble"})
"""Config fields that may differ between a task and its ``training.init`` folder (no weight depends on them)."""


def convert(source: Any, out_dir: str | Path, *, image_size: int | tuple[int, int] | None = None,
            overwrite: bool = False) -> dict[str, Any]:
    """Convert ``source`` (a `transformers` Perceiver or its ``save_pretrained`` folder) into the gperc model
    folder ``out_dir``; returns ``{"out": Path, "config": PerceiverConfig, "parameters": int}``.

    An ``out_dir`` that already holds a model is a `CheckpointError` unless ``overwrite``.
    """
    from gperc_core.interop.transformers import from_transformers
    from gperc_core.io.checkpoint import CONFIG_FILE

    out = Path(out_dir)
    if (out / CONFIG_FILE).exists() and not overwrite:
        raise CheckpointError(f"out_dir {str(out)!r}: expected a new folder, got one that holds a model "
                              "(choose another or pass overwrite=True / --force)")
    model = from_transformers(source, image_size=image_size)
    model.save(out)
    return {"out": out, "config": model.config, "parameters": model.num_parameters()}


def check_init_config(task_config: Any, init_config: Any, init_dir: str | Path) -> None:
    """Raise `TaskError` naming every field (but `INIT_IGNORED_FIELDS`) where the two configs differ."""
    mine, theirs = task_config.to_dict(), init_config.to_dict()
    differ = [k for k in sorted(set(mine) | set(theirs))
              if k not in INIT_IGNORED_FIELDS and mine.get(k) != theirs.get(k)]
    if differ:
        detail = ", ".join(f"{k} (task {mine.get(k)!r}, init {theirs.get(k)!r})" for k in differ)
        raise TaskError(f"training.init: expected the task's model config to equal {str(init_dir)!r}'s, got "
                        f"differences in {detail}; set them with --set model.<field>=<value> or in the card's "
                        "[model] table")


def initialise(task: Any, init_dir: str | Path) -> Any:
    """Make ``task.build_model`` return its model with the weights of the gperc model folder ``init_dir``
    (after `check_init_config`); returns ``task``."""
    from gperc_core.io.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_state_checked, load_tensors, read_config

    folder = Path(init_dir)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"training.init {str(folder)!r}: expected a gperc model folder with {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE} (e.g. written by 'gperc convert'), found none")
    task_config = task.config if task.config is not None else task.infer_config()
    check_init_config(task_config, read_config(folder), folder)
    build = task.build_model

    def build_initialised() -> Any:
        model = build()
        load_state_checked(model, load_tensors(folder / WEIGHTS_FILE), str(folder / WEIGHTS_FILE))
        return model

    task.build_model = build_initialised
    return task
