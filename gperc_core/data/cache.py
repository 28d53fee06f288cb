"""The on-disk cache of converted samples: Arrow files (Hugging Face ``datasets``), memory-mapped.

Converting a split (``gperc_input_array`` on every sample) is deterministic given the dataset, the
split, the modality's resolved options, the tokenizer, the plugins that convert and the core
version; `entry_key` hashes those into a fingerprint. `get_or_build` converts a split once per
fingerprint, in ``num_proc`` forked processes (each writes one Arrow shard) with a progress bar, and
every later run, ``gperc eval`` and ``gperc predict`` of the same fingerprint opens the shards
memory-mapped instead: a `CachedSamples` is a map-style sequence of `InputArray` decoded lazily, row
by row, so a split never has to fit in RAM.

Layout: `cache_root` (``$GPERC_DATA_CACHE``, else ``$GPERC_CACHE/converted``, else
``~/.cache/gperc/converted``; ``GPERC_DATA_CACHE=off`` disables it)
``/<dataset>--<split>--<modality>--<selection>--<fingerprint>/`` holding
``shard-XXXXX.arrow`` files and ``manifest.json``. The manifest is written last, and the finished
folder is renamed into place atomically, so a folder without a valid manifest is never an entry.
Opening an entry checks the manifest's fingerprint, row counts, file sizes and SHA-256 checksums;
an entry that fails (truncated, corrupt, half-deleted) is rebuilt, never used. Builders of one entry
serialise on a ``flock`` under ``.locks/`` (the second process waits, then opens the first one's
entry), and the atomic rename leaves one good entry even where locks do not work.

Plugins registered in-process (no distribution version) and tokenizers without an identity cannot
be fingerprinted safely; their splits are converted in memory every time (`entry_key` returns None).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
import sys
import time
import traceback
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from gperc_core._version import __version__ as CORE_VERSION
from gperc_core.config.env import env_int
from gperc_core.errors import GpercError
from gperc_core.plugins.specs import InputArray, PositionGrid

ENV_CACHE = "GPERC_CACHE"
ENV_NUM_PROC = "GPERC_NUM_PROC"
ENV_DATA_CACHE = "GPERC_DATA_CACHE"
FORMAT = 1
MANIFEST = "manifest.json"
_OFF = {"off", "0", "none", "false", "no", "disabled"}
_TENSOR_FIELDS = ("array", "mask", "output")
_CHUNK = 1 << 22


class CacheWarning(UserWarning):
    """A cache entry was found broken (and is being rebuilt)."""


# --------------------------------------------------------------------- location and settings
def cache_root() -> Path | None:
    """Return the folder of converted-split entries: ``$GPERC_DATA_CACHE``, else
    ``$GPERC_CACHE/converted``, else ``~/.cache/gperc/converted``; None when ``GPERC_DATA_CACHE`` is
    ``off`` (conversions then run in memory every time)."""
    value = os.environ.get(ENV_DATA_CACHE, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get(ENV_CACHE, "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "gperc") / "converted"


def converted_root(root: Path | None = None) -> Path:
    """Return ``root`` or `cache_root`; a `GpercError` when caching is off."""
    root = root if root is not None else cache_root()
    if root is None:
        raise GpercError(f"{ENV_DATA_CACHE}: expected a cache folder, got {os.environ.get(ENV_DATA_CACHE)!r} "
                         f"(caching of converted samples is disabled)")
    return Path(root)


def default_num_proc() -> int:
    """Return the number of conversion processes: ``$GPERC_NUM_PROC``, else min(4, CPU count)."""
    n = env_int(ENV_NUM_PROC, 1)
    if n is not None:
        return n
    return max(1, min(4, os.cpu_count() or 1))


# --------------------------------------------------------------------- fingerprints
def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def tokenizer_identity(tokenizer: Any) -> str | None:
    """Return a stable identity of ``tokenizer`` for fingerprints: ``"none"``; its ``fingerprint``
    (attribute or method); a hash of its ``model_proto`` bytes (SentencePiece); a hash of its pickle;
    or None when it has none of these (its split is then not cached)."""
    if tokenizer is None:
        return "none"
    fp = getattr(tokenizer, "fingerprint", None)
    if fp is not None:
        return str(fp() if callable(fp) else fp)
    proto = getattr(tokenizer, "model_proto", None)
    if isinstance(proto, (bytes, bytearray)):
        return f"{type(tokenizer).__qualname__}:{hashlib.sha256(bytes(proto)).hexdigest()}"
    try:
        return f"{type(tokenizer).__qualname__}:{hashlib.sha256(pickle.dumps(tokenizer)).hexdigest()}"
    except Exception:  # noqa: BLE001 - anything unpicklable has no identity
        return None


def plugin_versions(pm: Any, names: Sequence[str | None]) -> dict[str, str] | None:
    """Return plugin name -> ``distribution==version`` for ``names`` in ``pm``, or None when one has
    no version (registered in-process: its code can change without a version to tell)."""
    out: dict[str, str] = {}
    find = getattr(pm, "find_info", None)
    for name in sorted({n for n in names if n}):
        info = find(name) if find is not None else None
        if info is None or not info.version:
            return None
        out[name] = f"{info.distribution}=={info.version}"
    return out


def entry_key(*, dataset: str, split: str, modality: str, options: Mapping[str, Any], tokenizer: str | None,
              plugins: Mapping[str, str] | None, selection: str) -> tuple[str, str] | None:
    """Return ``(name, fingerprint)`` of the entry converting ``selection`` (``"all"`` or
    ``"rows-<hash>"``) of ``dataset``'s ``split`` for ``modality``, or None when the tokenizer or a
    plugin has no identity (not cacheable)."""
    if tokenizer is None or plugins is None:
        return None
    fp = _digest({"format": FORMAT, "core": CORE_VERSION, "dataset": dataset, "split": split, "modality": modality,
                  "options": dict(options), "tokenizer": tokenizer, "plugins": dict(plugins),
                  "selection": selection})
    name = "--".join(_safe(p) for p in (dataset, split, modality, selection)) + f"--{fp[:16]}"
    return name, fp


def selection_of(indices: Sequence[int] | None) -> str:
    """``"all"`` for a whole split (``indices`` None), else ``"rows-<hash of the indices>"``."""
    if indices is None:
        return "all"
    return "rows-" + hashlib.sha256(",".join(str(int(i)) for i in indices).encode()).hexdigest()[:12]


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(part))


# --------------------------------------------------------------------- row encoding
def _tensor_cells(t: Any) -> tuple[bytes | None, list[int] | None, str | None]:
    if t is None:
        return None, None, None
    t = torch.as_tensor(t).detach().cpu().contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return raw, list(t.shape), str(t.dtype).removeprefix("torch.")


_NUMPY = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
          "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


def _tensor(raw: bytes | None, shape: list[int] | None, dtype: str | None) -> torch.Tensor | None:
    if raw is None:
        return None
    kind = getattr(torch, dtype)
    if not raw:
        return torch.empty(shape, dtype=kind)
    if dtype in _NUMPY:  # the fast path: numpy reads the bytes, one copy into a writable tensor
        return torch.from_numpy(np.frombuffer(raw, dtype=_NUMPY[dtype]).reshape(shape).copy())
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(kind).reshape(shape)


def encode_row(a: InputArray) -> dict[str, Any]:
    """Return the Arrow row of one `InputArray` (tensors as bytes + shape + dtype; the target as an
    int, a float, a tensor or a pickle). The position grid is stored once per entry."""
    row: dict[str, Any] = {}
    for f in _TENSOR_FIELDS:
        row[f], row[f"{f}_shape"], row[f"{f}_dtype"] = _tensor_cells(getattr(a, f))
    target = a.target
    row["target_int"], row["target_float"] = None, None
    row["target"], row["target_shape"], row["target_dtype"] = None, None, None
    if target is None:
        row["target_kind"] = "none"
    elif isinstance(target, (bool, int, np.integer, np.bool_)):
        row["target_kind"] = "bool" if isinstance(target, (bool, np.bool_)) else "int"
        row["target_int"] = int(target)
    elif isinstance(target, (float, np.floating)):
        row["target_kind"], row["target_float"] = "float", float(target)
    elif isinstance(target, torch.Tensor):
        row["target_kind"] = "tensor"
        row["target"], row["target_shape"], row["target_dtype"] = _tensor_cells(target)
    else:
        row["target_kind"], row["target"] = "pickle", pickle.dumps(target)
    return row


def decode_row(row: Mapping[str, Any], position: PositionGrid | None) -> InputArray:
    """Return the `InputArray` of one Arrow row (the inverse of `encode_row`)."""
    kind = row["target_kind"]
    if kind == "none":
        target: Any = None
    elif kind == "int":
        target = int(row["target_int"])
    elif kind == "bool":
        target = bool(row["target_int"])
    elif kind == "float":
        target = float(row["target_float"])
    elif kind == "tensor":
        target = _tensor(row["target"], row["target_shape"], row["target_dtype"])
    else:
        target = pickle.loads(row["target"])
    return InputArray(array=_tensor(row["array"], row["array_shape"], row["array_dtype"]),
                      mask=_tensor(row["mask"], row["mask_shape"], row["mask_dtype"]),
                      output=_tensor(row["output"], row["output_shape"], row["output_dtype"]),
                      target=target, position=position)


def _features() -> Any:
    from datasets import Features, List, Value

    cols: dict[str, Any] = {}
    for f in (*_TENSOR_FIELDS, "target"):
        cols[f], cols[f"{f}_shape"], cols[f"{f}_dtype"] = Value("binary"), List(Value("int64")), Value("string")
    cols.update(target_kind=Value("string"), target_int=Value("int64"), target_float=Value("float64"))
    return Features(cols)


def grid_to_json(grid: PositionGrid | None) -> dict[str, Any] | None:
    """Return ``grid`` as a JSON-able dict (None stays None)."""
    if grid is None:
        return None
    return {"shape": list(grid.shape), "num_bands": grid.num_bands,
            "max_resolution": list(grid.max_resolution) if grid.max_resolution is not None else None}


def grid_from_json(data: Mapping[str, Any] | None) -> PositionGrid | None:
    """Return the `PositionGrid` of `grid_to_json`'s dict (None stays None)."""
    if data is None:
        return None
    res = data.get("max_resolution")
    return PositionGrid(shape=tuple(int(s) for s in data["shape"]), num_bands=int(data["num_bands"]),
                        max_resolution=tuple(float(r) for r in res) if res is not None else None)


# --------------------------------------------------------------------- the sequences
class ConvertedSamples(Sequence):
    """Converted samples of one (dataset, split, modality): a map-style sequence of `InputArray`
    (``len``, ``[i]``), ``targets`` (the parallel target sequence), ``position`` (the grid every
    sample declares, or None) and ``rows(indices)`` (many at once)."""

    position: PositionGrid | None = None

    def rows(self, indices: Sequence[int]) -> list[InputArray]:
        """Return the samples at ``indices`` (in order)."""
        return [self[int(i)] for i in indices]

    @property
    def targets(self) -> Sequence[Any]:
        """The target of every sample, in order (a lazy view)."""
        return _Targets(self)

    def select(self, indices: Sequence[int]) -> "ConvertedSamples":
        """Return the view of the samples at ``indices`` (no copy, no decoding)."""
        return SelectedSamples(self, [int(i) for i in indices])


class _Targets(Sequence):
    def __init__(self, samples: ConvertedSamples) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [a.target for a in self.samples.rows(range(len(self))[i])]
        return self.samples[i].target


def _index(i: Any, n: int) -> int:
    i = int(i)
    if i < -n or i >= n:
        raise IndexError(f"index {i} out of range for {n} converted samples")
    return i % n


class InMemorySamples(ConvertedSamples):
    """Converted samples held in a list (the uncached path: tests, in-process plugins, predict inputs)."""

    def __init__(self, arrays: Sequence[InputArray], position: PositionGrid | None) -> None:
        self.arrays = list(arrays)
        self.position = position

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.arrays[i]
        return self.arrays[_index(i, len(self))]


class SelectedSamples(ConvertedSamples):
    """The samples of ``base`` at ``indices`` (subsampling, pairing), in that order."""

    def __init__(self, base: ConvertedSamples, indices: Sequence[int]) -> None:
        self.base, self.indices, self.position = base, list(indices), base.position

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.rows(range(len(self))[i])
        return self.base[self.indices[_index(i, len(self))]]

    def rows(self, indices: Sequence[int]) -> list[InputArray]:
        return self.base.rows([self.indices[int(i)] for i in indices])


class CachedSamples(ConvertedSamples):
    """The samples of a cache entry: its Arrow shards memory-mapped (``pyarrow``, the format
    ``datasets`` writes), decoded per row; ``dataset`` is the same data as a ``datasets.Dataset``.

    Picklable (the shards are reopened by path), so DataLoader workers can share it.
    """

    def __init__(self, path: str | Path, manifest: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = dict(manifest)
        self.position = grid_from_json(manifest.get("position"))
        self._table: Any = None

    @property
    def files(self) -> list[str]:
        """The entry's Arrow files, in row order."""
        return [str(self.path / s["file"]) for s in self.manifest["shards"]]

    @property
    def table(self) -> Any:
        """The memory-mapped ``pyarrow.Table`` of the entry (opened on first use; no copy in RAM)."""
        if self._table is None:
            import pyarrow as pa

            tables = [pa.ipc.open_stream(pa.memory_map(f)).read_all() for f in self.files]
            self._table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        return self._table

    @property
    def dataset(self) -> Any:
        """The entry as a memory-mapped ``datasets.Dataset`` (for users of Hugging Face datasets)."""
        from datasets import Dataset, concatenate_datasets

        parts = [Dataset.from_file(f) for f in self.files]
        return parts[0] if len(parts) == 1 else concatenate_datasets(parts)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "manifest": self.manifest, "position": self.position, "_table": None}

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.rows(range(len(self))[i])
        return decode_row(self.table.slice(_index(i, len(self)), 1).to_pylist()[0], self.position)

    def rows(self, indices: Sequence[int]) -> list[InputArray]:
        import pyarrow as pa

        indices = [_index(i, len(self)) for i in indices]
        if not indices:
            return []
        whole = indices == list(range(len(self)))
        cols = (self.table if whole else self.table.take(pa.array(indices, type=pa.int64()))).to_pydict()
        return [decode_row({k: v[j] for k, v in cols.items()}, self.position) for j in range(len(indices))]


# --------------------------------------------------------------------- entries on disk
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_entry(path: Path, fingerprint: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """Return ``(manifest, None)`` when the entry at ``path`` is complete and intact (manifest readable,
    ``fingerprint`` matching if given, every shard present with its recorded size, row count and
    SHA-256), else ``(None, why)``."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return None, "no manifest (an unfinished build)"
    except (OSError, ValueError) as exc:
        return None, f"unreadable manifest ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None, f"manifest format {manifest.get('format') if isinstance(manifest, dict) else '?'} != {FORMAT}"
    if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
        return None, "fingerprint mismatch"
    try:
        total = 0
        for shard in manifest["shards"]:
            file = path / shard["file"]
            if not file.is_file():
                return None, f"missing {shard['file']}"
            if file.stat().st_size != int(shard["bytes"]):
                return None, f"{shard['file']} has {file.stat().st_size} bytes, expected {shard['bytes']}"
            if _sha256(file) != shard["sha256"]:
                return None, f"{shard['file']}: checksum mismatch"
            total += int(shard["rows"])
        if total != int(manifest["rows"]):
            return None, f"shards hold {total} rows, manifest says {manifest['rows']}"
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"malformed manifest ({type(exc).__name__}: {exc})"
    return manifest, None


def open_entry(path: Path, fingerprint: str | None = None) -> CachedSamples | None:
    """Return the entry at ``path`` as `CachedSamples`, or None when it is absent or broken (a broken
    one is reported with a `CacheWarning`)."""
    if not path.exists():
        return None
    manifest, why = check_entry(path, fingerprint)
    if manifest is None:
        warnings.warn(f"gperc cache: entry {path} is broken ({why}); rebuilding it", CacheWarning, stacklevel=2)
        return None
    try:
        samples = CachedSamples(path, manifest)
        if samples.table.num_rows != len(samples):
            raise ValueError(f"{samples.table.num_rows} rows, manifest says {len(samples)}")
    except Exception as exc:  # noqa: BLE001 - Arrow refuses a damaged file
        warnings.warn(f"gperc cache: entry {path} is broken (Arrow: {exc}); rebuilding it", CacheWarning,
                      stacklevel=2)
        return None
    return samples


@contextlib.contextmanager
def _entry_lock(root: Path, name: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``root/.locks/<name>.lock``. When another process holds it (it is
    building the same entry), say so on stderr once, then wait for it."""
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic rename alone keeps one good entry
        yield
        return
    with open(locks / f"{name}.lock", "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"gperc cache: waiting for another process that is building {name} "
                  f"(lock {locks / (name + '.lock')})", file=sys.stderr, flush=True)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _write_shard(path: Path, arrays: Iterator[InputArray], progress: Callable[[int], None]) -> dict[str, Any]:
    """Write converted samples to the Arrow file ``path``; returns its rows, grids (JSON) and bytes."""
    from datasets.arrow_writer import ArrowWriter

    grids: set[str] = set()
    rows, batch = 0, []
    with ArrowWriter(features=_features(), path=str(path)) as writer:
        for a in arrays:
            grids.add(json.dumps(grid_to_json(a.position)))
            batch.append(encode_row(a))
            if len(batch) == 64:
                writer.write_batch({k: [r[k] for r in batch] for k in batch[0]})
                rows += len(batch)
                progress(len(batch))
                batch = []
        if batch:
            writer.write_batch({k: [r[k] for r in batch] for k in batch[0]})
            rows += len(batch)
            progress(len(batch))
        writer.finalize()
    return {"file": path.name, "rows": rows, "grids": sorted(grids)}


def _worker(convert: Callable[[int], InputArray], indices: Sequence[int], path: Path, counter: Any) -> None:
    """Body of one forked conversion process: write its shard, or ``path.error`` with the exception."""
    def progress(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    try:
        torch.set_num_threads(1)
        info = _write_shard(path, (convert(i) for i in indices), progress)
        path.with_suffix(".json").write_text(json.dumps(info))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which re-raises it
        try:
            payload = pickle.dumps(exc)
            pickle.loads(payload)
        except Exception:  # noqa: BLE001 - an exception that does not survive pickling
            payload = pickle.dumps(GpercError(f"{type(exc).__name__}: {exc}"))
        path.with_suffix(".error").write_bytes(payload)
        traceback.print_exc(file=sys.stderr)
        os._exit(1)
    os._exit(0)


def progress_bar(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=None, leave=False)


def _convert_shards(tmp: Path, convert: Callable[[int], InputArray], n: int, num_proc: int,
                    desc: str) -> list[dict[str, Any]]:
    """Convert samples ``0..n-1`` into Arrow shards in ``tmp``: in this process when ``num_proc`` is
    1 (or the split is small), else in ``num_proc`` forked processes; returns the shards' info."""
    procs = max(1, min(num_proc, n // 64)) if "fork" in multiprocessing.get_all_start_methods() else 1
    bar = progress_bar(n, desc)
    try:
        if procs == 1:
            return [_write_shard(tmp / "shard-00000.arrow", (convert(i) for i in range(n)), bar.update)]
        ctx = multiprocessing.get_context("fork")
        counter = ctx.Value("q", 0)
        bounds = [n * k // procs for k in range(procs + 1)]
        paths = [tmp / f"shard-{k:05d}.arrow" for k in range(procs)]
        workers = [ctx.Process(target=_worker, args=(convert, range(bounds[k], bounds[k + 1]), paths[k], counter),
                               daemon=True) for k in range(procs)]
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            bar.update(counter.value - bar.n)
            time.sleep(0.2)
        for w in workers:
            w.join()
        bar.update(counter.value - bar.n)
        for path, w in zip(paths, workers):
            if path.with_suffix(".error").exists():
                raise pickle.loads(path.with_suffix(".error").read_bytes())
            if w.exitcode != 0 or not path.with_suffix(".json").exists():
                raise GpercError(f"gperc cache: conversion process for {path.name} ({desc}) died with exit code "
                                 f"{w.exitcode}")
        return [json.loads(p.with_suffix(".json").read_text()) for p in paths]
    finally:
        bar.close()


def _publish(tmp: Path, final: Path, fingerprint: str) -> None:
    """Rename the finished folder ``tmp`` to ``final`` atomically. An intact ``final`` (another
    builder's, where locks do not hold) wins and ``tmp`` is dropped; a broken one is moved aside
    first; losing the rename race to another builder is fine (theirs is as good)."""
    if final.exists():
        if check_entry(final, fingerprint)[0] is not None:
            return
        trash = final.parent / f".trash-{final.name}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(OSError):
            os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if check_entry(final, fingerprint)[0] is None:
            raise


def build_entry(root: Path, name: str, fingerprint: str, meta: Mapping[str, Any],
                convert: Callable[[int], InputArray], n: int, *, num_proc: int | None = None,
                check_grids: Callable[[set[str]], None] | None = None) -> CachedSamples:
    """Convert samples ``0..n-1`` with ``convert`` into the entry ``root/name`` and return it.

    Built in a temporary folder beside it, manifest last, renamed into place atomically, under the
    entry's lock; when another process finished the entry meanwhile, that one is used. ``meta`` goes
    into the manifest (dataset, split, modality, ...). ``check_grids`` receives the set of position
    grids (JSON strings) the samples declared and raises when they are not one.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    with _entry_lock(root, name):
        found = open_entry(final, fingerprint)
        if found is not None:
            return found
        tmp = root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            started = time.time()
            shards = _convert_shards(tmp, convert, n, num_proc or default_num_proc(), meta.get("desc", name))
            grids = set().union(*(s["grids"] for s in shards)) if shards else {"null"}
            if check_grids is not None:
                check_grids(grids)
            grid = json.loads(next(iter(grids))) if grids else None
            for s in shards:
                s.pop("grids")
                file = tmp / s["file"]
                s["bytes"], s["sha256"] = file.stat().st_size, _sha256(file)
                for extra in (file.with_suffix(".json"), file.with_suffix(".error")):
                    extra.unlink(missing_ok=True)
            manifest = {"format": FORMAT, "fingerprint": fingerprint, "name": name, **dict(meta), "rows": n,
                        "position": grid, "shards": shards, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "build_seconds": round(time.time() - started, 3), "core": CORE_VERSION}
            part = tmp / (MANIFEST + ".part")
            with open(part, "w") as f:
                json.dump(manifest, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(part, tmp / MANIFEST)
            _publish(tmp, final, fingerprint)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    found = open_entry(final, fingerprint)
    if found is None:
        raise GpercError(f"gperc cache: entry {final} could not be read back after building it")
    return found


def get_or_build(name: str, fingerprint: str, meta: Mapping[str, Any], convert: Callable[[int], InputArray],
                 n: Callable[[], int] | int, *, root: Path | None = None, num_proc: int | None = None,
                 check_grids: Callable[[set[str]], None] | None = None) -> CachedSamples:
    """Return the entry ``name`` (opened when it exists and is intact, else built with `build_entry`;
    ``n`` may be a callable so the split is only loaded when the entry must be built)."""
    base = converted_root(root)
    found = open_entry(base / name, fingerprint)
    if found is not None:
        return found
    return build_entry(base, name, fingerprint, meta, convert, n() if callable(n) else n, num_proc=num_proc,
                       check_grids=check_grids)


def lookup(name: str, fingerprint: str, root: Path | None = None) -> CachedSamples | None:
    """Return the intact entry ``name`` (or None) without building anything."""
    return open_entry(converted_root(root) / name, fingerprint)


# --------------------------------------------------------------------- listing and clearing
def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_entries(root: Path | None = None) -> list[dict[str, Any]]:
    """Return one dict per folder in the cache (name, dataset, split, modality, selection, rows, bytes,
    created, ok, problem), valid entries and broken or unfinished ones alike, sorted by name."""
    base = converted_root(root)
    if not base.is_dir():
        return []
    out = []
    for path in sorted(p for p in base.iterdir() if p.is_dir() and p.name != ".locks"):
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {}
        manifest = manifest if isinstance(manifest, dict) else {}
        problem = None if manifest.get("format") == FORMAT else (
            "unfinished build" if path.name.startswith(".tmp-") else "no valid manifest")
        out.append({"name": path.name, "path": str(path), "dataset": manifest.get("dataset"),
                    "split": manifest.get("split"), "modality": manifest.get("modality"),
                    "selection": manifest.get("selection"), "rows": manifest.get("rows"),
                    "bytes": _folder_bytes(path), "created": manifest.get("created"), "ok": problem is None,
                    "problem": problem})
    return out


def entry_matches(entry: Mapping[str, Any], pattern: str) -> bool:
    """True when ``pattern`` (fnmatch) matches the entry's folder name or ``dataset/split/modality``."""
    label = f"{entry.get('dataset')}/{entry.get('split')}/{entry.get('modality')}"
    return fnmatch.fnmatchcase(entry["name"], pattern) or fnmatch.fnmatchcase(label, pattern)


def clear_entries(pattern: str | None = None, root: Path | None = None) -> list[dict[str, Any]]:
    """Delete the entries matching ``pattern`` (all when None, including unfinished builds of dead
    processes) and return them (with their ``bytes``). An entry being built is waited for."""
    base = converted_root(root)
    removed = []
    for entry in list_entries(root):
        if pattern is not None and not entry_matches(entry, pattern):
            continue
        path = Path(entry["path"])
        if path.name.startswith(".tmp-"):
            pid = path.name.rsplit("-", 2)[-2]
            if pid.isdigit() and _alive(int(pid)):
                continue
            shutil.rmtree(path, ignore_errors=True)
        else:
            with _entry_lock(base, path.name):
                shutil.rmtree(path, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def format_bytes(n: int) -> str:
    """``n`` bytes as a short human-readable size (``12.3 MB``)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


__all__ = ["ENV_CACHE", "ENV_DATA_CACHE", "ENV_NUM_PROC", "CacheWarning", "ConvertedSamples", "InMemorySamples", "SelectedSamples",
           "CachedSamples", "cache_root", "converted_root", "default_num_proc", "tokenizer_identity",
           "plugin_versions", "entry_key", "selection_of", "encode_row", "decode_row", "check_entry", "open_entry",
           "progress_bar", "build_entry", "get_or_build", "lookup", "list_entries", "clear_entries", "entry_matches", "format_bytes"]
