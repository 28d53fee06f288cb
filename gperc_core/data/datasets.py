"""A task's data: raw splits from the plugins, tokenizers, conversion through the hooks, split caching,
pairing, and `TaskData` (one split as tensors, batched by slicing).

`TaskDatasets` loads each dataset split once through its plugin's ``DatasetSpec.load`` (with the
resolved options), builds each modality's tokenizer (``gperc_tokenizer`` with the training corpus),
converts every sample with ``gperc_input_array(modality, sample, options, tokenizer)`` and collates
each split once (``gperc_collator`` or the core's `Collator`). Multimodal tasks either read several
modalities from one dataset or pair single-modality datasets by target (`pair_by_target`).

`TaskDatasets.converted` gives a split's converted samples per modality as map-style sequences of
`InputArray` (`gperc_core.data.cache.ConvertedSamples`): read from the on-disk cache of converted
samples when the conversion can be fingerprinted (a whole split's entry, or one of just the rows a
``max_*_samples`` subset needs), built there once otherwise (in parallel processes); converted in
memory when caching is off or a plugin has no version. `collated` collates them for the in-RAM path.

Position features: a plugin that declares a `PositionGrid` on its arrays carries none in them. When
the model computes them (``input_pos_enc="fourier"`` over that grid, see
`gperc_core.data.inference`), the data stays as is; otherwise (fused multimodal models, and runs
saved before the grid existed, whose ``input_dim`` includes the features) `TaskData.batch` appends
the same features, kept once per split, to each batch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.config.training import TrainingConfig
from gperc_core.data.cache import ConvertedSamples, InMemorySamples, progress_bar
from gperc_core.data.cards import TaskCard
from gperc_core.data.registry import install_hint, modality_unavailable
from gperc_core.errors import ConfigError, GpercError, InputError, PluginError, TaskError
from gperc_core.model.position import fourier_features
from gperc_core.model.sentinels import IGNORE_INDEX
from gperc_core.plugins.manager import plugin_failure
from gperc_core.plugins.specs import InputArray, PositionGrid


@dataclass
class TaskData:
    """One split of a task converted once into tensors; `batch` slices it.

    ``inputs`` / ``masks``: modality -> ``[N, m, c]`` (or ``[N, m]`` ids) / ``[N, m]`` bool or ``None``;
    ``output``: per-sample query arrays ``[N, o, e]`` or ``None``; ``query``: a fixed ``[o, e]`` query
    array shared by every sample or ``None``; ``target``: ``[N]`` or ``[N, o]`` long; ``positions``:
    modality -> ``[m, f]`` position features `batch` appends to every sample's channels (only where
    the model does not compute them).
    """

    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor | None]
    target: torch.Tensor | None
    output: torch.Tensor | None = None
    query: torch.Tensor | None = None
    fused: bool = False
    trimmable: bool = True
    positions: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def _input(self, modality: str, idx: torch.Tensor, length: int | None = None) -> torch.Tensor:
        x = self.inputs[modality][idx]
        if length is not None:
            x = x[:, :length]
        feats = self.positions.get(modality)
        if feats is not None:
            feats = feats[: x.shape[1]].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
            x = torch.cat([x, feats], dim=-1)
        return x

    def batch(self, idx: torch.Tensor, trim: bool = True) -> dict[str, Any]:
        """Return the batch of samples ``idx``: the model's inputs and ``target``, all tensor slices.

        With ``trim`` a single-modality batch is cut to its longest real element (less padding).
        """
        b = int(idx.shape[0])
        if self.fused:
            x: Any = {m: self._input(m, idx) for m in self.inputs}
            masks = {m: (k[idx] if k is not None else None) for m, k in self.masks.items()}
            mask: Any = masks if any(v is not None for v in masks.values()) else None
        else:
            modality = next(iter(self.inputs))
            mask = self.masks[modality][idx] if self.masks[modality] is not None else None
            length = None
            if trim and self.trimmable and mask is not None:
                length = int(mask.any(0).nonzero().max()) + 1
                mask = mask[:, :length]
            x = self._input(modality, idx, length)
        if self.output is not None:
            output = self.output[idx]
        elif self.query is not None:
            output = self.query.unsqueeze(0).expand(b, -1, -1)
        else:
            output = None
        target = self.target[idx] if self.target is not None else None
        return {"input_array": x, "attention_mask": mask, "output_array": output, "target": target}


@dataclass
class SplitSamples:
    """One split's converted samples: ``arrays`` modality -> map-style sequence of `InputArray` (a
    list, an Arrow-backed or a lazily converting sequence: anything with ``len`` and ``[]``), and
    ``rows`` modality -> ``[N]`` long: sample ``i`` of the split is ``arrays[m][rows[m][i]]``."""

    arrays: dict[str, Any]
    rows: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return int(next(iter(self.rows.values())).shape[0])


class LazyArrays:
    """A map-style sequence converting raw sample ``i`` of a split on access (nothing is kept): for raw
    datasets that must not be materialised (``lazy = True``), e.g. larger than memory."""

    def __init__(self, data: "TaskDatasets", modality: str, raw: Any, split: str) -> None:
        self.data, self.modality, self.raw, self.split = data, modality, raw, split

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int) -> InputArray:
        sample = self.raw[int(i)]
        return self.data.convert_sample(self.modality, sample[self.modality], sample.get("target"),
                                     f"split {self.split!r}, sample {int(i)}")


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


def pad_axis1(t: torch.Tensor | None, length: int, value: Any) -> torch.Tensor | None:
    """Return ``t`` padded with ``value`` along axis 1 to ``length`` (``None`` stays ``None``); longer
    is an `InputError`."""
    if t is None or t.shape[1] == length:
        return t
    if t.shape[1] > length:
        raise InputError(f"input_array: expected at most {length} elements per sample (the model's input_len), "
                         f"got {t.shape[1]}")
    pad = [0, 0] * (t.dim() - 2) + [0, length - t.shape[1]]
    return F.pad(t, pad, value=value)


def model_adds_positions(config: PerceiverConfig, grid: PositionGrid, modality: str) -> bool:
    """Return True when the single-modality model computes ``grid``'s Fourier features itself
    (``input_pos_enc="fourier"`` over the same grid); a Fourier config over another grid is a
    `ConfigError` (the features would not match the plugin's)."""
    if config.get("fusion") or config.input_pos_enc != "fourier":
        return False
    res = tuple(float(r) for r in config.fourier_max_resolution) if config.fourier_max_resolution else None
    want = tuple(float(r) for r in grid.max_resolution) if grid.max_resolution else None
    if (tuple(config.input_shape), int(config.fourier_num_bands), res) != (tuple(grid.shape), grid.num_bands, want):
        raise ConfigError(f"model.input_pos_shape / fourier_num_bands / fourier_max_resolution: expected "
                          f"{list(grid.shape)} / {grid.num_bands} / {want} (the {modality} position grid), got "
                          f"{list(config.input_shape)} / {config.fourier_num_bands} / {res}")
    return True


def plugin_label(pm: Any, plugin: str | None) -> str:
    """``plugin 'name' (distribution version)`` of ``plugin`` in ``pm`` (for messages)."""
    label = getattr(pm, "label", None)
    return label(plugin) if label is not None else f"plugin {plugin!r}"


def check_input_len(x: torch.Tensor, mask: torch.Tensor | None, config: PerceiverConfig, modality: str,
                    where: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return ``x`` / ``mask`` cut to the model's ``input_len`` when only padding lies beyond it; a sample
    with more real elements (or a token id beyond ``input_num_tokens``) is an `InputError` naming the
    setting to train with (``model.input_len`` / ``model.input_num_tokens``)."""
    limit = int(config.input_len)
    if x.shape[1] > limit:
        lengths = mask.sum(1) if mask is not None else torch.full((x.shape[0],), x.shape[1])
        longest = int(lengths.max())
        if longest > limit:
            raise InputError(f"{where}: sample {int(lengths.argmax())} of modality {modality!r} has {longest} "
                             f"elements, more than the model's input_len {limit} (inferred from the training "
                             f"split); train with --set model.input_len={longest} (or more) to take it")
        x, mask = x[:, :limit], (mask[:, :limit] if mask is not None else None)
    vocab = config.get("input_num_tokens")
    if config.get("input_type") == "tokens" and vocab and x.numel() and int(x.max()) >= int(vocab):
        raise InputError(f"{where}: modality {modality!r} has token id {int(x.max())}, beyond the model's "
                         f"input_num_tokens {vocab} (inferred from the training split); train with --set "
                         f"model.input_num_tokens={int(x.max()) + 1} (or more)")
    return x, mask


def held_out(n: int, fraction: float, seed: int, labels: Sequence[int] | None = None,
             where: str = "validation") -> dict[str, torch.Tensor]:
    """Split ``n`` samples into ``{"train": positions, "validation": positions}`` (sorted long tensors,
    disjoint, together ``0..n-1``): ``round(fraction * n_c)`` of each class ``c`` of ``labels`` (at
    least one of a class with two samples or more), or ``round(fraction * n)`` of all (at least one)
    when ``labels`` is ``None``, drawn by a permutation seeded with ``seed``; at least one sample
    whenever ``n >= 2``. A split that leaves either
    part empty is a `TaskError` naming ``where``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    if labels is None:
        take = order[: max(1, int(round(fraction * n))) if n >= 2 else 0]
    else:
        labels_t = torch.as_tensor(list(labels), dtype=torch.long)[order]
        picked = []
        for c in torch.unique(labels_t).tolist():
            members = order[labels_t == c]
            k = int(round(fraction * len(members)))
            if k == 0 and len(members) >= 2:
                k = 1
            picked.append(members[:k])
        take = torch.cat(picked) if picked else order[:0]
        if len(take) == 0 and n >= 2:  # every class a single sample: hold one out all the same
            take = order[:1]
    if len(take) == 0 or len(take) == n:
        raise TaskError(f"{where}.fraction: expected a fraction that leaves samples in both the training and "
                        f"the validation part of the {n} training samples, got {fraction!r} "
                        f"({len(take)} held out); set another --set validation.fraction or a validation.split")
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[take] = True
    return {"train": (~chosen).nonzero().flatten(), "validation": chosen.nonzero().flatten()}


class _LazyCorpus:
    """An iterable over the training texts that loads the split only when iterated (so a tokenizer
    hook that ignores its corpus, e.g. every non-text plugin, never loads the raw split)."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def __iter__(self) -> Any:
        return iter(self.make())


class TaskDatasets:
    """The data side of a task: raw splits, tokenizers, converted and collated splits (all cached).

    ``card`` is the `TaskCard`, ``pm`` the plugin manager, ``options`` modality -> resolved options,
    ``training`` the `TrainingConfig` (its ``max_train_samples`` / ``max_eval_samples`` subsample).
    ``class_names`` is set from the first loaded split that names its classes.
    """

    def __init__(self, card: TaskCard, pm: Any, options: Mapping[str, dict[str, Any]],
                 training: TrainingConfig) -> None:
        self.card = card
        self.pm = pm
        self.options = options
        self.training = training
        self.tokenizers: dict[str, Any] = {}
        self.class_names: list[str] | None = None
        self._raw: dict[tuple[str, str], Any] = {}
        self._collated: dict[str, dict[str, dict[str, Any]]] = {}
        self._converted: dict[str, dict[str, ConvertedSamples]] = {}
        self._entries: dict[tuple[str, str, str, str], ConvertedSamples] = {}
        self.num_proc: int | None = None  # conversion processes (None: GPERC_NUM_PROC, else min(4, CPUs))
        self._samples: dict[str, SplitSamples] = {}
        self._holdout: dict[str, dict[str, torch.Tensor]] = {}  # dataset -> its held-out parts
        self._union: dict[tuple[Any, ...], ConvertedSamples] = {}  # the rows both training parts read

    # ----------------------------------------------------------------- splits and the held-out part
    def source_split(self, split: str, dataset: str | None = None) -> str:
        """The split of ``dataset`` (default: the task's first) that task split ``split`` reads: for the
        held-out validation split the dataset's own split named in ``validation.splits``, else the
        training split; else ``split`` itself."""
        card = self.card
        if card.holds_out_validation and split == card.validation_split:
            dataset = dataset if dataset is not None else card.dataset_for(card.modalities[0])
            return card.validation_sources.get(dataset, card.train_split)
        return split

    def shape_splits(self) -> list[str]:
        """The task splits the model's shapes are inferred from: the training split, with its held-out
        validation part (the whole dataset training split, plus the own validation split of a dataset
        named in ``validation.splits``; the test split never shapes the model)."""
        card = self.card
        return [card.train_split, card.validation_split] if card.holds_out_validation else [card.train_split]

    def _part(self, split: str) -> str | None:
        """``"train"`` / ``"validation"`` when task split ``split`` is a part of a held-out training split."""
        card = self.card
        if not card.holds_out_validation:
            return None
        if split == card.validation_split:
            return "validation"
        return "train" if split == card.train_split else None

    def _split_labels(self, dataset: str) -> list[Any] | None:
        """The per-sample class of each sample of ``dataset``'s training split, or ``None`` when the
        targets are not per-sample classes (dense targets): stratification labels."""
        labels = list(self._targets(dataset, self.card.train_split))
        if all(isinstance(y, (int, bool)) or (hasattr(y, "ndim") and getattr(y, "ndim") == 0) for y in labels):
            return [int(y) for y in labels]
        return None

    def _targets(self, dataset: str, split: str) -> Sequence[Any]:
        """The targets of ``dataset``'s ``split``: the cached whole-split entry's target column (no raw
        load), else the raw split's ``targets`` attribute, else each raw sample's ``target``."""
        entry = next((e for (d, s, _, sel), e in self._entries.items() if (d, s, sel) == (dataset, split, "all")), None)
        table = getattr(entry, "table", None) if entry is not None else None
        if table is not None and "target_kind" in table.column_names:
            kinds = set(table.column("target_kind").to_pylist())
            if kinds <= {"int"}:
                return table.column("target_int").to_pylist()
        raw = self.raw_split(dataset, split)
        known = getattr(raw, "targets", None)
        if known is not None and len(known) == len(raw):
            return [y.item() if hasattr(y, "item") and getattr(y, "ndim", 1) == 0 else y for y in known]
        return [raw[i]["target"] for i in range(len(raw))]

    def holdout(self, dataset: str) -> dict[str, torch.Tensor]:
        """Split ``dataset``'s training split into ``{"train": rows, "validation": rows}`` (sorted):
        `held_out` with the card's validation fraction and seed, stratified by label when the labels
        are per-sample classes. Each dataset of a paired task is held out on its own, before pairing,
        so no sample of the validation part is paired into the training part."""
        if dataset not in self._holdout:
            card = self.card
            n = self._split_len(dataset, card.train_split, card.datasets()[dataset])
            self._holdout[dataset] = held_out(n, card.validation_fraction, card.validation_seed,
                                              self._split_labels(dataset), where=f"task {card.name!r}: validation")
        return self._holdout[dataset]

    def raw_split(self, dataset: str, split: str) -> Any:
        """Return (cached) the raw samples of ``dataset``'s ``split`` from its plugin's ``load``."""
        key = (dataset, split)
        if key not in self._raw:
            spec = self.pm.dataset(dataset)
            if split not in spec.splits:
                raise TaskError(f"{self.card.source}: split {split!r}: dataset {dataset!r} has splits "
                                f"{list(spec.splits)}")
            options: dict[str, Any] = {}
            for modality in self.card.datasets()[dataset]:
                options.update(self.options[modality])
            try:
                self._raw[key] = spec.load(split, options)
            except (FileNotFoundError, OSError) as exc:
                hint = f"; {spec.install_hint}" if spec.install_hint else ""
                raise TaskError(f"dataset {dataset!r} ({split}): data not available ({exc}){hint}") from exc
            except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
                raise plugin_failure(f"{plugin_label(self.pm, spec.plugin)} raised in DatasetSpec.load (dataset "
                                     f"{dataset!r}, split {split!r}): {type(exc).__name__}: {exc}", exc) from exc
            if self.class_names is None and getattr(self._raw[key], "classes", None) is not None:
                self.class_names = [str(c) for c in self._raw[key].classes]
        return self._raw[key]

    def tokenizer(self, modality: str) -> Any:
        """Return (built once) ``modality``'s tokenizer from ``gperc_tokenizer`` with the training
        corpus, or ``None`` when its plugin has none. The training split is only loaded when the hook
        reads the corpus."""
        if modality not in self.tokenizers:
            def corpus() -> Any:
                train = self.raw_split(self.card.dataset_for(modality), self.card.train_split)
                return (train[i][modality] for i in range(len(train)))

            self.tokenizers[modality], _ = self.pm.call_firstresult(
                "gperc_tokenizer", f"split {self.card.train_split!r}", modality=modality,
                options=self.options[modality], corpus=_LazyCorpus(corpus))
        return self.tokenizers[modality]

    def convert_sample(self, modality: str, sample: Any, target: Any, where: str) -> InputArray:
        """Return ``gperc_input_array``'s `InputArray` for one raw sample of ``modality`` (its
        ``target`` filled in from ``target`` when the plugin left it None); anything but an
        `InputArray` holding a tensor is a `PluginError` naming the plugin and ``where``."""
        array, plugin = self.pm.call_firstresult("gperc_input_array", where, modality=modality, sample=sample,
                                                 options=self.options[modality], tokenizer=self.tokenizer(modality))
        if array is None:
            raise PluginError(self._no_answer(modality, "gperc_input_array", "converts its samples"))
        if not isinstance(array, InputArray) or not isinstance(array.array, torch.Tensor):
            got = type(array).__name__ if not isinstance(array, InputArray) else \
                f"an InputArray whose array is a {type(array.array).__name__}"
            raise PluginError(f"{plugin_label(self.pm, plugin)}: gperc_input_array (modality {modality!r}, "
                              f"{where}): expected an InputArray holding a torch.Tensor, got {got}")
        if array.target is None and target is not None:
            array = replace(array, target=target)
        return array

    def _one_grid(self, modality: str, grids: set[Any]) -> None:
        """Raise a `PluginError` unless ``grids`` (the samples' position grids) holds one value."""
        if len(grids) > 1:
            spec = self.pm.modalities.get(modality)
            maker = plugin_label(self.pm, spec.plugin) if spec is not None else f"modality {modality!r}"
            raise PluginError(f"{maker}: modality {modality!r}: expected every sample to declare the same position "
                              f"grid (InputArray.position), got {len(grids)} different ones, e.g. "
                              f"{sorted(map(str, grids))[:2]}; give the samples one shape (e.g. options image_shape)")

    def convert_samples(self, modality: str, samples: Sequence[Any], targets: Sequence[Any] | None, *,
                        split: str | None = None, indices: Sequence[int] | None = None,
                        desc: str | None = None) -> ConvertedSamples:
        """Convert raw samples of ``modality`` in this process, in memory (no cache): an
        `InMemorySamples` sequence of `InputArray`. ``split`` / ``indices`` (the samples' indices in
        the split) only name a failing sample in errors."""
        place = f"split {split!r}" if split else "input"
        arrays = []
        bar = progress_bar(len(samples), desc) if desc else None
        for i, sample in enumerate(samples):
            at = f"{place}, sample {indices[i] if indices is not None else i}"
            arrays.append(self.convert_sample(modality, sample, targets[i] if targets is not None else None, at))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        grids = {a.position for a in arrays}
        self._one_grid(modality, grids)
        return InMemorySamples(arrays, next(iter(grids)) if grids else None)

    def collator(self, modality: str, sentinels: bool = False, where: str = "input") -> Any:
        """Return ``modality``'s batch collator: its plugin's ``gperc_collator``, else the core `Collator`."""
        collator, _ = self.pm.call_firstresult("gperc_collator", where, modality=modality,
                                               options=self.options[modality], sentinels=sentinels,
                                               tokenizer=self.tokenizer(modality))
        if collator is None:
            from gperc_core.data.collate import Collator

            collator = Collator(sentinels=sentinels)
        return collator

    def collate_arrays(self, modality: str, arrays: Sequence[InputArray], collator: Any = None,
                       where: str = "input") -> dict[str, Any]:
        """Collate ``arrays`` of ``modality`` into one batch dict (input, mask, output, target), plus
        ``position``: the `PositionGrid` every sample declares, or ``None``. ``collator`` defaults to
        `collator`; a plugin's failure is a `PluginError` naming it."""
        grids = {a.position for a in arrays}
        self._one_grid(modality, grids)
        collator = collator if collator is not None else self.collator(modality, where=where)
        try:
            batch = collator(list(arrays))
        except Exception as exc:  # noqa: BLE001 - a plugin's collator, or the core's on a plugin's arrays
            spec = self.pm.modalities.get(modality)
            maker = plugin_label(self.pm, spec.plugin) if spec is not None else f"modality {modality!r}"
            raise plugin_failure(f"{maker}: its {modality} arrays ({where}) could not be collated by "
                                 f"{type(collator).__name__}: {type(exc).__name__}: {exc}", exc) from exc
        return {**batch, "position": next(iter(grids)) if grids else None}

    def collate(self, modality: str, samples: ConvertedSamples, where: str = "input") -> dict[str, Any]:
        """Collate converted samples of ``modality`` into one batch dict (`collate_arrays`), with
        ``position`` the samples' `PositionGrid`."""
        return {**self.collate_arrays(modality, samples.rows(range(len(samples))), where=where),
                "position": samples.position}

    def samples(self, split: str) -> "SplitSamples":
        """Return the converted samples of ``split`` the training loader reads (`gperc_core.data.loader`):
        per modality a map-style sequence of `InputArray` — the cached or in-memory `converted`
        sequences, or a lazily converting `LazyArrays` when the raw split says ``lazy = True`` (it
        must not be materialised) — and the row of each sample in it."""
        if split in self._samples:
            return self._samples[split]
        datasets = self.card.datasets()
        source = self.source_split(split)
        lazy = {d: self.raw_split(d, source) for d in datasets
                if len(datasets) == 1 and getattr(self.raw_split(d, source), "lazy", False)}
        if lazy:
            (dataset, raw), = lazy.items()
            rows = self.split_index(split)[dataset]
            arrays = {m: LazyArrays(self, m, raw, source) for m in datasets[dataset]}
            out = SplitSamples(arrays=arrays, rows={m: rows for m in arrays})
        else:
            converted = self.converted(split)
            out = SplitSamples(arrays=dict(converted), rows={m: torch.arange(len(s)) for m, s in converted.items()})
        self._samples[split] = out
        return out

    def convert(self, modality: str, samples: Sequence[Any], targets: Sequence[Any] | None, *,
                split: str | None = None, indices: Sequence[int] | None = None) -> dict[str, Any]:
        """Turn raw samples of ``modality`` into one collated batch dict (input, mask, output, target),
        plus ``position``: the `PositionGrid` every sample declares, or ``None`` (no cache: inputs of
        ``predict``).

        ``split`` and ``indices`` (the samples' indices in the split) only name the failing sample
        when plugin code raises (a `PluginHookError` naming the plugin, the hook, split and index).
        """
        converted = self.convert_samples(modality, samples, targets, split=split, indices=indices)
        return self.collate(modality, converted, f"split {split!r}" if split else "input")

    def _no_answer(self, modality: str, hook: str, what: str) -> str:
        """Why no plugin answered ``hook`` for ``modality``: its own plugin is installed but returned
        ``None``, its plugin is installed but broken, or it is not installed (the pip line)."""
        spec = self.pm.modalities.get(modality)
        if spec is not None:
            return (f"{plugin_label(self.pm, spec.plugin)} is installed and registers modality {modality!r}, but "
                    f"its {hook} returned None for it; a plugin's hooks must answer for its own modalities "
                    f"(compare the 'modality' argument with {modality!r})")
        broken = modality_unavailable(self.pm, modality)
        return broken or (f"modality {modality!r}: no installed plugin {what} ({hook} returned None); "
                          f"{install_hint(modality)}")

    def collated(self, split: str) -> dict[str, dict[str, Any]]:
        """Return modality -> collated batch dict of the whole split (paired and subsampled), cached
        in memory (the in-RAM path: model inference and evaluation of small splits)."""
        if split not in self._collated:
            self._collated[split] = {m: self.collate(m, samples, f"split {split!r}")
                                     for m, samples in self.converted(split).items()}
        return self._collated[split]

    def converted(self, split: str) -> dict[str, ConvertedSamples]:
        """Return modality -> the split's converted samples (paired and subsampled): map-style
        sequences of `InputArray`, read from the on-disk cache (`gperc_core.data.cache`) when the
        conversion can be fingerprinted, built there once otherwise. Kept per split; ``split`` is a
        task split (`split_index`)."""
        if split in self._converted:
            return self._converted[split]
        index = self.split_index(split)
        part = self._part(split)
        out: dict[str, ConvertedSamples] = {}
        for dataset, modalities in self.card.datasets().items():
            source = self.source_split(split, dataset)
            wanted = index[dataset]
            cached = self._cache_key(dataset, source, modalities[0], "all") is not None
            other = {"train": self.card.validation_split, "validation": self.card.train_split}.get(part or "")
            if other is not None and cached and self.source_split(other, dataset) == source:
                # both parts of the training split: one cache entry of their rows
                wanted = torch.cat([wanted, self.split_index(other)[dataset]])
            unique, inverse = torch.unique(wanted, return_inverse=True)
            inverse = inverse[: len(index[dataset])]
            rows = [int(i) for i in unique]
            for modality in modalities:
                key = (dataset, source, modality, tuple(rows))
                if key not in self._union:
                    self._union[key] = self._converted_rows(dataset, source, modality, rows)
                samples = self._union[key]
                identity = len(rows) == len(inverse) and bool((inverse == torch.arange(len(inverse))).all())
                out[modality] = samples if identity else samples.select(inverse.tolist())
        self._converted[split] = out
        return out

    def split_index(self, split: str) -> dict[str, torch.Tensor]:
        """Return dataset -> the rows of its dataset split that task split ``split`` reads, in order:
        the training or validation part of each dataset when the validation split is held out (each
        dataset held out on its own; a dataset named in ``validation.splits`` reads its own split),
        paired by target for multimodal tasks, then cut to ``max_train_samples`` (training) /
        ``max_eval_samples`` (validation and test) by a fixed random subset."""
        datasets = self.card.datasets()
        limit = self.training.max_train_samples if split == self.card.train_split else self.training.max_eval_samples
        part = self._part(split)
        sources = {d: self.source_split(split, d) for d in datasets}
        rows: dict[str, torch.Tensor] = {}
        for dataset, modalities in datasets.items():
            if part is None or dataset in self.card.validation_sources:
                rows[dataset] = torch.arange(self._split_len(dataset, sources[dataset], modalities))
            else:
                rows[dataset] = self.holdout(dataset)[part]
        if len(datasets) == 1:
            index = rows
        else:
            every = {d: self._targets(d, sources[d]) for d in datasets}
            pairs = pair_by_target({d: [every[d][int(i)] for i in r] for d, r in rows.items()})
            index = {d: rows[d][pairs[d]] for d in datasets}
        n = len(next(iter(index.values())))
        if n == 0:
            raise TaskError(f"task {self.card.name!r}: split {self.source_split(split)!r} has no samples"
                            + (f" ({part} part)" if part else ""))
        if limit is not None and limit < n:
            keep = torch.randperm(n, generator=torch.Generator().manual_seed(1234))[:limit].sort().values
            index = {d: i[keep] for d, i in index.items()}
        return index

    def _cache_key(self, dataset: str, split: str, modality: str, selection: str) -> tuple[str, str] | None:
        """The cache entry (name, fingerprint) of converting ``selection`` of ``dataset``'s ``split``
        for ``modality``, or None when the conversion is not cacheable (cache off, a plugin registered
        in-process, a tokenizer without identity)."""
        from gperc_core.data import cache

        if cache.cache_root() is None:
            return None
        hook = getattr(self.pm.hook, "gperc_input_array", None)
        converters = [impl.plugin_name for impl in hook.get_hookimpls()] if hook is not None else []
        spec = self.pm.dataset(dataset)
        plugins = cache.plugin_versions(self.pm, [*converters, spec.plugin])
        if plugins is None:
            return None
        options = dict(self.options[modality])
        if spec.volatile:  # the user's files may have changed since the entry was built
            source = getattr(self.raw_split(dataset, split), "fingerprint", None)
            if not source:
                return None
            options["<source fingerprint>"] = str(source)
        return cache.entry_key(dataset=dataset, split=split, modality=modality, options=options,
                               tokenizer=cache.tokenizer_identity(self.tokenizer(modality)), plugins=plugins,
                               selection=selection)

    def _split_len(self, dataset: str, split: str, modalities: Sequence[str]) -> int:
        """The number of samples of ``dataset``'s ``split``: from a cached whole-split entry when there
        is one (the raw split is then never loaded), else from the raw split."""
        from gperc_core.data import cache

        for modality in modalities:
            key = self._cache_key(dataset, split, modality, "all")
            found = cache.lookup(*key) if key is not None else None
            if found is not None:
                self._entries[(dataset, split, modality, "all")] = found
                return len(found)
        return len(self.raw_split(dataset, split))

    def _converted_rows(self, dataset: str, split: str, modality: str, rows: list[int]) -> ConvertedSamples:
        """The converted samples ``rows`` of ``dataset``'s ``split`` for ``modality``: a view of the
        cached whole split when it exists, else the cached (or now built) entry of these rows, else
        (not cacheable) converted in memory."""
        from gperc_core.data import cache

        whole = self._entries.get((dataset, split, modality, "all"))
        if whole is None:
            key = self._cache_key(dataset, split, modality, "all")
            whole = cache.lookup(*key) if key is not None else None
        if whole is not None:
            return whole if rows == list(range(len(whole))) else whole.select(rows)
        raw = self.raw_split(dataset, split)
        selection = "all" if rows == list(range(len(raw))) else cache.selection_of(rows)
        desc = f"converting {dataset}/{split} ({modality})"
        key = self._cache_key(dataset, split, modality, selection)
        if key is None:
            return self.convert_samples(modality, [raw[i][modality] for i in rows], [raw[i]["target"] for i in rows],
                                        split=split, indices=rows, desc=desc)
        name, fingerprint = key

        def convert_row(k: int) -> InputArray:
            sample = raw[rows[k]]
            return self.convert_sample(modality, sample[modality], sample["target"],
                                       f"split {split!r}, sample {rows[k]}")

        meta = {"dataset": dataset, "split": split, "modality": modality, "selection": selection, "desc": desc,
                "task": self.card.name}
        return cache.get_or_build(name, fingerprint, meta, convert_row, len(rows), num_proc=self.num_proc,
                                  check_grids=lambda grids: self._one_grid(modality, grids))

    def to_task_data(self, collated: Mapping[str, Mapping[str, Any]], config: PerceiverConfig,
                     query: torch.Tensor | None, where: str = "input") -> TaskData:
        """Return the collated arrays as `TaskData` for a model of ``config``: fused modalities padded
        to their ``input_len``, dense targets padded to ``output_len``, and the position features the
        model does not compute (see the module docstring). A single-modality sample longer than the
        model's ``input_len`` is an `InputError` naming ``model.input_len`` (``where``: the split)."""
        spec = config.get("fusion") or {}
        fused = self.card.multimodal
        inputs, masks, positions = {}, {}, {}
        for modality in self.card.modalities:
            x, mask = collated[modality]["input_array"], collated[modality]["attention_mask"]
            grid = collated[modality].get("position")
            feats = None
            if grid is not None and not model_adds_positions(config, grid, modality):
                feats = fourier_features(grid.shape, grid.num_bands, grid.max_resolution)
            if not fused:
                x, mask = check_input_len(x, mask, config, modality, where)
            else:
                length = int(spec[modality]["input_len"])
                if mask is None and x.shape[1] < length:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool)
                x, mask = pad_axis1(x, length, 0), pad_axis1(mask, length, False)
                feats = pad_axis1(feats.unsqueeze(0), length, 0)[0] if feats is not None else None
            inputs[modality], masks[modality] = x, mask
            if feats is not None:
                positions[modality] = feats
        first = collated[self.card.modalities[0]]
        output = next((c["output_array"] for c in collated.values() if c["output_array"] is not None), None)
        target = first["target"]
        dense = self.card.objective == "dense"
        if dense and target is not None and target.dim() == 2:
            target = pad_axis1(target, int(config.output_len) if output is None else output.shape[1], IGNORE_INDEX)
        return TaskData(inputs=inputs, masks=masks, target=target, output=output, query=query, fused=fused,
                        trimmable=not dense and config.decoder_reduction != "eot", positions=positions)


__all__ = ["TaskData", "TaskDatasets", "SplitSamples", "LazyArrays", "pair_by_target", "held_out", "pad_axis1", "model_adds_positions", "plugin_label",
           "check_input_len"]
