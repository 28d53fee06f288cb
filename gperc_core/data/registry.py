"""Task cards: loading the TOML registry, validating cards against the schema, the plugin index.

A task card (``registry/<modality>/<task>.toml``, or a dict from a plugin's
``gperc_register_tasks`` hook) binds a task name to modalities, a dataset, model and training
defaults and metrics. `load_registry` reads every shipped card plus the plugin cards of a plugin
manager and returns them by name as validated `TaskCard` objects. Every error names the file (or
plugin) and the key.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gperc_core.errors import TaskError

OBJECTIVES = ("classification", "dense")
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "table": (dict,),
    "table[table]": (dict,),
    "list[string]": (list,),
}
_TOP_FILES = ("schema.toml", "index.toml")


def registry_dir() -> Path:
    """Return the folder holding the task cards: the wheel's ``gperc_core/_registry``, else the
    repository's ``registry/`` beside the package (editable installs)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_registry", package.parent / "registry"):
        if (candidate / "schema.toml").is_file():
            return candidate
    raise TaskError(f"registry: expected {package / '_registry'} or {package.parent / 'registry'} "
                    f"with schema.toml, found neither (a broken gperc-core install?)")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: not valid TOML ({exc})") from exc


def load_schema(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Return the card schema: top-level key -> {type, required, choices, description}."""
    path = (directory or registry_dir()) / "schema.toml"
    return _read_toml(path)["keys"]


@dataclass
class TaskCard:
    """A validated task card.

    ``source`` is the card's file path, or ``plugin:<name>`` for a card a plugin registered;
    ``plugin`` is the registering plugin (``None`` for shipped cards). ``datasets`` maps each
    modality to its dataset name for paired multimodal tasks (``[pairing]``), else is empty.
    """

    name: str
    modalities: list[str]
    dataset: str | None = None
    description: str = ""
    objective: str = "classification"
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    baseline: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "test"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    pairing: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    plugin: str | None = None

    @property
    def modality(self) -> str:
        """The modality part of the name (``image`` of ``image/digits``)."""
        return self.name.split("/", 1)[0]

    @property
    def multimodal(self) -> bool:
        """True when the task reads more than one modality (its inputs are fused)."""
        return len(self.modalities) > 1

    def dataset_for(self, modality: str) -> str:
        """Return the dataset that supplies ``modality``: the ``[pairing]`` entry, else ``dataset``."""
        name = self.pairing.get(modality, self.dataset)
        if name is None:
            raise TaskError(f"{self.source}: pairing.{modality}: expected a dataset name, found none")
        return name

    def to_dict(self) -> dict[str, Any]:
        """Return the card as the plain dict a TOML file holds (empty tables and defaults included)."""
        out = {k: copy.deepcopy(getattr(self, k)) for k in (
            "name", "description", "modalities", "dataset", "objective", "metrics", "baseline", "train_split",
            "eval_split", "options", "model", "training", "pairing", "fusion")}
        return {k: v for k, v in out.items() if v is not None}


def validate_card(data: Mapping[str, Any], source: str, schema: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> TaskCard:
    """Check ``data`` against the schema and return a `TaskCard`.

    Raises `TaskError` naming ``source`` and the offending key for a missing required key, an
    unknown key, or a value of the wrong type; ``[model]`` keys must be `PerceiverConfig` fields and
    ``[training]`` keys `TrainingConfig` fields.
    """
    schema = schema if schema is not None else load_schema()
    if not isinstance(data, Mapping):
        raise TaskError(f"{source}: expected a table (dict) of card keys, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if k != "plugin"}
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise TaskError(f"{source}: unknown key {unknown[0]!r} (expected one of {sorted(schema)})")
    for key, rule in schema.items():
        if key not in data:
            if rule.get("required"):
                raise TaskError(f"{source}: missing required key {key!r} ({rule.get('description', '')})")
            continue
        _check_type(source, key, data[key], rule)
    name = data["name"]
    if name.count("/") != 1 or not all(name.split("/")):
        raise TaskError(f"{source}: name: expected '<modality>/<task>', got {name!r}")
    if not data["modalities"]:
        raise TaskError(f"{source}: modalities: expected at least one modality, got []")
    pairing = dict(data.get("pairing", {}))
    _check_pairing(source, pairing, data["modalities"])
    if "dataset" not in data and not pairing:
        raise TaskError(f"{source}: missing required key 'dataset' (or a [pairing] table for a multimodal task)")
    for modality in data.get("options", {}):
        if modality not in data["modalities"]:
            raise TaskError(f"{source}: options.{modality}: expected options of one of the task's modalities "
                            f"{data['modalities']}, got {modality!r}")
    _check_model_keys(source, data.get("model", {}))
    from gperc_core.model.fusion import FUSION_KEYS

    for key in data.get("fusion", {}):
        if key not in FUSION_KEYS:
            raise TaskError(f"{source}: fusion.{key}: unknown fusion setting (expected one of {list(FUSION_KEYS)})")
    from gperc_core.config.training import TrainingConfig

    TrainingConfig.from_mapping(data.get("training", {}), where=f"{source}: training")
    card = TaskCard(**copy.deepcopy(data), source=source)
    return card


def _check_type(source: str, key: str, value: Any, rule: Mapping[str, Any], prefix: str = "") -> None:
    kind = rule["type"]
    ok = isinstance(value, _TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
    if ok and kind == "list[string]":
        ok = all(isinstance(v, str) for v in value)
    if ok and kind == "table[table]":
        ok = all(isinstance(v, dict) for v in value.values())
    if not ok:
        raise TaskError(f"{source}: {prefix}{key}: expected {kind}, got {type(value).__name__} {value!r}")
    choices = rule.get("choices")
    if choices:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v not in choices]
        if bad:
            raise TaskError(f"{source}: {prefix}{key}: expected one of {choices}, got {bad[0]!r}")


def _check_pairing(source: str, pairing: dict[str, Any], modalities: list[str]) -> None:
    if not pairing:
        return
    by = pairing.pop("by", "target")
    if by != "target":
        raise TaskError(f"{source}: pairing.by: expected 'target', got {by!r}")
    for modality in modalities:
        if not isinstance(pairing.get(modality), str):
            raise TaskError(f"{source}: pairing.{modality}: expected a dataset name (string), "
                            f"got {pairing.get(modality)!r}")
    extra = sorted(set(pairing) - set(modalities))
    if extra:
        raise TaskError(f"{source}: pairing.{extra[0]}: expected one of the task's modalities {modalities} or 'by'")


def _check_model_keys(source: str, model: Mapping[str, Any]) -> None:
    from gperc_core.config.perceiver import PerceiverConfig

    known = set(PerceiverConfig().keys())
    for key in model:
        if key not in known:
            raise TaskError(f"{source}: model.{key}: unknown PerceiverConfig field (expected one of {sorted(known)})")


def card_files(directory: Path | None = None) -> list[Path]:
    """Return every shipped task card file, sorted."""
    root = directory or registry_dir()
    return sorted(p for p in root.rglob("*.toml") if p.parent != root or p.name not in _TOP_FILES)


def load_registry(pm: Any = None, directory: str | Path | None = None,
                  extra_cards: Iterable[Mapping[str, Any]] = ()) -> dict[str, TaskCard]:
    """Return every task card by name: the shipped TOML cards, the cards registered by the plugins
    of ``pm`` (a `PluginManager`; ``None`` = only the shipped cards) and ``extra_cards``.

    A name defined twice is a `TaskError` naming both sources.
    """
    root = Path(directory) if directory is not None else registry_dir()
    schema = load_schema(root)
    cards: dict[str, TaskCard] = {}

    def add(card: TaskCard) -> None:
        if card.name in cards:
            raise TaskError(f"task {card.name!r}: defined twice, by {cards[card.name].source} and by {card.source}")
        cards[card.name] = card

    for path in card_files(root):
        data = _read_toml(path)
        card = validate_card(data, str(path), schema)
        expected = f"{path.parent.name}/{path.stem}"
        if card.name != expected and path.parent != root:
            raise TaskError(f"{path}: name: expected {expected!r} (the card's folder/file name), got {card.name!r}")
        add(card)
    plugin_cards = list(getattr(pm, "task_cards", []) or []) if pm is not None else []
    for data in [*plugin_cards, *extra_cards]:
        plugin = data.get("plugin") if isinstance(data, Mapping) else None
        card = validate_card(data, f"plugin:{plugin}" if plugin else "extra card", schema)
        card.plugin = plugin
        add(card)
    return cards


@dataclass
class PluginEntry:
    """One known plugin of ``registry/index.toml``."""

    name: str
    distribution: str
    modalities: list[str]
    tasks: list[str]

    @property
    def install_hint(self) -> str:
        """The command that installs this plugin."""
        return f"pip install {self.distribution}"


def load_index(directory: str | Path | None = None) -> list[PluginEntry]:
    """Return the known plugins of ``registry/index.toml``."""
    path = (Path(directory) if directory is not None else registry_dir()) / "index.toml"
    data = _read_toml(path)
    entries = []
    for i, item in enumerate(data.get("plugins", [])):
        try:
            entries.append(PluginEntry(name=item["name"], distribution=item["distribution"],
                                       modalities=list(item.get("modalities", [])), tasks=list(item.get("tasks", []))))
        except (KeyError, TypeError) as exc:
            raise TaskError(f"{path}: plugins[{i}]: expected name and distribution, got {item!r}") from exc
    return entries


def plugin_for_modality(modality: str, directory: str | Path | None = None) -> PluginEntry | None:
    """Return the known plugin that supplies ``modality``, or ``None``."""
    return next((e for e in load_index(directory) if modality in e.modalities), None)


def install_hint(modality: str) -> str:
    """Return the ``pip install`` line for the plugin of ``modality`` (the index's, else the naming convention)."""
    entry = plugin_for_modality(modality)
    return entry.install_hint if entry else f"pip install gperc-plugin-{modality}"


__all__ = ["TaskCard", "validate_card", "load_registry", "load_schema", "registry_dir", "card_files",
           "PluginEntry", "load_index", "plugin_for_modality", "install_hint", "OBJECTIVES"]
