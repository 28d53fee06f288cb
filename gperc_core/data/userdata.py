"""Users' own data, no plugin code: folders, tables and ``save_to_disk`` folders read by Hugging Face
`datasets` and served as the raw samples a plugin's ``DatasetSpec.load`` returns.

A modality plugin describes how to read one cell of its column (`UserData`: ``read`` turns a
cell into the raw sample its hooks take, ``check`` tells an unreadable file early) and registers
datasets whose ``load`` calls one of:

- `UserData.folder`: ``root`` laid out as the ``imagefolder`` / ``audiofolder`` builders read it
  (``<root>/<label>/<file>`` or ``<root>/<split>/<label>/<file>``);
- `UserData.table`: csv / tsv / json / jsonl / parquet files (``path``, optional ``test_path``);
- `UserData.saved`: a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``.

Splits are ``train`` and ``test``: they come from the data (split folders, a separate test file, a
saved `DatasetDict`; a ``validation`` split serves as ``test`` when there is no ``test``), else a
seeded fraction of ``train``: a sample goes to ``test`` when a hash of (``split_seed``, its key) falls below
``test_fraction``, its key being the file's path relative to ``root`` (a file keeps its split when
others are added) or the row number. Class names come from a ``ClassLabel`` column (folder names
for the folder builders), else the sorted distinct string labels of all splits, else
``0..max`` for integer labels; they are the returned sequence's ``classes``. A file ``check`` /
``read`` cannot read is named with its path: ``on_error="fail"`` (default) raises a `TaskError`,
``"skip"`` leaves it out with one `UserDataWarning` counting the skipped files.

The returned `UserSamples` keeps the Arrow table memory-mapped (cells are read on access) and
exposes ``fingerprint``: `datasets`' fingerprint of the selected rows, which changes when the files
(paths, sizes, modification times) or the split change.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from gperc_core.errors import GpercError, TaskError
from gperc_core.plugins.specs import Option

ON_ERROR = ("fail", "skip")
SPLITS = ("train", "test")
DEFAULT_TEST_FRACTION = 0.2
TABLE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_SHOWN_PATHS = 5

USER_DATA_OPTIONS: dict[str, Option] = {
    "path": Option(str, None, "your data: a csv/tsv/json/jsonl/parquet file (files datasets) or a save_to_disk "
                   "folder (from-disk datasets)"),
    "test_path": Option(str, None, "files datasets: a separate file of the test split (else test_fraction)"),
    "column": Option(str, None, "the column holding the modality's samples (default: the modality's name; "
                     "'text' for text)"),
    "label_column": Option(str, None, "the column holding the labels (default 'label')"),
    "test_fraction": Option(float, None, "share of samples in the test split when the data has no test split "
                            "(default 0.2)"),
    "split_seed": Option(int, None, "seed of that split (default 0)"),
    "on_error": Option(str, None, "an unreadable file: 'fail' (default: an error naming it) or 'skip' (a warning "
                       "counting the skipped files)", choices=ON_ERROR),
}
"""The options of the user-data datasets; a plugin merges them into its modality's declared options
(beside its own ``root``)."""


class UserDataWarning(UserWarning):
    """Files of a user's dataset were skipped (``on_error="skip"``)."""


class UserSamples:
    """A user's split as raw samples ``{modality: read(cell), "target": int}`` over a memory-mapped
    `datasets.Dataset`; ``classes`` names the labels, ``fingerprint`` identifies the rows."""

    def __init__(self, data: Any, column: str, targets: Sequence[int], classes: Sequence[str], modality: str,
                 read: Callable[[Any], Any], where: str) -> None:
        self.data = data
        self.column = column
        self.targets = list(targets)
        self.classes = list(classes)
        self.modality = modality
        self.read = read
        self.where = where
        self.fingerprint = str(getattr(data, "_fingerprint", ""))

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def paths(self) -> list[str | None]:
        """The file of each sample (``None`` for cells that are no file: text, embedded bytes)."""
        return _paths(self.data, self.column)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"index: expected an int, got {type(index).__name__}")
        cell = self.data[index][self.column]
        try:
            sample = self.read(cell)
        except GpercError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders raise anything; name the file
            raise TaskError(f"{self.where}: sample {index}: cannot read {cell_name(cell)} ({type(exc).__name__}: "
                            f"{exc})") from exc
        return {self.modality: sample, "target": self.targets[index]}


def _paths(data: Any, column: str) -> list[str | None]:
    """The file of each cell of ``column`` (its ``path`` field; ``None`` for cells that are no file),
    read without the cells' bytes."""
    flat = data.select_columns([column]).flatten()
    name = f"{column}.path"
    return list(flat[name]) if name in flat.column_names else [None] * len(data)


def cell_name(cell: Any) -> str:
    """The file a cell comes from (its ``path``), else a short repr of it (for messages)."""
    if isinstance(cell, Mapping) and cell.get("path"):
        return repr(str(cell["path"]))
    text = repr(cell)
    return text if len(text) <= 60 else text[:57] + "..."


def _option(options: Mapping[str, Any], name: str, default: Any) -> Any:
    value = options.get(name)
    return default if value is None else value


@dataclass(frozen=True)
class UserData:
    """How a plugin reads its modality out of a user's dataset.

    ``plugin`` / ``dataset`` name the plugin and dataset in messages; ``modality`` is the key of the
    samples; ``read(cell)`` turns a cell of the column (for file features a dict ``{"path", "bytes"}``)
    into the raw sample the plugin's hooks take; ``check(cell)`` (optional) raises when the cell's
    file cannot be read (cheap: a header, not a decode), run on every file at load time.
    """

    plugin: str
    dataset: str
    modality: str
    read: Callable[[Any], Any]
    check: Callable[[Any], None] | None = None

    # ------------------------------------------------------------------ the three sources
    def folder(self, builder: str, split: str, options: Mapping[str, Any]) -> UserSamples:
        """Split ``split`` of the folder ``options["root"]``, laid out as the `datasets` builder
        ``builder`` (``"imagefolder"`` / ``"audiofolder"``) reads it: its split folders and file
        extensions; the label is the file's folder name. The builder finds the files; the plugin's
        ``read`` decodes them (`datasets`' audio decoder needs torchcodec, which is not required)."""
        import datasets
        import pyarrow

        self._check_split(split)
        root = options.get("root")
        if not root or not Path(str(root)).expanduser().is_dir():
            raise TaskError(f"{self.plugin}: dataset {self.dataset!r} options['root']: expected a folder laid out "
                            f"as <label>/<file> (or <split>/<label>/<file>), got {root!r}")
        root = Path(str(root)).expanduser().resolve()
        try:
            found = datasets.load_dataset_builder(builder, data_dir=str(root), cache_dir=_builder_cache())
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise TaskError(f"{self.plugin}: dataset {self.dataset!r} options['root'] = {str(root)!r}: the "
                            f"{builder!r} builder of `datasets` finds no data in it ({type(exc).__name__}: "
                            f"{exc})") from None
        extensions = {e.lower() for e in getattr(found, "EXTENSIONS", ())}
        splits = {}
        for name, files in found.config.data_files.items():
            paths = sorted(f for f in files if Path(f).suffix.lower() in extensions)
            if paths:
                table = pyarrow.Table.from_pydict({self.modality: [{"path": p, "bytes": None} for p in paths],
                                                   "label": [Path(p).parent.name for p in paths]})
                splits[str(name)] = datasets.Dataset(table, fingerprint=_files_fingerprint(paths))
        if not splits:
            raise TaskError(f"{self.plugin}: dataset {self.dataset!r} options['root']: expected files ending in one "
                            f"of {sorted(extensions)[:8]}... under {str(root)!r}, got none")
        options = {k: v for k, v in options.items() if k not in ("column", "label_column")}
        return self._finish(splits, split, self.modality, options,
                            lambda data: [_relative(p, root) for p in _paths(data, self.modality)])

    def table(self, split: str, options: Mapping[str, Any]) -> UserSamples:
        """Split ``split`` of the table file ``options["path"]`` (csv, tsv, json, jsonl or parquet;
        ``options["test_path"]`` holds the test split, else a seeded fraction)."""
        self._check_split(split)
        files = {"train": self._file(options, "path")}
        if options.get("test_path"):
            files["test"] = self._file(options, "test_path")
        suffixes = {Path(f).suffix.lower() for f in files.values()}
        builder = TABLE_BUILDERS.get(next(iter(suffixes))) if len(suffixes) == 1 else None
        if builder is None:
            raise TaskError(f"{self.plugin}: dataset {self.dataset!r} options['path']: expected files ending in one "
                            f"of {sorted(TABLE_BUILDERS)} (all the same), got {sorted(files.values())}")
        extra = {"delimiter": "\t"} if suffixes == {".tsv"} else {}
        splits = self._load(builder, f"options['path'] = {files['train']!r}", data_files=files, **extra)
        return self._finish(splits, split, _option(options, "column", self.modality), options, _row_numbers)

    def saved(self, split: str, options: Mapping[str, Any]) -> UserSamples:
        """Split ``split`` of the ``save_to_disk`` folder ``options["path"]`` (a `DatasetDict` gives its
        splits; a single `Dataset` is split by ``test_fraction``)."""
        import datasets

        self._check_split(split)
        path = self._file(options, "path", folder=True)
        try:
            loaded = datasets.load_from_disk(path)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise TaskError(f"{self.plugin}: dataset {self.dataset!r} options['path']: expected a folder written by "
                            f"Dataset.save_to_disk, got {path!r} ({exc})") from None
        splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        column = _option(options, "column", self.modality)
        splits = {name: (data.cast_column(column, _undecoded(data.features[column]))
                         if column in data.features else data) for name, data in splits.items()}
        return self._finish(splits, split, column, options, _row_numbers)

    # ------------------------------------------------------------------ shared steps
    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise TaskError(f"{self.plugin}: dataset {self.dataset!r} split: expected one of {list(SPLITS)}, "
                            f"got {split!r}")

    def _file(self, options: Mapping[str, Any], key: str, folder: bool = False) -> str:
        value = options.get(key)
        path = Path(str(value)).expanduser() if value else None
        if path is None or not (path.is_dir() if folder else path.is_file()):
            what = "a save_to_disk folder" if folder else "an existing file"
            raise TaskError(f"{self.plugin}: dataset {self.dataset!r} options[{key!r}]: expected {what}, "
                            f"got {value!r}")
        return str(path.resolve())

    def _load(self, builder: str, what: str, **kwargs: Any) -> dict[str, Any]:
        import datasets

        try:
            loaded = datasets.load_dataset(builder, cache_dir=_builder_cache(), **kwargs)
        except (FileNotFoundError, ValueError, OSError, datasets.exceptions.DatasetGenerationError) as exc:
            raise TaskError(f"{self.plugin}: dataset {self.dataset!r} {what}: the {builder!r} builder of "
                            f"`datasets` cannot read it ({type(exc).__name__}: {exc})") from None
        return dict(loaded)

    def _finish(self, splits: Mapping[str, Any], split: str, column: str, options: Mapping[str, Any],
                keys: Callable[[Any], list[str]]) -> UserSamples:
        where = f"{self.plugin}: dataset {self.dataset!r} split {split!r}"
        label_column = _option(options, "label_column", "label")
        for name, data in splits.items():
            for wanted, option in ((column, "column"), (label_column, "label_column")):
                if wanted not in data.column_names:
                    raise TaskError(f"{where}: options[{option!r}]: expected a column of split {name!r}, got "
                                    f"{wanted!r} (columns: {data.column_names}); name the column with --set "
                                    f"options.{self.modality}.{option}=NAME")
        classes, encode = _labels(splits, label_column, where)
        data = self._select(splits, split, options, keys, where)
        data, targets = self._readable(data, column, label_column, encode, options, where)
        return UserSamples(data, column, targets, classes, self.modality, self.read, where)

    def _select(self, splits: Mapping[str, Any], split: str, options: Mapping[str, Any],
                keys: Callable[[Any], list[str]], where: str) -> Any:
        if "train" not in splits:
            raise TaskError(f"{where}: expected a 'train' split in the data, got {sorted(splits)}")
        held_out = splits.get("test", splits.get("validation"))
        if held_out is not None:
            return splits["train"] if split == "train" else held_out
        fraction = float(_option(options, "test_fraction", DEFAULT_TEST_FRACTION))
        if not 0.0 < fraction < 1.0:
            raise TaskError(f"{where}: options['test_fraction']: expected a number in (0, 1), got {fraction}")
        seed = int(_option(options, "split_seed", 0))
        base = splits["train"]
        keep = [i for i, k in enumerate(keys(base)) if (_fraction(f"{seed}:{k}") < fraction) == (split == "test")]
        return base.select(keep)

    def _readable(self, data: Any, column: str, label_column: str, encode: Callable[[Any], int],
                  options: Mapping[str, Any], where: str) -> tuple[Any, list[int]]:
        on_error = _option(options, "on_error", "fail")
        if on_error not in ON_ERROR:
            raise TaskError(f"{where}: options['on_error']: expected one of {ON_ERROR}, got {on_error!r}")
        labels = data[label_column]
        if self.check is None:
            return data, [encode(y) for y in labels]
        keep, bad = [], []
        for i, cell in enumerate(data[column]):
            try:
                self.check(cell)
            except Exception as exc:  # noqa: BLE001 - decoders raise anything; the file is named
                if on_error == "fail":
                    raise TaskError(f"{where}: cannot read {cell_name(cell)} ({type(exc).__name__}: {exc}); "
                                    f"fix or remove it, or set options.{self.modality}.on_error='skip' to leave "
                                    f"unreadable files out") from None
                bad.append(cell_name(cell))
            else:
                keep.append(i)
        if bad:
            shown = ", ".join(bad[:_SHOWN_PATHS]) + (" ..." if len(bad) > _SHOWN_PATHS else "")
            warnings.warn(f"{where}: skipped {len(bad)} unreadable file(s) of {len(bad) + len(keep)} "
                          f"(on_error='skip'): {shown}", UserDataWarning, stacklevel=2)
            data = data.select(keep)
            labels = [labels[i] for i in keep]
        return data, [encode(y) for y in labels]


def _builder_cache() -> str | None:
    """Where `datasets` builders keep their Arrow files: ``$GPERC_CACHE/hf-builders`` when
    ``$GPERC_CACHE`` is set (and not ``off``), else `datasets`' own default."""
    cache = os.environ.get("GPERC_CACHE")
    return str(Path(cache) / "hf-builders") if cache and cache != "off" else None


def _files_fingerprint(paths: Sequence[str]) -> str:
    """A fingerprint of the files ``paths``: their paths, sizes and modification times."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _undecoded(feature: Any) -> Any:
    """``feature`` with decoding off (an Image / Audio feature yields ``{"path", "bytes"}``: the
    plugin's reader decodes it), anything else unchanged."""
    import datasets

    if isinstance(feature, (datasets.Image, datasets.Audio)):
        return type(feature)(decode=False)
    return feature


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _row_numbers(data: Any) -> list[str]:
    return [str(i) for i in range(len(data))]


def _fraction(text: str) -> float:
    """A number in [0, 1) fixed by ``text``."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2 ** 32


def _labels(splits: Mapping[str, Any], label_column: str, where: str) -> tuple[list[str], Callable[[Any], int]]:
    """Return the class names and label -> class index: a ``ClassLabel``'s names, else the sorted
    distinct strings over every split, else ``0..max`` for non-negative integers."""
    import datasets

    feature = next(iter(splits.values())).features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), int
    values = {y for data in splits.values() for y in data.unique(label_column)}
    if values and all(isinstance(y, str) for y in values):
        names = sorted(values)
        index = {name: i for i, name in enumerate(names)}
        return names, index.__getitem__
    if values and all(isinstance(y, int) and not isinstance(y, bool) and y >= 0 for y in values):
        return [str(i) for i in range(max(values) + 1)], int
    shown = sorted(map(repr, values))[:5]
    raise TaskError(f"{where}: options['label_column']: expected labels that are all strings or all integers "
                    f">= 0, got {shown}")


__all__ = ["USER_DATA_OPTIONS", "UserData", "UserSamples", "UserDataWarning", "ON_ERROR"]
