"""Task cards: the schema, validating a card into a `TaskCard`, and the overrides a task is built with.

A card is a TOML table (a plugin's ``tasks/<task>.toml``, the core's ``registry/multimodal/*.toml``,
or a run's ``task.json``) binding a task name to modalities, a dataset, per-modality options, model
and training defaults. `validate_card` checks it against ``registry/schema.toml``; every error names
the source and the key. Overrides (``--set`` / ``create_task(**overrides)``) are parsed and sorted
into sections here too: ``model.*``, ``training.*``, ``options.<modality>.<name>``, ``fusion.*``.
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gperc_core.config.bounds import check_model_bounds
from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.config.training import TrainingConfig
from gperc_core.errors import ConfigError, TaskError
from gperc_core.model.fusion import FUSION_KEYS

SECTIONS = ("model", "training", "options", "fusion")
"""The override sections (``model.latent_dim``, ``training.lr``, ``options.image.num_bands``, ``fusion.dim``)."""

REMOVED_KEYS = ("metrics",)
"""Card keys of earlier versions that are accepted and ignored (run records written before they went)."""

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "table": (dict,),
    "table[table]": (dict,),
    "list[string]": (list,),
}


def registry_dir() -> Path:
    """Return the core's registry folder (``schema.toml``, ``index.toml``, the multimodal cards): the
    wheel's ``gperc_core/_registry``, else the repository's ``registry/`` beside the package."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_registry", package.parent / "registry"):
        if (candidate / "schema.toml").is_file():
            return candidate
    raise TaskError(f"registry: expected {package / '_registry'} or {package.parent / 'registry'} "
                    f"with schema.toml, found neither (a broken gperc-core install?)")


def read_toml(path: Path) -> dict[str, Any]:
    """Return the table of TOML file ``path``; invalid TOML is a `TaskError` naming the file."""
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: not valid TOML ({exc})") from exc


def load_schema(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Return the card schema: top-level key -> {type, required, choices, description}."""
    return read_toml((directory or registry_dir()) / "schema.toml")["keys"]


@dataclass
class TaskCard:
    """A validated task card.

    ``source`` is the card's file path, or ``plugin:<name>`` for a card a plugin registered;
    ``plugin`` is the registering plugin (``None`` for the core's cards). ``pairing`` maps each
    modality to its dataset name for paired multimodal tasks, else is empty.
    """

    name: str
    modalities: list[str]
    dataset: str | None = None
    description: str = ""
    objective: str = "classification"
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

    def datasets(self) -> dict[str, list[str]]:
        """Return dataset name -> the task's modalities it supplies (in the card's order)."""
        out: dict[str, list[str]] = {}
        for modality in self.modalities:
            out.setdefault(self.dataset_for(modality), []).append(modality)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the card as the plain dict a TOML file holds (empty tables and defaults included)."""
        out = {k: copy.deepcopy(getattr(self, k)) for k in (
            "name", "description", "modalities", "dataset", "objective", "baseline", "train_split",
            "eval_split", "options", "model", "training", "pairing", "fusion")}
        return {k: v for k, v in out.items() if v is not None}


def validate_card(data: Mapping[str, Any], source: str, schema: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> TaskCard:
    """Check ``data`` against the schema and return a `TaskCard`.

    Raises `TaskError` naming ``source`` and the offending key for a missing required key, an
    unknown key, or a value of the wrong type; ``[model]`` keys must be `PerceiverConfig` fields and
    ``[training]`` keys `TrainingConfig` fields. Keys of `REMOVED_KEYS` are ignored. Option names
    are checked against the plugins' declarations when the task is built (`gperc_core.data.options`).
    """
    schema = schema if schema is not None else load_schema()
    if not isinstance(data, Mapping):
        raise TaskError(f"{source}: expected a table (dict) of card keys, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if k != "plugin" and k not in REMOVED_KEYS}
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
    for key in data.get("fusion", {}):
        if key not in FUSION_KEYS:
            raise TaskError(f"{source}: fusion.{key}: unknown fusion setting (expected one of {list(FUSION_KEYS)})")
    TrainingConfig.from_mapping(data.get("training", {}), where=f"{source}: training")
    return TaskCard(**copy.deepcopy(data), source=source)


def _check_type(source: str, key: str, value: Any, rule: Mapping[str, Any]) -> None:
    kind = rule["type"]
    ok = isinstance(value, _TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
    if ok and kind == "list[string]":
        ok = all(isinstance(v, str) for v in value)
    if ok and kind == "table[table]":
        ok = all(isinstance(v, dict) for v in value.values())
    if not ok:
        raise TaskError(f"{source}: {key}: expected {kind}, got {type(value).__name__} {value!r}")
    choices = rule.get("choices")
    if choices:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v not in choices]
        if bad:
            raise TaskError(f"{source}: {key}: expected one of {choices}, got {bad[0]!r}")


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
    known = set(PerceiverConfig().keys())
    for key in model:
        if key not in known:
            raise TaskError(f"{source}: model.{key}: unknown PerceiverConfig field (expected one of {sorted(known)})")
    try:
        check_model_bounds(model, where=f"{source}: model.")
    except ConfigError as exc:
        raise TaskError(str(exc)) from exc


# --------------------------------------------------------------------- overrides
def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML value (``3``, ``1e-3``, ``true``, ``[28, 28]``, ``"x"``);
    anything that is not TOML is taken as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["model.latent_dim=64", ...]`` into ``{"model.latent_dim": 64, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise TaskError(f"--set: expected key=value (e.g. model.latent_dim=64), got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value.strip())
    return out


def normalise_overrides(overrides: Mapping[str, Any], card: TaskCard) -> dict[str, Any]:
    """Sort flat or dotted overrides into ``{"model": {}, "training": {}, "options": {mod: {}}, "fusion": {}}``.

    An unknown key is a `TaskError` with the closest valid keys; training values are type-checked
    here, model values when the config is built, option names and values by
    `gperc_core.data.options.resolve_options`.
    """
    model_fields = set(PerceiverConfig().keys())
    training_fields = set(TrainingConfig.field_types())
    out: dict[str, Any] = {"model": {}, "training": {}, "options": {}, "fusion": {}}
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for sub, v in value.items():
                _put(out, f"{key}.{sub}", v, card, model_fields, training_fields)
        else:
            _put(out, key, value, card, model_fields, training_fields)
    TrainingConfig.from_mapping(out["training"], where="override training")
    return out


def _put(out: dict[str, Any], key: str, value: Any, card: TaskCard, model_fields: set[str],
         training_fields: set[str]) -> None:
    parts = key.split(".")
    if len(parts) == 1:
        if key in model_fields and key in training_fields:
            raise TaskError(f"override {key!r}: ambiguous, write model.{key} or training.{key}")
        if key in model_fields:
            out["model"][key] = value
            return
        if key in training_fields:
            out["training"][key] = value
            return
    elif parts[0] == "model" and len(parts) == 2 and parts[1] in model_fields:
        out["model"][parts[1]] = value
        return
    elif parts[0] == "training" and len(parts) == 2 and parts[1] in training_fields:
        out["training"][parts[1]] = value
        return
    elif parts[0] == "fusion" and len(parts) == 2 and parts[1] in FUSION_KEYS:
        out["fusion"][parts[1]] = value
        return
    elif parts[0] == "options" and len(parts) == 3 and parts[1] in card.modalities:
        out["options"].setdefault(parts[1], {})[parts[2]] = value
        return
    valid = ([f"model.{f}" for f in model_fields] + [f"training.{f}" for f in training_fields]
             + [f"fusion.{f}" for f in FUSION_KEYS] + sorted(model_fields) + sorted(training_fields)
             + [f"options.{m}.<name>" for m in card.modalities])
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else \
        (" (expected model.<PerceiverConfig field>, training.<TrainingConfig field>, "
         "options.<modality>.<name> or fusion.<dim|modality_dropout>)")
    raise TaskError(f"override {key!r}: unknown key for task {card.name!r}{hint}")


def merge_overrides(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``old`` then ``new`` overrides (flat, dotted or sectioned) as one flat dict of dotted
    keys, ``new`` winning (a run's recorded overrides plus the command line's)."""
    merged: dict[str, Any] = {}
    for source in (old, new):
        for key, value in source.items():
            if key in SECTIONS and isinstance(value, Mapping):
                for sub, v in value.items():
                    if key == "options" and isinstance(v, Mapping):
                        for name, x in v.items():
                            merged[f"options.{sub}.{name}"] = x
                    else:
                        merged[f"{key}.{sub}"] = v
            else:
                merged[key] = value
    return merged


__all__ = ["TaskCard", "validate_card", "load_schema", "registry_dir", "read_toml", "SECTIONS", "REMOVED_KEYS",
           "parse_value", "parse_assignments", "normalise_overrides", "merge_overrides"]
