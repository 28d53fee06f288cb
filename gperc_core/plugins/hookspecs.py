"""The plugin contract: pluggy hook specifications of project ``gperc``.

A plugin is a module (or object) with functions marked by `gperc_core.hookimpl`, advertised by an
entry point in group ``gperc``. The core calls every hook with keyword arguments only, so an
implementation may accept a subset of the arguments (pluggy passes only the ones it names).

Registration hooks (``gperc_register_*``) are called once per plugin manager and collect from
every plugin. Per-modality hooks are ``firstresult``: the core passes the modality name and an
implementation returns ``None`` for a modality that is not its own, so the first plugin that owns
the modality answers.

``options`` is always a plain dict: the per-modality options of the task card (``[options.<name>]``
table) with the task's overrides applied and the defaults of the modality's declared `Option`s
filled in; only declared option names reach a hook (an unknown name is a `TaskError` before any
hook runs). ``tokenizer`` is the modality's tokenizer (the ``gperc_tokenizer`` hook's result, or
``None``), passed as its own argument to the hooks that encode samples; it never rides in
``options``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import pluggy

from gperc_core.plugins.specs import Collator, DatasetSpec, InputArray, ModalitySpec, Option, PositionGrid, Tokenizer

if TYPE_CHECKING:  # the contract imports no torch at run time
    import torch

PROJECT = "gperc"
"""pluggy project name and entry-point group of gperc plugins."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def gperc_register_modalities() -> list[ModalitySpec]:
    """Return the modalities this plugin supplies.

    Called once when the plugin manager is built. Returns a list of `ModalitySpec`; the manager
    stamps each with the plugin's name. A modality name registered by two plugins is an error
    naming both.
    """


@hookspec
def gperc_register_datasets() -> list[DatasetSpec]:
    """Return the datasets this plugin supplies.

    Called once when the plugin manager is built. Returns a list of `DatasetSpec` whose
    ``load(split, options)`` yields samples ``{<modality>: raw sample, "target": label}``.
    Loading must not download anything; missing data raises an error with ``install_hint``.
    """


@hookspec
def gperc_register_tasks() -> list[dict[str, Any]]:
    """Return task cards this plugin adds, as dicts with the schema of ``registry/schema.toml``.

    Called once when the registry is built. A plugin ships its cards as TOML package data and
    returns `gperc_core.plugins.cards.packaged_task_cards` of that folder. Cards are validated
    like the core's; a task name that already exists is an error naming both owners.
    """


@hookspec(firstresult=True)
def gperc_tokenizer(modality: str, options: dict[str, Any], corpus: Iterable[Any] | None) -> Tokenizer | None:
    """Return the tokenizer of ``modality`` for a task, or ``None`` if the modality is not this plugin's
    (or it needs no tokenizer).

    Called once per task build, before any input array is made. ``corpus`` iterates the raw
    training samples of the modality (for tokenizers trained on the task's data, e.g. SentencePiece);
    it may be ``None`` when a trained tokenizer is loaded from a run folder.
    """


@hookspec(firstresult=True)
def gperc_input_array(modality: str, sample: Any, options: dict[str, Any],
                      tokenizer: Tokenizer | None) -> InputArray | None:
    """Turn one raw sample of ``modality`` into an `InputArray`, or return ``None`` if the modality
    is not this plugin's.

    ``tokenizer`` is the modality's tokenizer from ``gperc_tokenizer`` (``None`` if it has none).
    The array is float ``[m, c]`` for raw modalities or integer token ids ``[m]`` for token
    modalities, optionally with a bool ``[m]`` mask, a per-sample output (query) array ``[o, e]``,
    a replacement target, and a `PositionGrid` (``position``) when the elements lie on a grid whose
    Fourier features the model should add (the array then carries no position channels). Bad samples raise `gperc_core.InputError` naming the plugin, the
    argument, what was expected and what came.
    """


@hookspec(firstresult=True)
def gperc_output_array(modality: str, options: dict[str, Any], output_dim: int) -> torch.Tensor | None:
    """Return a fixed decoder query array ``[o, output_dim]`` shared by every sample of a task
    (e.g. Fourier features of each pixel for segmentation), or ``None``: the modality is not this
    plugin's, or the task uses the model's learned queries.
    """


@hookspec(firstresult=True)
def gperc_collator(modality: str, options: dict[str, Any], sentinels: bool,
                   tokenizer: Tokenizer | None) -> Collator | None:
    """Return a callable that batches a list of `InputArray` into a batch dict, or ``None`` to use the
    core's `gperc_core.data.collate.Collator` (or if the modality is not this plugin's).

    ``tokenizer`` is the modality's tokenizer (``None`` if it has none), e.g. for its padding id.

    With ``sentinels=True`` absent masks and output arrays are emitted as the ``[batch]`` sentinel
    tensors of `gperc_core.model.sentinels` instead of ``None`` (DataLoader workers, pipelines, export).
    """


@hookspec(firstresult=True)
def gperc_transform(modality: str, array: InputArray, options: dict[str, Any], tokenizer: Tokenizer | None,
                    generator: torch.Generator, epoch: int, index: int) -> InputArray | None:
    """Return a random variant of one converted training sample (augmentation, MLM masking), or
    ``None``: the modality is not this plugin's, or its options ask for no transform.

    Called only on training samples, once per sample per epoch, in the DataLoader workers, on the
    deterministic result of ``gperc_input_array`` (cached once; never changed in place: return a new
    `InputArray`). Draw every random number from ``generator`` (a CPU ``torch.Generator`` seeded
    from the run's seed, ``epoch`` and ``index``, the sample's index in the training split), never
    from the global RNG, so every epoch sees fresh draws and a resumed run sees the same ones as an
    uninterrupted run. The result must keep the array's kind (token ids or float channels), its
    element count up to the sample's own padding, and its position grid.
    """


HOOK_NAMES = (
    "gperc_register_modalities",
    "gperc_register_datasets",
    "gperc_register_tasks",
    "gperc_tokenizer",
    "gperc_input_array",
    "gperc_output_array",
    "gperc_collator",
    "gperc_transform",
)

__all__ = ["PROJECT", "hookspec", "hookimpl", "HOOK_NAMES", "ModalitySpec", "DatasetSpec", "InputArray",
           "Option", "PositionGrid", "Tokenizer", "Collator"]
