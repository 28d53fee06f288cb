"""The data types that cross the plugin boundary: what plugins register and what their hooks return.

Every registered object carries ``plugin``: the name of the plugin that registered it, stamped by
the plugin manager (plugins leave it ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # the contract imports no torch at run time
    import torch

@dataclass(frozen=True)
class Option:
    """One per-task option a modality's hooks (or its datasets' ``load``) read: ``[options.<modality>]``.

    ``type`` is a Python type or a tuple of them (``int``, ``float``, ``str``, ``bool``, ``list``,
    ``dict``, ``object`` = anything); an ``int`` is accepted for ``float`` and a ``bool`` is never
    an ``int``. ``default`` is filled in by the core when the task does not set the option
    (``None`` = no default: the option is absent and the plugin decides). ``choices`` (optional)
    lists the allowed values (for a list value, every element must be one). ``help`` is one line
    for ``gperc plugins`` and the docs.
    """

    type: type | tuple[type, ...] = object
    default: Any = None
    help: str = ""
    choices: Sequence[Any] | None = None

    @property
    def types(self) -> tuple[type, ...]:
        """The accepted types as a tuple (``float`` also admits ``int``)."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return types + ((int,) if float in types and int not in types else ())

    def type_name(self) -> str:
        """The accepted types in words (``int | float``)."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return " | ".join("any" if t is object else t.__name__ for t in types)

    def problem(self, value: Any) -> str | None:
        """Return why ``value`` is not a valid value of this option (an ``expected ..., got ...``
        phrase), or ``None`` when it is. ``None`` values are always valid (the option is unset)."""
        if value is None or object in self.types:
            pass
        elif isinstance(value, bool) and bool not in self.types:
            return f"expected {self.type_name()}, got bool {value!r}"
        elif not isinstance(value, self.types) and not (isinstance(value, tuple) and list in self.types):
            return f"expected {self.type_name()}, got {type(value).__name__} {value!r}"
        if self.choices is not None and value is not None:
            values = value if isinstance(value, (list, tuple)) else [value]
            bad = [v for v in values if v not in self.choices]
            if bad:
                return f"expected one of {list(self.choices)}, got {bad[0]!r}"
        return None


def as_option(spec: Any) -> Option:
    """Return ``spec`` as an `Option`: an `Option` stays as is; the old ``name -> description`` form
    (a string) becomes an untyped option with no default whose help is the description."""
    if isinstance(spec, Option):
        return spec
    if isinstance(spec, str):
        return Option(object, None, spec)
    raise TypeError(f"expected an Option (or a description string), got {type(spec).__name__} {spec!r}")


def dataclass_options(cls: type, help: Mapping[str, str], types: Mapping[str, type | tuple[type, ...]],
                      choices: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Option]:
    """Return one `Option` per field of the options dataclass ``cls`` (its fields' defaults, so the
    plugin's defaults live in one place), with ``help`` / ``types`` / ``choices`` per field name."""
    from dataclasses import fields

    defaults = cls()
    return {f.name: Option(types[f.name], getattr(defaults, f.name), help[f.name], (choices or {}).get(f.name))
            for f in fields(cls)}


def recipe_names(value: Any, choices: Sequence[str], default: Sequence[str], where: str) -> tuple[str, ...]:
    """Return the step names a recipe option such as ``augment`` asks for: ``()`` for ``false`` /
    ``None``, ``default`` for ``true``, else the names (one string or a list) when all are in
    ``choices``; anything else is a `TaskError` naming ``where`` (e.g. ``"plugin: options['augment']"``),
    the choices and the value."""
    from gperc_core.errors import TaskError

    if value is None or value is False:
        return ()
    if value is True:
        return tuple(default)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n in choices for n in names):
        raise TaskError(f"{where}: expected true, false or a list of names from {tuple(choices)}, got {value!r}")
    return tuple(names)


@dataclass(frozen=True)
class PositionGrid:
    """The index grid of an input array's elements, declared by the plugin so the model (not the
    data) computes their Fourier position features: ``shape`` (e.g. ``(H, W)``; its product is the
    number of elements), ``num_bands`` per axis and ``max_resolution`` (default: ``shape``).

    The features are ``gperc_core.model.position.fourier_features(shape, num_bands, max_resolution)``
    (``len(shape) * (2 * num_bands + 1)`` channels, concatenated after the element's channels).
    """

    shape: tuple[int, ...]
    num_bands: int
    max_resolution: tuple[float, ...] | None = None

    @property
    def channels(self) -> int:
        """Channels the features add to each element."""
        return len(self.shape) * (2 * int(self.num_bands) + 1)



@dataclass
class ModalitySpec:
    """A modality a plugin supplies (``"image"``, ``"audio"``...).

    ``input_type`` is ``"raw"`` (the input array hook returns float ``[m, c]``) or ``"tokens"``
    (it returns integer ids ``[m]``). ``options`` declares the per-task options the plugin's
    hooks and datasets read, name -> `Option` (type, default, help, choices); the core fills the
    defaults, checks the types and rejects unknown names. The old form name -> one-line
    description is still accepted and read as an untyped `Option` with no default. ``read_file(path)`` (optional) reads one file of the
    modality (an image, a WAV, a text file...) into the raw sample its datasets yield, so
    ``gperc predict`` can take files; ``None`` means the plugin does not read files.
    """

    name: str
    description: str = ""
    input_type: str = "raw"
    options: Mapping[str, Option | str] = field(default_factory=dict)
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
    ``install_hint`` is the exact command that makes missing data available. ``volatile`` marks a
    dataset whose files the user may change between runs (a folder, a table): the core then loads
    the split on every run and keys its cache of converted samples on the ``fingerprint`` attribute
    of what ``load`` returns (no fingerprint: not cached).
    """

    name: str
    modalities: Sequence[str]
    load: Callable[[str, Mapping[str, Any]], Any]
    description: str = ""
    num_classes: int | None = None
    splits: Sequence[str] = ("train", "test")
    install_hint: str = ""
    plugin: str | None = None
    volatile: bool = False


@dataclass
class InputArray:
    """One sample as the Perceiver reads it.

    ``array`` is float ``[m, c]`` (raw) or integer token ids ``[m]`` (tokens); ``mask`` is an
    optional bool ``[m]`` (True = real element) for samples that carry their own padding;
    ``output`` is an optional per-sample query array ``[o, e]`` (e.g. one query per pixel or node);
    ``target`` optionally replaces the dataset's target (e.g. masked-language-model labels made
    while masking); ``position`` (optional) declares the `PositionGrid` of the elements: the model
    then adds their Fourier position features, so the array carries none.
    """

    array: torch.Tensor
    mask: torch.Tensor | None = None
    output: torch.Tensor | None = None
    target: Any = None
    position: PositionGrid | None = None


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
