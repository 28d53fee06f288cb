"""Convert `transformers` Perceivers into gperc model folders, and start training from one.

``convert("path/to/hf-folder", "models/lm")`` writes a gperc model folder (``config.json`` +
``model.safetensors``) that `Perceiver.from_pretrained` loads; ``gperc train TASK --init models/lm``
(``training.init``) starts a run from its weights. The task's model config must equal the folder's
(apart from ``seed`` and the dropouts, which change no weight): `initialise` names every differing
field instead of loading a model of another shape.

``training.init_head = "new"`` (``--init-head new``) transfers the body only: the decoder and its output
queries (the head) start from the task's own initialisation, so a model pretrained on one objective (say
masked language modelling) is fine-tuned on another (say classification). The head's fields
(`HEAD_FIELDS`) may then differ; every other field must still be equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gperc_core.config.training import INIT_HEADS
from gperc_core.errors import CheckpointError, TaskError

__all__ = ["convert", "check_init_config", "initialise", "head_keys", "INIT_IGNORED_FIELDS", "HEAD_FIELDS",
           "INIT_HEADS"]

INIT_IGNORED_FIELDS = frozenset({"seed", "dropout", "modality_dropout", "modality_ensemble"})
"""Config fields that may differ between a task and its ``training.init`` folder (no weight depends on them)."""

HEAD_FIELDS = frozenset({"output_len", "output_dim", "ffw_output", "n_classes", "decoder_reduction",
                         "decoder_residual", "decoder_projection", "output_pos_enc", "decoder_heads",
                         "decoder_qk_channels", "decoder_v_channels", "tie_output_embedding", "encoder_only"})
"""Config fields that shape only the head (the decoder and its output queries): with ``init_head = "new"``
they may differ between the task and its ``training.init`` folder."""


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


def check_init_config(task_config: Any, init_config: Any, init_dir: str | Path, head: str = "keep") -> None:
    """Raise `TaskError` naming every field where the two configs differ, but `INIT_IGNORED_FIELDS` (and
    `HEAD_FIELDS` when ``head`` is "new")."""
    if head not in INIT_HEADS:
        raise TaskError(f"training.init_head: expected one of {INIT_HEADS}, got {head!r}")
    ignored = INIT_IGNORED_FIELDS | (HEAD_FIELDS if head == "new" else frozenset())
    mine, theirs = task_config.to_dict(), init_config.to_dict()
    differ = [k for k in sorted(set(mine) | set(theirs)) if k not in ignored and mine.get(k) != theirs.get(k)]
    if differ:
        detail = ", ".join(f"{k} (task {mine.get(k)!r}, init {theirs.get(k)!r})" for k in differ)
        hint = ("; or, to fine-tune with a new head, set training.init_head = \"new\" (--init-head new)"
                if head == "keep" and set(differ) <= HEAD_FIELDS else "")
        raise TaskError(f"training.init: expected the task's model config to equal {str(init_dir)!r}'s, got "
                        f"differences in {detail}; set them with --set model.<field>=<value> or in the card's "
                        f"[model] table{hint}")


def head_keys(model: Any, names: Any) -> set[str]:
    """Return the names among ``names`` (state-dict keys) that belong to the head of ``model``'s Perceivers:
    each one's ``decoder.*`` and ``embeddings.output_query``, wherever the Perceiver sits in ``model``."""
    from gperc_core.model.perceiver import Perceiver

    prefixes = [f"{name}." if name else "" for name, module in model.named_modules() if isinstance(module, Perceiver)]
    return {key for key in names for p in prefixes
            if key.startswith(f"{p}decoder.") or key == f"{p}embeddings.output_query"}


def initialise(task: Any, init_dir: str | Path, head: str = "keep") -> Any:
    """Make ``task.build_model`` return its model with the weights of the gperc model folder ``init_dir``
    (after `check_init_config`): all of them, or with ``head="new"`` all but the head's (`head_keys`), which
    keep the task's own initialisation. Returns ``task``."""
    from gperc_core.io.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_state_checked, load_tensors, read_config

    folder = Path(init_dir)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"training.init {str(folder)!r}: expected a gperc model folder with {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE} (e.g. written by 'gperc convert'), found none")
    task_config = task.config if task.config is not None else task.infer_config()
    check_init_config(task_config, read_config(folder), folder, head)
    build = task.build_model

    def build_initialised() -> Any:
        model = build()
        state = load_tensors(folder / WEIGHTS_FILE)
        if head == "new":  # the folder's head goes; the model's own (fresh) head is loaded back onto itself
            own = model.state_dict()
            heads = head_keys(model, own.keys() | state.keys())
            state = {k: v for k, v in state.items() if k not in heads} | {k: own[k] for k in heads & own.keys()}
        load_state_checked(model, state, str(folder / WEIGHTS_FILE))
        return model

    task.build_model = build_initialised
    return task
