"""Tasks by name: ``create_task("image/digits", **overrides)`` builds a ready-to-train `Task`.

`Task` composes one module per job:

- `gperc_core.data.cards`: the card (`TaskCard`, schema validation) and the overrides;
- `gperc_core.data.registry`: finding the card among the installed plugins' and the core's, the
  index of known tasks and the install hints;
- `gperc_core.data.options`: the resolved, checked per-modality options;
- `gperc_core.data.datasets`: raw loading, tokenizers, conversion through the hooks, split caching,
  pairing, `TaskData`;
- `gperc_core.data.inference`: `PerceiverConfig` inference and the fixed query array;
- `gperc_core.data.records`: the run folder's ``task.json`` and `Task.from_run`.

Overrides are dotted keys: ``model.latent_dim=64``, ``training.lr=1e-3``,
``options.image.representation="patches"``, ``fusion.dim=64``; plain `PerceiverConfig` or
`TrainingConfig` field names work too (``latent_dim=64``, ``epochs=3``).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.config.training import TrainingConfig
from gperc_core.data.cards import (TaskCard, apply_split_overrides, merge_overrides, normalise_overrides,
                                   parse_assignments, parse_value)
from gperc_core.data.datasets import TaskData, TaskDatasets, pair_by_target
from gperc_core.data.inference import infer_config, query_array
from gperc_core.data.options import resolve_options
from gperc_core.data.records import read_run, task_record, write_record
from gperc_core.data.registry import (plugin_manager, find_card, install_hints, known_tasks, list_tasks, load_registry,
                                      modality_unavailable, require_modalities, unavailable, withheld_tasks)
from gperc_core.errors import InputError, PluginError


class Task:
    """A task ready to train: its card, options, tokenizers, `PerceiverConfig`, `TrainingConfig`
    and data splits (converted lazily, once, and cached).

    Build it with `create_task`; `Task.from_run` rebuilds the task of a run folder with the run's
    saved model config.
    """

    def __init__(self, card: TaskCard, pm: Any, overrides: Mapping[str, Any] | None = None,
                 config: PerceiverConfig | None = None) -> None:
        self.pm = pm
        self.overrides = normalise_overrides(overrides or {}, card)
        card = apply_split_overrides(card, self.overrides)  # --set validation.* / cross_validation.*
        self.card = card
        self.name = card.name
        self.modalities = list(card.modalities)
        self.fused = card.multimodal
        self.options: dict[str, dict[str, Any]] = resolve_options(card, self.overrides["options"], pm)
        training = TrainingConfig.from_mapping(card.training, where=f"{card.source}: training")
        self.training = TrainingConfig.from_mapping(self.overrides["training"], where="override training",
                                                    base=training)
        self.data = TaskDatasets(card, pm, self.options, self.training)
        self._class_names: list[str] | None = None
        self._sample_queries: bool | None = None
        self._splits: dict[str, TaskData] = {}
        self.config = config
        self.query: torch.Tensor | None = query_array(card, pm, self.options, config) if config is not None else None

    @property
    def class_names(self) -> list[str] | None:
        """The class names (a run's recorded ones, else the first loaded split's), or ``None``."""
        return self._class_names if self._class_names is not None else self.data.class_names

    @class_names.setter
    def class_names(self, names: list[str] | None) -> None:
        self._class_names = names

    @property
    def sample_queries(self) -> bool:
        """True when the task's samples bring their own decoder queries (``output_array``: graph nodes,
        pixel queries) instead of reading out with the model's; a run's record says it, else the
        training split is read."""
        if self._sample_queries is None:
            collated = self.data.collated(self.card.train_split)
            self._sample_queries = any(c["output_array"] is not None for c in collated.values())
        return self._sample_queries

    @property
    def tokenizers(self) -> dict[str, Any]:
        """Modality -> tokenizer (or ``None``) for the modalities whose tokenizer was built."""
        return self.data.tokenizers

    @property
    def split_names(self) -> dict[str, str]:
        """The task's splits by role: ``{"train": ..., "validation": ..., "test": ...}`` (the training
        split is the training part, without the held-out validation samples)."""
        return {"train": self.card.train_split, "validation": self.card.validation_split,
                "test": self.card.eval_split}

    def split(self, name: str) -> TaskData:
        """Return split ``name`` as tensors (built on first use, then cached). The card's
        ``train_split`` is its training part and ``validation_split`` its validation split (held out of
        the training split unless the card names the dataset's own: `TaskCard.validation_split`)."""
        if name not in self._splits:
            config = self.infer_config() if self.config is None else self.config
            self._splits[name] = self.data.to_task_data(self.data.collated(name), config, self.query,
                                                        where=f"split {name!r}")
        return self._splits[name]

    def train_loader(self, *, trim: bool = True, fixed_shapes: bool = False, sentinels: bool = False,
                     pin_memory: bool = False) -> Any:
        """Return the training split's `gperc_core.data.loader.TrainLoader` with the task's training
        settings (batch size, seed, workers, length bucketing) and per-epoch transforms on."""
        from gperc_core.data.loader import build_train_loader

        config = self.infer_config() if self.config is None else self.config
        t = self.training
        return build_train_loader(self.data, self.card.train_split, config, self.query, batch_size=t.batch_size,
                                  seed=t.seed, num_workers=t.num_workers, bucketing=t.length_bucketing, trim=trim,
                                  fixed_shapes=fixed_shapes, sentinels=sentinels, pin_memory=pin_memory)

    def infer_config(self) -> PerceiverConfig:
        """Build the `PerceiverConfig` from the training split, the card's [model] and the overrides."""
        self.config, self.query = infer_config(self.data, self.overrides["model"], self.overrides["fusion"])
        self._splits.clear()
        return self.config

    def build_model(self) -> torch.nn.Module:
        """Return a fresh model for the task (a `Perceiver`, or a `ModalityFusion` for multimodal tasks)."""
        from gperc_core.model.build import model_for_config

        return model_for_config(self.infer_config() if self.config is None else self.config)

    def record(self) -> dict[str, Any]:
        """Return what a run folder's ``task.json`` stores: enough to rebuild this task."""
        plugins = {self.pm.dataset(d).plugin or "" for d in self.card.datasets()}
        return task_record(self.name, self.card, self.overrides, self.class_names, self.training.to_dict(),
                           sorted(plugins), self.sample_queries)

    def write_record(self, run_dir: str | Path) -> Path:
        """Write ``task.json`` into ``run_dir`` atomically; returns its path."""
        return write_record(self.record(), run_dir)

    @classmethod
    def from_run(cls, run_dir: str | Path, pm: Any = None, overrides: Mapping[str, Any] | None = None, *,
                 task: str | None = None, resume: bool = False) -> "Task":
        """Rebuild the task of a run folder with the run's saved model config (eval, predict, resume).

        ``overrides`` apply over the recorded ones; ``task`` (optional) must be the recorded task
        name; ``resume`` drops the recorded ``training.max_steps`` unless ``overrides`` set it.
        """
        run = read_run(run_dir, overrides, task=task, resume=resume)
        pm = plugin_manager(pm)
        require_modalities(run.card, pm)
        built = cls(run.card, pm, run.overrides, config=run.config)
        built.class_names = run.class_names
        built._sample_queries = run.sample_queries
        return built

    def encode(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Turn raw samples (dicts modality -> raw sample) into a model batch with the task's config."""
        config = self.infer_config() if self.config is None else self.config
        collated = {m: self.data.convert(m, [s[m] for s in samples], None) for m in self.modalities}
        data = self.data.to_task_data(collated, config, self.query)
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


def create_task(name: str, pm: Any = None, card: TaskCard | None = None, **overrides: Any) -> Task:
    """Return the task ``name`` ready to train: data converted, model config inferred.

    ``overrides`` are dotted keys (pass them as ``**{"model.latent_dim": 64}``), plain
    `PerceiverConfig` / `TrainingConfig` field names (``latent_dim=64``, ``epochs=2``) or section
    dicts (``model={"latent_dim": 64}``). ``pm`` is the plugin manager (default: the environment's);
    ``card`` replaces the registry lookup (resuming a run with its saved card).
    """
    pm = plugin_manager(pm)
    card = card or find_card(name, pm)
    require_modalities(card, pm)
    task = Task(card, pm, overrides)
    task.infer_config()
    return task


def describe_tasks(pattern: str = "*", pm: Any = None) -> list[dict[str, Any]]:
    """Return one dict per task matching ``pattern`` (for ``gperc tasks``): the installed cards, with
    whether their modalities are installed, and the known tasks of the index whose plugin is not
    installed (``installed`` False, ``install`` the ``pip install`` line). A task whose plugin is
    installed but broken has ``installed`` False, ``install`` None and ``unavailable`` saying why
    (``None`` for every other task)."""
    pm = plugin_manager(pm)
    cards = load_registry(pm)
    installed = set(pm.modalities)
    rows: dict[str, dict[str, Any]] = {}
    for name, card in cards.items():
        missing = [m for m in card.modalities if m not in installed]
        broken = next(filter(None, (modality_unavailable(pm, m) for m in missing)), None)
        rows[name] = {**card.to_dict(), "source": card.source, "plugin": card.plugin, "installed": not missing,
                      "install": None if broken else install_hints(missing) or None, "unavailable": broken}
    for name, reason in withheld_tasks(pm).items():
        rows.setdefault(name, {"name": name, "description": "", "modalities": [], "source": "plugin", "plugin": None,
                               "installed": False, "install": None, "unavailable": reason})
    for name, entry in known_tasks().items():
        if name not in rows:
            broken = unavailable(pm, "tasks", name, entry.name)
            rows[name] = {"name": name, "description": f"(ships with the {entry.name!r} plugin)",
                          "modalities": list(entry.modalities), "source": "registry/index.toml",
                          "plugin": entry.name, "installed": False, "install": None if broken else entry.install_hint,
                          "unavailable": broken}
    return [rows[name] for name in sorted(rows) if fnmatch.fnmatchcase(name, pattern)]


__all__ = ["Task", "TaskData", "create_task", "list_tasks", "find_card", "describe_tasks", "pair_by_target",
           "parse_value", "parse_assignments", "normalise_overrides", "merge_overrides"]
