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

SECTIONS = ("model", "training", "options", "fusion", "validation", "cross_validation")
"""The override sections (``model.latent_dim``, ``training.lr``, ``options.image.num_bands``, ``fusion.dim``,
``validation.seed``, ``cross_validation.fold``)."""

VALIDATION_KEYS = {"split": (str,), "fraction": (float, int), "seed": (int,), "splits": (dict,), "metric": (str,)}
"""The keys of a card's ``[validation]`` table: ``split`` (the dataset's own validation split) or
``fraction`` and ``seed`` (held out of the training split; stratified by label, per dataset for a paired
multimodal task), and for a paired task ``splits``: modality -> the split of that modality's dataset
whose samples are its validation part (e.g. ``{ audio = "validation" }``, a held-out voice) instead of
a held-out fraction; ``metric``: what the best weights are chosen on (`SELECTION_METRICS`)."""

SELECTION_METRICS = {"accuracy": "max", "loss": "min"}
"""Validation metrics the best weights can be chosen on (``validation.metric``), each with the direction
that is better: accuracy (default; ties go to the lower loss) or the loss (ties go to the higher
accuracy), which separates checkpoints a small or saturated validation split scores alike."""

DEFAULT_VALIDATION_FRACTION = 0.1
"""The part of the training split held out for validation when the card says nothing else."""

HELD_OUT_SPLIT = "validation"
"""The name of a task's validation split when it is held out of the training split."""

CROSS_VALIDATION_KEYS = {"folds": (int,), "fold": (int,), "seed": (int,)}
"""The keys of a card's ``[cross_validation]`` table: ``folds`` (K >= 2), ``fold`` (k in [0, K), default
0: the fold tested) and ``seed`` (of the fold assignment, default 0)."""

FOLD_OPTIONS = {"folds": "num_folds", "fold": "fold", "seed": "split_seed"}
"""The dataset options through which ``[cross_validation]`` reaches a plugin: a plugin whose datasets
support K-fold cross-validation declares options ``num_folds``, ``fold`` and ``split_seed`` for its
modality (the graph plugin does); the core sets them from the card."""

GOAL_METRICS = ("accuracy",)
"""The metrics a card's ``goal`` (and the best-checkpoint choice) may name; higher is better."""

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
    validation: dict[str, Any] = field(default_factory=dict)
    cross_validation: dict[str, Any] = field(default_factory=dict)
    goal: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    plugin: str | None = None

    @property
    def holds_out_validation(self) -> bool:
        """True when the validation split is held out of the training split (no ``validation.split``)."""
        return "split" not in self.validation

    @property
    def validation_split(self) -> str:
        """The name of the task's validation split: the dataset's own (``validation.split``), else
        `HELD_OUT_SPLIT` (held out of the training split)."""
        return self.validation.get("split", HELD_OUT_SPLIT)

    @property
    def validation_fraction(self) -> float:
        """The part of the training split held out for validation (when `holds_out_validation`)."""
        return float(self.validation.get("fraction", DEFAULT_VALIDATION_FRACTION))

    @property
    def validation_seed(self) -> int:
        """The seed of the held-out validation split."""
        return int(self.validation.get("seed", 0))

    @property
    def validation_sources(self) -> dict[str, str]:
        """Dataset -> the dataset's own split that supplies its validation samples (``validation.splits``
        of a paired task); the datasets not named hold ``validation_fraction`` out of the training split."""
        return {self.dataset_for(m): s for m, s in self.validation.get("splits", {}).items()}

    @property
    def selection_metric(self) -> str:
        """The validation metric the best checkpoint is chosen on: ``validation.metric``, by default
        ``accuracy`` (one of `SELECTION_METRICS`)."""
        return str(self.validation.get("metric", "accuracy"))

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
            "name", "description", "modalities", "dataset", "objective", "baseline", "goal", "train_split",
            "eval_split", "validation", "cross_validation", "options", "model", "training", "pairing", "fusion")}
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
    check_validation(data.get("validation", {}), f"{source}: validation", data.get("train_split", "train"),
                     data.get("eval_split", "test"), data["modalities"] if pairing else None)
    check_cross_validation(data.get("cross_validation", {}), f"{source}: cross_validation")
    check_goal(data.get("goal", {}), f"{source}: goal")
    return TaskCard(**copy.deepcopy(data), source=source)


def _check_table(values: Mapping[str, Any], where: str, keys: Mapping[str, tuple[type, ...]]) -> None:
    names = {str: "string", int: "integer", float: "number", dict: "table"}
    for key, value in values.items():
        if key not in keys:
            raise TaskError(f"{where}.{key}: unknown key (expected one of {sorted(keys)})")
        if not isinstance(value, keys[key]) or isinstance(value, bool):
            raise TaskError(f"{where}.{key}: expected {names[keys[key][0]]}, got {type(value).__name__} {value!r}")


def check_validation(values: Mapping[str, Any], where: str = "validation", train_split: str = "train",
                     eval_split: str = "test", modalities: Iterable[str] | None = None) -> None:
    """Check a ``[validation]`` table: ``split`` (a string other than the train and eval splits) or
    ``fraction`` in (0, 1) and ``seed`` >= 0, and ``splits`` (modality -> split name, other than the
    train and eval splits) only where ``modalities`` (the modalities of a paired task; ``None``: not
    paired) has the modality, and ``metric`` among `SELECTION_METRICS`; raise `TaskError` naming the key,
    the expected and the actual value."""
    _check_table(values, where, VALIDATION_KEYS)
    if values.get("metric", "accuracy") not in SELECTION_METRICS:
        raise TaskError(f"{where}.metric: expected one of {list(SELECTION_METRICS)}, got {values['metric']!r}")
    for modality, split in values.get("splits", {}).items():
        if modalities is None:
            raise TaskError(f"{where}.splits: expected a paired multimodal task (a [pairing] table); for a single "
                            f"dataset's own split write validation.split = {split!r}, got splits "
                            f"{dict(values['splits'])!r}")
        if modality not in modalities:
            raise TaskError(f"{where}.splits.{modality}: expected one of the task's modalities {list(modalities)}, "
                            f"got {modality!r}")
        if not isinstance(split, str) or split in (train_split, eval_split):
            raise TaskError(f"{where}.splits.{modality}: expected the name of a split other than the training "
                            f"split {train_split!r} and the test split {eval_split!r}, got {split!r}")
    if "split" in values:
        extra = sorted(set(values) & {"fraction", "seed", "splits"})
        if extra:
            raise TaskError(f"{where}.{extra[0]}: expected no {extra[0]} with validation.split "
                            f"{values['split']!r} (the dataset's own split), got {values[extra[0]]!r}")
        if values["split"] in (train_split, eval_split):
            raise TaskError(f"{where}.split: expected a split other than the training split {train_split!r} "
                            f"and the test split {eval_split!r}, got {values['split']!r}")
    fraction = values.get("fraction", DEFAULT_VALIDATION_FRACTION)
    if not 0.0 < float(fraction) < 1.0:
        raise TaskError(f"{where}.fraction: expected a number in (0, 1), got {fraction!r}")
    if values.get("seed", 0) < 0:
        raise TaskError(f"{where}.seed: expected an integer >= 0, got {values['seed']!r}")


def check_cross_validation(values: Mapping[str, Any], where: str = "cross_validation") -> None:
    """Check a ``[cross_validation]`` table: ``folds`` >= 2 (required when the table is given),
    ``fold`` in [0, folds), ``seed`` >= 0; raise `TaskError` naming the key, the expected and the
    actual value."""
    if not values:
        return
    _check_table(values, where, CROSS_VALIDATION_KEYS)
    if "folds" not in values:
        raise TaskError(f"{where}.folds: expected the number of folds (an integer >= 2), got none")
    folds = values["folds"]
    if folds < 2:
        raise TaskError(f"{where}.folds: expected an integer >= 2, got {folds!r}")
    fold = values.get("fold", 0)
    if not 0 <= fold < folds:
        raise TaskError(f"{where}.fold: expected an integer in [0, {folds}), got {fold!r}")
    if values.get("seed", 0) < 0:
        raise TaskError(f"{where}.seed: expected an integer >= 0, got {values['seed']!r}")


def check_goal(values: Mapping[str, Any], where: str = "goal") -> None:
    """Check a ``goal`` table: metric names of `GOAL_METRICS` with numbers in [0, 1] (test figures to
    reach), plus an optional ``note`` string; raise `TaskError` naming the key, the expected and the
    actual value."""
    for key, value in values.items():
        if key == "note":
            if not isinstance(value, str):
                raise TaskError(f"{where}.note: expected string, got {type(value).__name__} {value!r}")
            continue
        if key not in GOAL_METRICS:
            raise TaskError(f"{where}.{key}: unknown metric (expected one of {list(GOAL_METRICS)} or 'note')")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise TaskError(f"{where}.{key}: expected a number in [0, 1], got {type(value).__name__} {value!r}")


def apply_split_overrides(card: TaskCard, overrides: Mapping[str, Mapping[str, Any]]) -> TaskCard:
    """Return ``card`` with the ``validation`` and ``cross_validation`` sections of the normalised
    ``overrides`` applied (checked as the card's own tables are); ``card`` itself is unchanged."""
    validation, cv = overrides.get("validation") or {}, overrides.get("cross_validation") or {}
    if not validation and not cv:
        return card
    new = copy.deepcopy(card)
    if validation:
        merged = {**new.validation, **validation}
        if "splits" in validation:  # one modality's entry leaves the others' as the card has them
            merged["splits"] = {**new.validation.get("splits", {}), **validation["splits"]}
        if "split" in validation:
            merged = {"split": validation["split"], **({"metric": merged["metric"]} if "metric" in merged else {})}
        elif {"fraction", "seed", "splits"} & set(validation):
            merged.pop("split", None)
        check_validation(merged, "override validation", new.train_split, new.eval_split,
                         new.modalities if new.pairing else None)
        new.validation = merged
    if cv:
        if not new.cross_validation and "folds" not in cv:
            raise TaskError(f"override cross_validation.{next(iter(cv))}: task {card.name!r} has no "
                            f"[cross_validation] table; expected cross_validation.folds too, got {dict(cv)}")
        merged = {**new.cross_validation, **cv}
        check_cross_validation(merged, "override cross_validation")
        new.cross_validation = merged
    return new


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
    out: dict[str, Any] = {"model": {}, "training": {}, "options": {}, "fusion": {}, "validation": {},
                           "cross_validation": {}}
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
    elif parts[0] == "validation" and len(parts) == 2 and parts[1] in VALIDATION_KEYS:
        out["validation"][parts[1]] = value
        return
    elif parts[:2] == ["validation", "splits"] and len(parts) == 3 and parts[2] in card.modalities:
        out["validation"].setdefault("splits", {})[parts[2]] = value
        return
    elif parts[0] == "cross_validation" and len(parts) == 2 and parts[1] in CROSS_VALIDATION_KEYS:
        out["cross_validation"][parts[1]] = value
        return
    elif parts[0] == "options" and len(parts) == 3 and parts[1] in card.modalities:
        out["options"].setdefault(parts[1], {})[parts[2]] = value
        return
    valid = ([f"model.{f}" for f in model_fields] + [f"training.{f}" for f in training_fields]
             + [f"fusion.{f}" for f in FUSION_KEYS] + [f"validation.{k}" for k in VALIDATION_KEYS]
             + [f"cross_validation.{k}" for k in CROSS_VALIDATION_KEYS] + sorted(model_fields) + sorted(training_fields)
             + [f"options.{m}.<name>" for m in card.modalities])
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else \
        (" (expected model.<PerceiverConfig field>, training.<TrainingConfig field>, "
         f"options.<modality>.<name>, fusion.<{'|'.join(FUSION_KEYS)}>, validation.<split|fraction|seed|splits> or "
         "cross_validation.<folds|fold|seed>)")
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
           "parse_value", "parse_assignments", "normalise_overrides", "merge_overrides", "apply_split_overrides",
           "check_validation", "check_cross_validation", "check_goal", "VALIDATION_KEYS", "CROSS_VALIDATION_KEYS",
           "FOLD_OPTIONS", "GOAL_METRICS", "HELD_OUT_SPLIT", "DEFAULT_VALIDATION_FRACTION"]
