"""Tasks by name: ``create_task("image/digits", **overrides)`` builds a ready-to-train `Task`.

A `Task` resolves its card from the registry, loads the dataset splits through the plugins'
`DatasetSpec.load`, builds tokenizers (``gperc_tokenizer`` with the training corpus), converts each
split once into tensors (``gperc_input_array`` per sample, then one vectorised collation per split),
and infers ``input_len`` / ``input_dim`` / ``input_num_tokens`` / ``output_len`` / ``n_classes``
from the data unless the card or the overrides set them. Batches are then tensor slices: no
per-sample Python in the training step.

Multimodal tasks either read several modalities from one dataset, or pair single-modality
datasets by target (``[pairing]``, deterministic); their inputs are fused by
`gperc_core.model.fusion.ModalityFusion`. No plugin knows about another.

Overrides are dotted keys: ``model.latent_dim=64``, ``training.lr=1e-3``,
``options.image.representation="patches"``, ``fusion.dim=64``; plain `PerceiverConfig` or
`TrainingConfig` field names work too (``latent_dim=64``, ``epochs=3``).
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import tomllib
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import ConfigError, InputError, PluginError, TaskError
from gperc_core.data.registry import TaskCard, install_hint, load_index, load_registry, validate_card
from gperc_core.plugins.specs import InputArray
from gperc_core.model.fusion import FUSION_KEYS as _FUSION_KEYS
from gperc_core.model.sentinels import IGNORE_INDEX
from gperc_core.config.training import TrainingConfig

_SECTIONS = ("model", "training", "options", "fusion")


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

    An unknown key is a `TaskError` with the closest valid keys; model values are type-checked when
    the config is built, training values here.
    """
    model_fields = set(PerceiverConfig().keys())
    training_fields = set(TrainingConfig.field_types())
    out: dict[str, Any] = {"model": {}, "training": {}, "options": {}, "fusion": {}}
    for key, value in overrides.items():
        if key in _SECTIONS and isinstance(value, Mapping):
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
    elif parts[0] == "fusion" and len(parts) == 2 and parts[1] in _FUSION_KEYS:
        out["fusion"][parts[1]] = value
        return
    elif parts[0] == "options" and len(parts) == 3 and parts[1] in card.modalities:
        out["options"].setdefault(parts[1], {})[parts[2]] = value
        return
    valid = ([f"model.{f}" for f in model_fields] + [f"training.{f}" for f in training_fields]
             + [f"fusion.{f}" for f in _FUSION_KEYS] + sorted(model_fields) + sorted(training_fields)
             + [f"options.{m}.<name>" for m in card.modalities])
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else \
        (" (expected model.<PerceiverConfig field>, training.<TrainingConfig field>, "
         "options.<modality>.<name> or fusion.<dim|modality_dropout>)")
    raise TaskError(f"override {key!r}: unknown key for task {card.name!r}{hint}")


# --------------------------------------------------------------------- task lookup
def list_tasks(pattern: str = "*", pm: Any = None, with_plugins: bool = True) -> list[str]:
    """Return the sorted names of known tasks matching the fnmatch ``pattern`` (shipped cards plus,
    with ``with_plugins``, the cards registered by installed plugins)."""
    cards = load_registry(_pm(pm) if with_plugins else None)
    return sorted(name for name in cards if fnmatch.fnmatchcase(name, pattern))


def find_card(name: str, pm: Any = None) -> TaskCard:
    """Return the card of task ``name``; an unknown name raises `TaskError` with the closest names,
    or the ``pip install`` line when a known plugin that is not installed supplies it."""
    if not isinstance(name, str) or not name:
        raise TaskError(f"task: expected a task name like 'image/digits', got {name!r}")
    cards = load_registry(pm)
    if name in cards:
        return cards[name]
    for entry in load_index():
        if name in entry.tasks:
            raise TaskError(f"task {name!r} comes from the {entry.name!r} plugin, which is not installed: "
                            f"{entry.install_hint}")
    close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
        f"known tasks: {', '.join(sorted(cards)) or 'none'}"
    raise TaskError(f"task {name!r}: unknown task ({hint}); 'gperc tasks' lists them")


def _pm(pm: Any) -> Any:
    if pm is not None:
        return pm
    from gperc_core.plugins.manager import default_plugin_manager

    return default_plugin_manager()


def _require_modalities(card: TaskCard, pm: Any) -> None:
    installed = pm.modalities
    for modality in card.modalities:
        if modality not in installed:
            raise TaskError(f"task {card.name!r} needs modality {modality!r}, which is not installed: "
                            f"{install_hint(modality)}")


# --------------------------------------------------------------------- data of one split
@dataclass
class TaskData:
    """One split of a task converted once into tensors; `batch` slices it.

    ``inputs`` / ``masks``: modality -> ``[N, m, c]`` (or ``[N, m]`` ids) / ``[N, m]`` bool or ``None``;
    ``output``: per-sample query arrays ``[N, o, e]`` or ``None``; ``query``: a fixed ``[o, e]`` query
    array shared by every sample or ``None``; ``target``: ``[N]`` or ``[N, o]`` long.
    """

    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor | None]
    target: torch.Tensor | None
    output: torch.Tensor | None = None
    query: torch.Tensor | None = None
    fused: bool = False
    trimmable: bool = True

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def batch(self, idx: torch.Tensor, trim: bool = True) -> dict[str, Any]:
        """Return the batch of samples ``idx``: the model's inputs and ``target``, all tensor slices.

        With ``trim`` a single-modality batch is cut to its longest real element (less padding).
        """
        b = int(idx.shape[0])
        if self.fused:
            x: Any = {m: t[idx] for m, t in self.inputs.items()}
            masks = {m: (k[idx] if k is not None else None) for m, k in self.masks.items()}
            mask: Any = masks if any(v is not None for v in masks.values()) else None
        else:
            modality = next(iter(self.inputs))
            x = self.inputs[modality][idx]
            mask = self.masks[modality][idx] if self.masks[modality] is not None else None
            if trim and self.trimmable and mask is not None:
                length = int(mask.any(0).nonzero().max()) + 1
                x, mask = x[:, :length], mask[:, :length]
        if self.output is not None:
            output = self.output[idx]
        elif self.query is not None:
            output = self.query.unsqueeze(0).expand(b, -1, -1)
        else:
            output = None
        target = self.target[idx] if self.target is not None else None
        return {"input_array": x, "attention_mask": mask, "output_array": output, "target": target}


def pair_by_target(targets: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """Pair samples of several datasets by label, deterministically.

    The dataset with the most samples is the anchor: every anchor sample of class ``y`` that is the
    ``r``-th of its class is paired with the ``(r mod k)``-th of the ``k`` samples of class ``y`` of each
    other dataset. Anchor samples of a class another dataset lacks are dropped. Returns dataset ->
    index tensor (equal lengths).
    """
    names = list(targets)
    anchor = max(names, key=lambda n: len(targets[n]))
    groups = {n: defaultdict(list) for n in names}
    for n in names:
        for i, y in enumerate(targets[n]):
            groups[n][int(y)].append(i)
    pairs: dict[str, list[int]] = {n: [] for n in names}
    rank: dict[int, int] = defaultdict(int)
    for i, y in enumerate(targets[anchor]):
        y = int(y)
        if any(not groups[n][y] for n in names):
            continue
        r = rank[y]
        rank[y] += 1
        for n in names:
            pairs[n].append(i if n == anchor else groups[n][y][r % len(groups[n][y])])
    return {n: torch.tensor(v, dtype=torch.long) for n, v in pairs.items()}


def _pad_axis1(t: torch.Tensor | None, length: int, value: Any) -> torch.Tensor | None:
    if t is None or t.shape[1] == length:
        return t
    if t.shape[1] > length:
        raise InputError(f"input_array: expected at most {length} elements per sample (the model's input_len), "
                         f"got {t.shape[1]}")
    pad = [0, 0] * (t.dim() - 2) + [0, length - t.shape[1]]
    return F.pad(t, pad, value=value)


# --------------------------------------------------------------------- the task
class Task:
    """A task ready to train: its card, options, tokenizers, `PerceiverConfig`, `TrainingConfig`
    and data splits (converted lazily, once, and cached).

    Build it with `create_task`; `Task.from_run` rebuilds the task of a run folder with the run's
    saved model config.
    """

    def __init__(self, card: TaskCard, pm: Any, overrides: Mapping[str, Any] | None = None,
                 config: PerceiverConfig | None = None) -> None:
        self.card = card
        self.pm = pm
        self.overrides = normalise_overrides(overrides or {}, card)
        self.name = card.name
        self.modalities = list(card.modalities)
        self.fused = card.multimodal
        self.options: dict[str, dict[str, Any]] = {}
        for modality in self.modalities:
            opts = copy.deepcopy(card.options.get(modality, {}))
            opts.update(self.overrides["options"].get(modality, {}))
            self.options[modality] = opts
        training = TrainingConfig.from_mapping(card.training, where=f"{card.source}: training")
        self.training = TrainingConfig.from_mapping(self.overrides["training"], where="override training", base=training)
        self.tokenizers: dict[str, Any] = {}
        self.class_names: list[str] | None = None
        self._raw: dict[tuple[str, str], Any] = {}
        self._splits: dict[str, TaskData] = {}
        self._collated: dict[str, dict[str, dict[str, Any]]] = {}
        self.query: torch.Tensor | None = None
        self.config = config
        if config is not None:
            self._query_from_hooks(config)

    # ----------------------------------------------------------------- raw data
    def datasets(self) -> dict[str, list[str]]:
        """Return dataset name -> the task's modalities it supplies."""
        out: dict[str, list[str]] = {}
        for modality in self.modalities:
            out.setdefault(self.card.dataset_for(modality), []).append(modality)
        return out

    def raw_split(self, dataset: str, split: str) -> Any:
        """Return (cached) the raw samples of ``dataset``'s ``split`` from its plugin's ``load``."""
        key = (dataset, split)
        if key not in self._raw:
            spec = self.pm.dataset(dataset)
            if split not in spec.splits:
                raise TaskError(f"{self.card.source}: split {split!r}: dataset {dataset!r} has splits "
                                f"{list(spec.splits)}")
            options: dict[str, Any] = {}
            for modality in self.datasets()[dataset]:
                options.update({k: v for k, v in self.options[modality].items() if k != "tokenizer"})
            try:
                self._raw[key] = spec.load(split, options)
            except (FileNotFoundError, OSError) as exc:
                hint = f"; {spec.install_hint}" if spec.install_hint else ""
                raise TaskError(f"dataset {dataset!r} ({split}): data not available ({exc}){hint}") from exc
            if self.class_names is None and getattr(self._raw[key], "classes", None) is not None:
                self.class_names = [str(c) for c in self._raw[key].classes]
        return self._raw[key]

    def build_tokenizers(self) -> None:
        """Ask the plugins for each modality's tokenizer (once), giving them the training corpus."""
        for dataset, modalities in self.datasets().items():
            for modality in modalities:
                if modality in self.tokenizers:
                    continue
                train = self.raw_split(dataset, self.card.train_split)
                corpus = (train[i][modality] for i in range(len(train)))
                tokenizer = self.pm.hook.gperc_tokenizer(modality=modality, options=self.options[modality],
                                                         corpus=corpus)
                self.tokenizers[modality] = tokenizer
                if tokenizer is not None:
                    self.options[modality]["tokenizer"] = tokenizer

    # ----------------------------------------------------------------- conversion
    def convert(self, modality: str, samples: Sequence[Any], targets: Sequence[Any] | None) -> dict[str, Any]:
        """Turn raw samples of ``modality`` into one collated batch dict (input, mask, output, target)."""
        self.build_tokenizers()
        hook = self.pm.hook.gperc_input_array
        options = self.options[modality]
        arrays = []
        for i, sample in enumerate(samples):
            array = hook(modality=modality, sample=sample, options=options)
            if array is None:
                raise PluginError(f"modality {modality!r}: no installed plugin converts its samples "
                                  f"(gperc_input_array returned None); {install_hint(modality)}")
            if not isinstance(array, InputArray):
                raise PluginError(f"modality {modality!r}: gperc_input_array must return an InputArray, "
                                  f"got {type(array).__name__}")
            if array.target is None and targets is not None:
                array = replace(array, target=targets[i])
            arrays.append(array)
        collator = self.pm.hook.gperc_collator(modality=modality, options=options, sentinels=False)
        if collator is None:
            from gperc_core.data.collate import Collator

            collator = Collator()
        return collator(arrays)

    def _collate_split(self, split: str) -> dict[str, dict[str, Any]]:
        """Return modality -> collated batch dict of the whole split (paired and subsampled)."""
        if split in self._collated:
            return self._collated[split]
        datasets = self.datasets()
        raws = {d: self.raw_split(d, split) for d in datasets}
        if len(raws) == 1:
            only = next(iter(raws))
            index = {only: torch.arange(len(raws[only]))}
        else:
            index = pair_by_target({d: [raws[d][i]["target"] for i in range(len(raws[d]))] for d in raws})
        limit = self.training.max_train_samples if split == self.card.train_split else self.training.max_eval_samples
        n = len(next(iter(index.values())))
        if n == 0:
            raise TaskError(f"task {self.name!r}: split {split!r} has no samples")
        if limit is not None and limit < n:
            keep = torch.randperm(n, generator=torch.Generator().manual_seed(1234))[:limit].sort().values
            index = {d: i[keep] for d, i in index.items()}
        out = {}
        for dataset, modalities in datasets.items():
            unique, inverse = torch.unique(index[dataset], return_inverse=True)
            samples = [raws[dataset][int(i)] for i in unique]
            for modality in modalities:
                collated = self.convert(modality, [s[modality] for s in samples], [s["target"] for s in samples])
                out[modality] = {k: (v[inverse] if isinstance(v, torch.Tensor) else v) for k, v in collated.items()}
        self._collated[split] = out
        return out

    def split(self, name: str) -> TaskData:
        """Return split ``name`` as tensors (built on first use, then cached)."""
        if name not in self._splits:
            if self.config is None:
                self.infer_config()
            self._splits[name] = self._to_task_data(self._collate_split(name))
        return self._splits[name]

    def _to_task_data(self, collated: dict[str, dict[str, Any]]) -> TaskData:
        config = self.config
        spec = config.get("fusion") or {}
        inputs, masks = {}, {}
        for modality in self.modalities:
            x, mask = collated[modality]["input_array"], collated[modality]["attention_mask"]
            if self.fused:
                length = int(spec[modality]["input_len"])
                if mask is None and x.shape[1] < length:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool)
                x, mask = _pad_axis1(x, length, 0), _pad_axis1(mask, length, False)
            inputs[modality], masks[modality] = x, mask
        first = collated[self.modalities[0]]
        output = next((c["output_array"] for c in collated.values() if c["output_array"] is not None), None)
        target = first["target"]
        dense = self.card.objective == "dense"
        if dense and target is not None and target.dim() == 2:
            target = _pad_axis1(target, int(config.output_len) if output is None else output.shape[1], IGNORE_INDEX)
        return TaskData(inputs=inputs, masks=masks, target=target, output=output, query=self.query,
                        fused=self.fused, trimmable=not dense and config.decoder_reduction != "eot")

    # ----------------------------------------------------------------- config inference
    def infer_config(self) -> PerceiverConfig:
        """Build the `PerceiverConfig` from the train and eval data, the card's [model] and the overrides."""
        splits = [self._collate_split(self.card.train_split), self._collate_split(self.card.eval_split)]
        explicit = {**self.card.model, **self.overrides["model"]}
        inferred: dict[str, Any] = {}
        per_modality = {m: self._infer_modality(m, [s[m] for s in splits], explicit) for m in self.modalities}
        outputs = [c["output_array"] for s in splits for c in s.values() if c["output_array"] is not None]
        if outputs:
            inferred["output_len"] = max(o.shape[1] for o in outputs)
            inferred["output_dim"] = int(outputs[0].shape[2])
            self._check_explicit(explicit, "output_dim", inferred["output_dim"], "the per-sample output arrays")
        targets = [s[self.modalities[0]]["target"] for s in splits]
        if any(t is None for t in targets):
            raise TaskError(f"task {self.name!r}: expected every sample to have a 'target', some have none")
        if self.card.objective == "dense":
            inferred["decoder_reduction"] = None
            if not outputs:
                inferred["output_len"] = max(t.shape[1] if t.dim() == 2 else 1 for t in targets)
        inferred["n_classes"] = self._num_classes(targets)
        if self.fused:
            values = {**inferred, **explicit}
            fusion = {**self.card.fusion, **self.overrides["fusion"]}
            values.setdefault("output_dim", values.get("latent_dim", PerceiverConfig().latent_dim))
            config = _build_config(lambda v: _fused(v, per_modality, fusion), values)
        else:
            values = {**per_modality[self.modalities[0]], **inferred, **explicit}
            values.setdefault("output_dim", values.get("latent_dim", PerceiverConfig().latent_dim))
            config = _build_config(lambda v: PerceiverConfig(**v), values)
        self.config = config
        self._query_from_hooks(config)
        if self.query is not None and "output_len" not in explicit:
            self.config = config = config.replace(output_len=int(self.query.shape[0]))
        return config

    def _infer_modality(self, modality: str, collated: list[dict[str, Any]], explicit: Mapping[str, Any]
                        ) -> dict[str, Any]:
        arrays = [c["input_array"] for c in collated]
        tokens = arrays[0].dim() == 2
        length = max(a.shape[1] for a in arrays)
        out: dict[str, Any] = {"input_len": length, "input_type": "tokens" if tokens else "raw"}
        if tokens:
            tokenizer = self.tokenizers.get(modality)
            out["input_num_tokens"] = int(tokenizer.vocab_size) if tokenizer is not None else \
                int(max(int(a.max()) for a in arrays)) + 1
            out["input_dim"] = int(explicit.get("latent_dim", PerceiverConfig().latent_dim))
        else:
            out["input_dim"] = int(arrays[0].shape[2])
            if not self.fused:
                self._check_explicit(explicit, "input_dim", out["input_dim"], f"the {modality} input arrays")
        if not self.fused and "input_len" in explicit and explicit["input_len"] < length:
            raise ConfigError(f"model.input_len: expected at least {length} (the longest {modality} sample), "
                              f"got {explicit['input_len']}")
        return out

    def _check_explicit(self, explicit: Mapping[str, Any], key: str, actual: int, what: str) -> None:
        if key in explicit and explicit[key] != actual:
            raise ConfigError(f"model.{key}: expected {actual} ({what} of task {self.name!r} have {actual}), "
                              f"got {explicit[key]!r}")

    def _num_classes(self, targets: list[torch.Tensor]) -> int:
        declared = [self.pm.dataset(d).num_classes for d in self.datasets()]
        declared = [n for n in declared if n]
        largest = max(int(t[t != IGNORE_INDEX].max()) if (t != IGNORE_INDEX).any() else 0 for t in targets) + 1
        if self.card.objective == "dense" and self.tokenizers.get(self.modalities[0]) is not None:
            largest = max(largest, int(self.tokenizers[self.modalities[0]].vocab_size))
        return max([largest, *declared])

    def _query_from_hooks(self, config: PerceiverConfig) -> None:
        for modality in self.modalities:
            query = self.pm.hook.gperc_output_array(modality=modality, options=self.options[modality],
                                                    output_dim=int(config.output_dim))
            if query is not None:
                if not isinstance(query, torch.Tensor) or query.dim() != 2 or query.shape[1] != config.output_dim:
                    raise PluginError(f"modality {modality!r}: gperc_output_array must return a float tensor "
                                      f"[o, {config.output_dim}], got {getattr(query, 'shape', type(query))}")
                self.query = query.float()
                return

    # ----------------------------------------------------------------- model, records, prediction
    def build_model(self) -> torch.nn.Module:
        """Return a fresh model for the task (a `Perceiver`, or a `ModalityFusion` for multimodal tasks)."""
        from gperc_core.model.fusion import model_for_config

        if self.config is None:
            self.infer_config()
        return model_for_config(self.config)

    def record(self) -> dict[str, Any]:
        """Return what a run folder's ``task.json`` stores: enough to rebuild this task."""
        return {"task": self.name, "card": self.card.to_dict(), "overrides": self.overrides,
                "class_names": self.class_names, "training": self.training.to_dict(),
                "plugins": sorted({self.pm.dataset(d).plugin or "" for d in self.datasets()})}

    def write_record(self, run_dir: str | Path) -> Path:
        """Write ``task.json`` into ``run_dir`` atomically; returns its path."""
        from gperc_core.io.checkpoint import atomic_write_json
        from gperc_core.io.runs import TASK_FILE

        return atomic_write_json(Path(run_dir) / TASK_FILE, self.record())

    @classmethod
    def from_run(cls, run_dir: str | Path, pm: Any = None, overrides: Mapping[str, Any] | None = None) -> "Task":
        """Rebuild the task of a run folder with the run's saved model config (for eval and predict)."""
        from gperc_core.io.checkpoint import read_config
        from gperc_core.io.runs import latest_checkpoint, read_task_file

        record = read_task_file(run_dir)
        card = validate_card(record["card"], source=f"{Path(run_dir) / 'task.json'}")
        pm = _pm(pm)
        _require_modalities(card, pm)
        merged = merge_overrides(record.get("overrides", {}), overrides or {})
        source = Path(run_dir) if (Path(run_dir) / "config.json").is_file() else latest_checkpoint(run_dir)
        if source is None:
            from gperc_core.errors import CheckpointError

            raise CheckpointError(f"run folder {str(run_dir)!r}: expected a trained model (config.json) or a "
                                  f"checkpoint, found neither")
        task = cls(card, pm, merged, config=read_config(source))
        task.class_names = record.get("class_names")
        return task

    def encode(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Turn raw samples (dicts modality -> raw sample) into a model batch with the task's config."""
        if self.config is None:
            self.infer_config()
        collated = {m: self.convert(m, [s[m] for s in samples], None) for m in self.modalities}
        data = self._to_task_data(collated)
        return data.batch(torch.arange(len(samples)), trim=False)

    def read_file(self, modality: str, path: str | Path) -> Any:
        """Read one file of ``modality`` into a raw sample with its plugin's ``ModalitySpec.read_file``."""
        spec = self.pm.modality(modality)
        reader = getattr(spec, "read_file", None)
        if reader is None:
            raise PluginError(f"modality {modality!r}: its plugin {spec.plugin!r} does not read files "
                              f"(ModalitySpec.read_file is None), so 'gperc predict' cannot take them")
        if not Path(path).is_file():
            raise InputError(f"input {str(path)!r}: expected a {modality} file, found none")
        return reader(str(path))

    def __repr__(self) -> str:
        return f"Task({self.name!r}, modalities={self.modalities}, config={'inferred' if self.config else 'pending'})"


def _build_config(make: Any, values: dict[str, Any]) -> PerceiverConfig:
    try:
        return make(values)
    except ConfigError as exc:
        raise ConfigError(f"model: {exc}") from exc


def _fused(values: dict[str, Any], per_modality: dict[str, dict[str, Any]], fusion: dict[str, Any]
           ) -> PerceiverConfig:
    from gperc_core.model.fusion import fused_config

    return fused_config(values, per_modality, fusion.get("dim"), fusion.get("modality_dropout", 0.0))


def merge_overrides(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source in (old, new):
        for key, value in source.items():
            if key in _SECTIONS and isinstance(value, Mapping):
                for sub, v in value.items():
                    if key == "options" and isinstance(v, Mapping):
                        for name, x in v.items():
                            merged[f"options.{sub}.{name}"] = x
                    else:
                        merged[f"{key}.{sub}"] = v
            else:
                merged[key] = value
    return merged


def create_task(name: str, pm: Any = None, card: TaskCard | None = None, **overrides: Any) -> Task:
    """Return the task ``name`` ready to train: data converted, model config inferred.

    ``overrides`` are dotted keys (pass them as ``**{"model.latent_dim": 64}``), plain
    `PerceiverConfig` / `TrainingConfig` field names (``latent_dim=64``, ``epochs=2``) or section
    dicts (``model={"latent_dim": 64}``). ``pm`` is the plugin manager (default: the environment's);
    ``card`` replaces the registry lookup (resuming a run with its saved card).
    """
    pm = _pm(pm)
    card = card or find_card(name, pm)
    _require_modalities(card, pm)
    task = Task(card, pm, overrides)
    task.infer_config()
    return task


def describe_tasks(pattern: str = "*", pm: Any = None) -> list[dict[str, Any]]:
    """Return one dict per task matching ``pattern``: the card, whether its modalities are installed,
    and the install line when they are not (for ``gperc tasks``)."""
    pm = _pm(pm)
    cards = load_registry(pm)
    installed = set(pm.modalities)
    out = []
    for name in sorted(cards):
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        card = cards[name]
        missing = [m for m in card.modalities if m not in installed]
        out.append({**card.to_dict(), "source": card.source, "plugin": card.plugin, "installed": not missing,
                    "install": " && ".join(sorted({install_hint(m) for m in missing})) or None})
    return out


__all__ = ["Task", "TaskData", "create_task", "list_tasks", "find_card", "describe_tasks", "pair_by_target",
           "parse_value", "parse_assignments", "normalise_overrides", "merge_overrides"]
