"""The data types that cross the plugin boundary: what plugins register and what their hooks return.

Every registered object carries ``plugin``: the name of the plugin that registered it, stamped by
the plugin manager (plugins leave it ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # the contract imports no torch at run time
    import torch



@dataclass
class ModalitySpec:
    """A modality a plugin supplies (``"image"``, ``"audio"``...).

    ``input_type`` is ``"raw"`` (the input array hook returns float ``[m, c]``) or ``"tokens"``
    (it returns integer ids ``[m]``). ``options`` documents the per-task options the plugin's
    hooks read, name -> one-line description. ``read_file(path)`` (optional) reads one file of the
    modality (an image, a WAV, a text file...) into the raw sample its datasets yield, so
    ``gperc predict`` can take files; ``None`` means the plugin does not read files.
    """

    name: str
    description: str = ""
    input_type: str = "raw"
    options: Mapping[str, str] = field(default_factory=dict)
    plugin: str | None = None
    read_file: Callable[[str], Any] | None = None


@dataclass
class DatasetSpec:
    """A dataset a plugin supplies.

    ``load(split, options)`` returns a sequence (``torch.utils.data.Dataset``-like: ``len`` and
    integer indexing) of samples for ``split`` in ``splits``. A sample is a dict with one key per
    modality of the dataset holding that modality's raw sample (an image array, a waveform, a
    string, a graph...) and ``"target"`` holding the label: an int for classification, or an
    integer array with one label per output query (``-100`` = ignored) for dense tasks.
    ``install_hint`` is the exact command that makes missing data available.
    """

    name: str
    modalities: Sequence[str]
    load: Callable[[str, Mapping[str, Any]], Any]
    description: str = ""
    num_classes: int | None = None
    splits: Sequence[str] = ("train", "test")
    install_hint: str = ""
    plugin: str | None = None


@dataclass
class InputArray:
    """One sample as the Perceiver reads it.

    ``array`` is float ``[m, c]`` (raw) or integer token ids ``[m]`` (tokens); ``mask`` is an
    optional bool ``[m]`` (True = real element) for samples that carry their own padding;
    ``output`` is an optional per-sample query array ``[o, e]`` (e.g. one query per pixel or node);
    ``target`` optionally replaces the dataset's target (e.g. masked-language-model labels made
    while masking).
    """

    array: torch.Tensor
    mask: torch.Tensor | None = None
    output: torch.Tensor | None = None
    target: Any = None


@runtime_checkable
class Tokenizer(Protocol):
    """What a tokenizer hook returns: text (or bytes) to ids and back."""

    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text``."""

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids``."""


Batch = dict
"""A collated batch: ``input_array``, ``attention_mask``, ``output_array``, ``target`` (tensors, or
``None`` / sentinels for absent optional inputs)."""

Collator = Callable[[Sequence[InputArray]], Batch]
