"""Training batches through `torch.utils.data.DataLoader`: workers, shards, length buckets and
per-epoch random transforms over a split's converted samples.

The converted samples of a split (`gperc_core.data.datasets.SplitSamples`: per modality a
map-style sequence of `InputArray`, a list today, Arrow-backed or lazily converted otherwise) are
never assumed to be in memory: a worker reads sample ``i`` when a batch needs it.

- `EpochSampler` is the batch sampler. The global batches of epoch ``e`` are a pure function of
  ``(seed, e)``: a seeded permutation, and with length bucketing (variable-length samples) sorted by
  length inside chunks of `BUCKET_BATCHES` batches, the full batches shuffled, the partial one last.
  Data-parallel replica ``r`` of ``R`` reads only its contiguous share of each global batch, padded
  to a multiple of the pipeline's microbatches with repeats of the batch's first sample whose
  targets are ignored (`gperc_core.model.sentinels.IGNORE_INDEX`), exactly the rows the single
  process would give it. ``set_epoch(e, start)`` skips to batch ``start`` without reading the
  batches before it, so a resumed run continues bit for bit.
- `SampleDataset` returns sample ``i`` of epoch ``e`` (the sampler's items are ``(e, i, real)``);
  in training it applies the plugins' ``gperc_transform`` hook with a generator seeded from
  ``(seed, e, i)`` (`sample_seed`), so augmentation and masking differ every epoch, identically in
  every run, whatever the worker count.
- `BatchAssembler` (the ``collate_fn``) collates each modality with its plugin's ``gperc_collator``
  (else the core `Collator`), with sentinels under pipelines, then makes the model batch
  (`TaskDatasets.to_task_data`: fusion, position features, dense targets), padded to the model's
  ``input_len`` when the strategy needs fixed shapes.
- `TrainLoader` ties them together; `build_train_loader` builds one for a task's split.
"""

from __future__ import annotations

import math
import os
import zlib
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gperc_core.config.env import env_int
from gperc_core.errors import ConfigError
from gperc_core.model.sentinels import (IGNORE_INDEX, mask_sentinel, output_sentinel, resolve_mask,
                                        resolve_output_array)
from gperc_core.plugins.specs import InputArray

__all__ = ["EpochSampler", "SampleDataset", "BatchAssembler", "TrainLoader", "build_train_loader",
           "default_num_workers", "sample_seed", "sample_lengths", "BUCKET_BATCHES", "WORKERS_ENV"]

BUCKET_BATCHES = 50
"""Length bucketing sorts samples by length inside chunks of this many batches."""

WORKERS_ENV = "GPERC_NUM_WORKERS"
"""Environment variable that sets the default worker count (the test suite sets it to 0)."""

_MASK64 = (1 << 63) - 1


def default_num_workers() -> int:
    """The worker count when ``training.num_workers`` is unset: ``$GPERC_NUM_WORKERS``, else
    ``min(2, cpus - 1)`` (no workers on one core; two are enough to hide conversion-free loading)."""
    workers = env_int(WORKERS_ENV, 0)
    if workers is not None:
        return workers
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(2, cpus - 1))


def sample_seed(seed: int, epoch: int, index: int, modality: str = "") -> int:
    """The seed of sample ``index``'s random transform in ``epoch`` (a 63-bit mix of the four)."""
    mixed = (int(seed) * 6364136223846793005 + int(epoch) * 1442695040888963407 + int(index) * 0x9E3779B97F4A7C15
             + zlib.crc32(modality.encode())) & _MASK64
    return (mixed ^ (mixed >> 29)) & _MASK64


def _length(array: InputArray) -> int:
    return int(array.mask.sum()) if array.mask is not None else int(array.array.shape[0])


def sample_lengths(arrays: Mapping[str, Sequence[InputArray]], rows: Mapping[str, torch.Tensor],
                   probe: int = 256) -> torch.Tensor | None:
    """Return each sample's element count (summed over modalities), or ``None`` when the first ``probe``
    samples all have one length (fixed-length data: no bucketing, and no pass over the split). A
    sequence with a ``lengths`` attribute (e.g. an Arrow column) is not read."""
    n = int(next(iter(rows.values())).shape[0])
    first = {m: [_length(arrays[m][int(r)]) for r in rows[m][:probe]] for m in arrays}
    if all(len(set(v)) <= 1 for v in first.values()):
        return None
    total = torch.zeros(n, dtype=torch.long)
    for m, seq in arrays.items():
        known = getattr(seq, "lengths", None)
        per_row = torch.as_tensor(known, dtype=torch.long) if known is not None else \
            torch.tensor([_length(seq[i]) for i in range(len(seq))], dtype=torch.long)
        total += per_row[rows[m]]
    return total


class EpochSampler(Sampler):
    """Batch sampler yielding, per batch, this replica's items ``(epoch, index, real)`` (see the module
    docstring); ``lengths`` (or ``None``) turns on length bucketing."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, lengths: torch.Tensor | None = None) -> None:
        if num_samples <= 0:
            raise ConfigError(f"num_samples: expected a positive number of training samples, got {num_samples}")
        self.num_samples, self.batch_size, self.seed, self.lengths = num_samples, batch_size, seed, lengths
        self.replicas, self.replica, self.row_multiple = 1, 0, 1
        self.epoch, self.start = 0, 0

    def shard(self, replicas: int, replica: int, row_multiple: int = 1) -> None:
        """Read only replica ``replica``'s share (of ``replicas``), padded to a multiple of ``row_multiple``."""
        if not 0 <= replica < replicas:
            raise ConfigError(f"replica: expected an integer in [0, {replicas}), got {replica!r}")
        self.replicas, self.replica, self.row_multiple = int(replicas), int(replica), max(1, int(row_multiple))

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` on."""
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The shuffled sample order of ``epoch``: a pure function of ``(seed, epoch)``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """The global batches (sample indices) of ``epoch``, the partial one last."""
        order, bs = self.order(epoch), self.batch_size
        if self.lengths is not None:
            chunk = bs * BUCKET_BATCHES
            parts = [order[i:i + chunk] for i in range(0, len(order), chunk)]
            order = torch.cat([p[torch.sort(self.lengths[p], stable=True).indices] for p in parts])
        batches = list(order.split(bs))
        if self.lengths is not None:
            full = [b for b in batches if len(b) == bs]
            rest = [b for b in batches if len(b) != bs]
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 7919)
            batches = [full[i] for i in torch.randperm(len(full), generator=generator)] + rest
        return batches

    def share(self, batch: torch.Tensor) -> list[tuple[int, int, bool]]:
        """This replica's items of the global ``batch``: contiguous rows, padded with ignored repeats of
        the batch's first sample (the rows `gperc_core.parallel.shards.replica_share` takes)."""
        n = len(batch)
        per = math.ceil(math.ceil(n / self.replicas) / self.row_multiple) * self.row_multiple
        begin, end = min(n, self.replica * per), min(n, (self.replica + 1) * per)
        rows = [(self.epoch, int(i), True) for i in batch[begin:end]]
        return rows + [(self.epoch, int(batch[0]), False)] * (per - len(rows))

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        for batch in self.batches(self.epoch)[self.start:]:
            yield self.share(batch)


class SampleDataset(Dataset):
    """Sample ``i`` of a split as modality -> `InputArray`, randomly transformed per epoch in training.

    ``samples`` is a `SplitSamples`; ``data`` the task's `TaskDatasets` (plugins, options, tokenizers);
    ``transform`` turns the ``gperc_transform`` hook on; ``seed`` is the run's seed.
    """

    def __init__(self, samples: Any, data: Any, *, transform: bool, seed: int, split: str = "train") -> None:
        self.samples, self.data, self.transform, self.seed, self.split = samples, data, transform, seed, split
        self.modalities = list(samples.arrays)
        self.tokenizers = {m: data.tokenizer(m) for m in self.modalities}  # built here, not in each worker

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, index: int, epoch: int | None = None) -> dict[str, InputArray]:
        """Sample ``index`` (transformed as in ``epoch`` when given and transforms are on)."""
        out = {}
        for m in self.modalities:
            array = self.samples.arrays[m][int(self.samples.rows[m][index])]
            if self.transform and epoch is not None:
                array = self._transformed(m, array, epoch, index)
            out[m] = array
        return out

    def _transformed(self, modality: str, array: InputArray, epoch: int, index: int) -> InputArray:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index, modality))
        result, _ = self.data.pm.call_firstresult(
            "gperc_transform", f"split {self.split!r}, sample {index}, epoch {epoch}", modality=modality,
            array=array, options=self.data.options[modality], tokenizer=self.tokenizers[modality],
            generator=generator, epoch=epoch, index=index)
        return array if result is None else result

    def __getitem__(self, item: tuple[int, int, bool]) -> tuple[dict[str, InputArray], bool]:
        epoch, index, real = item
        return self.sample(index, epoch), real


class BatchAssembler:
    """The ``collate_fn``: items ``(sample, real)`` -> the model batch (see the module docstring).

    ``fixed_shapes`` pads a single-modality batch to ``config.input_len``; ``sentinels`` makes the
    collators emit, and the batch carry, the ``[batch]`` sentinels for an absent mask or output array.
    """

    def __init__(self, data: Any, config: Any, query: torch.Tensor | None, *, trim: bool, fixed_shapes: bool,
                 sentinels: bool, split: str = "train") -> None:
        self.data, self.config, self.query, self.split = data, config, query, split
        self.trim, self.fixed_shapes, self.sentinels = trim, fixed_shapes, sentinels
        self.modalities = list(data.card.modalities)
        where = f"split {split!r}"
        self.collators = {m: data.collator(m, sentinels=sentinels, where=where) for m in self.modalities}

    def __call__(self, items: Sequence[tuple[Mapping[str, InputArray], bool]]) -> dict[str, Any]:
        where = f"split {self.split!r}"
        collated = {}
        for m in self.modalities:
            batch = self.data.collate_arrays(m, [s[m] for s, _ in items], self.collators[m], where=where)
            batch["attention_mask"] = resolve_mask(batch["attention_mask"])
            batch["output_array"] = resolve_output_array(batch["output_array"])
            collated[m] = batch
        data = self.data.to_task_data(collated, self.config, self.query, where=where)
        b = len(items)
        out = data.batch(torch.arange(b), trim=self.trim)
        if self.fixed_shapes and not data.fused:
            out = self._pad_to_input_len(out)
        real = torch.tensor([r for _, r in items], dtype=torch.bool)
        if out["target"] is not None and not bool(real.all()):
            target = out["target"].clone()
            target[~real] = IGNORE_INDEX
            out["target"] = target
        if self.sentinels and not data.fused:
            out["attention_mask"] = mask_sentinel(b) if out["attention_mask"] is None else out["attention_mask"]
            out["output_array"] = output_sentinel(b) if out["output_array"] is None else out["output_array"]
        return out

    def _pad_to_input_len(self, batch: dict[str, Any]) -> dict[str, Any]:
        from gperc_core.data.datasets import pad_axis1

        x, mask = batch["input_array"], batch["attention_mask"]
        length = int(self.config.input_len)
        if x.shape[1] >= length:
            return batch
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool)
        return {**batch, "input_array": pad_axis1(x, length, 0), "attention_mask": pad_axis1(mask, length, False)}


class TrainLoader:
    """A split's training batches: ``epoch(e, start)`` iterates epoch ``e`` from batch ``start`` through
    one `DataLoader` (its workers persist across epochs). ``probe(n)`` is an unsharded batch of the
    first ``n`` samples, untransformed (to set a model up)."""

    def __init__(self, dataset: SampleDataset, sampler: EpochSampler, assembler: BatchAssembler, *,
                 num_workers: int, pin_memory: bool) -> None:
        self.dataset, self.sampler, self.assembler = dataset, sampler, assembler
        self.num_workers = num_workers
        self.loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=assembler, num_workers=num_workers,
                                 pin_memory=pin_memory, persistent_workers=num_workers > 0,
                                 prefetch_factor=4 if num_workers > 0 else None,
                                 generator=torch.Generator().manual_seed(0))  # never draws from the global RNG

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def shard(self, replicas: int, replica: int, row_multiple: int = 1) -> None:
        """See `EpochSampler.shard`."""
        self.sampler.shard(replicas, replica, row_multiple)

    def global_rows(self, step_in_epoch: int) -> int:
        """How many samples the global batch ``step_in_epoch`` of any epoch holds."""
        return min(self.sampler.batch_size, len(self.dataset) - step_in_epoch * self.sampler.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """Yield this replica's batches of ``epoch`` from batch ``start`` on."""
        self.sampler.set_epoch(epoch, start)
        yield from self.loader

    def probe(self, n: int) -> dict[str, Any]:
        sentinels = self.assembler.sentinels
        self.assembler.sentinels = False
        try:
            return self.assembler([(self.dataset.sample(i), True) for i in range(min(n, len(self.dataset)))])
        finally:
            self.assembler.sentinels = sentinels


def build_train_loader(data: Any, split: str, config: Any, query: torch.Tensor | None, *, batch_size: int,
                       seed: int, num_workers: int | None = None, transform: bool = True, bucketing: bool = True,
                       trim: bool = True, fixed_shapes: bool = False, sentinels: bool = False,
                       pin_memory: bool = False) -> TrainLoader:
    """Return the `TrainLoader` of ``split`` of ``data`` (a `TaskDatasets`) for a model of ``config``
    (``query``: the task's fixed query array). ``num_workers`` ``None`` is `default_num_workers`;
    ``bucketing`` buckets variable-length samples by length; ``transform`` applies ``gperc_transform``."""
    samples = data.samples(split)
    workers = default_num_workers() if num_workers is None else int(num_workers)
    lengths = sample_lengths(samples.arrays, samples.rows) if bucketing else None
    dataset = SampleDataset(samples, data, transform=transform, seed=seed, split=split)
    sampler = EpochSampler(len(dataset), batch_size, seed, lengths)
    assembler = BatchAssembler(data, config, query, trim=trim, fixed_shapes=fixed_shapes, sentinels=sentinels,
                               split=split)
    return TrainLoader(dataset, sampler, assembler, num_workers=workers, pin_memory=pin_memory)
