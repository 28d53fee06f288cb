"""The text datasets: WordNet glosses, and your own texts: ``text-files`` (a csv / tsv / json / jsonl /
parquet table) and ``text-from-disk`` (a ``save_to_disk`` folder), through `gperc_core.UserData`.

WordNet glosses labelled by lexicographer file (41 noun.* and verb.* classes), from Debian wordnet-base.

``data.noun`` and ``data.verb`` hold one synset per line (lines starting with two spaces are the
licence header): ``offset lex_filenum ss_type w_cnt word lex_id ... | gloss``. Each synset is one
sample: its gloss (optionally preceded by its lemmas) and the class ``lex_filenum - 3`` (noun.Tops = 0
... noun.time = 25, verb.body = 26 ... verb.weather = 40). 82,115 nouns + 13,767 verbs = 95,882.
The split is fixed: a seeded permutation (seed 0), 80 % train, 10 % validation, 10 % test.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from gperc_core import DatasetSpec, TaskError, UserData

from . import PLUGIN

WORDNET_APT = "apt-get install wordnet-base"
WORDNET_DEBIAN_DIR = Path("/usr/share/wordnet")
WORDNET_ENV = "GPERC_WORDNET"
LEXNAMES = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body",
    "verb.change", "verb.cognition", "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social",
    "verb.stative", "verb.weather")
"""Class names in class order: WordNet's lexicographer files 3..43."""
FIRST_LEXFILE = 3
SPLITS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
SPLIT_SEED = 0


class TextDataset(torch.utils.data.Dataset):
    """Texts with integer labels; a sample is ``{"text": str, "target": int}``; ``classes`` names the labels."""

    def __init__(self, texts: list[str], targets: np.ndarray) -> None:
        self.texts = texts
        self.targets = targets
        self.classes = list(LEXNAMES)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"text": self.texts[index], "target": int(self.targets[index])}


def text_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the text options out of ``options`` (the text table itself or modality -> table)."""
    options = dict(options or {})
    inner = options.get("text")
    return dict(inner) if isinstance(inner, Mapping) else options


def wordnet_dir(options: Mapping[str, Any] | None = None) -> Path:
    """Return the folder with ``data.noun`` and ``data.verb``: ``options["root"]``, else ``$GPERC_WORDNET``,
    else Debian's ``/usr/share/wordnet``; `TaskError` with the install command when none has them."""
    options = options or {}
    tried = []
    for root in (options.get("root"), os.environ.get(WORDNET_ENV), str(WORDNET_DEBIAN_DIR)):
        if not root:
            continue
        folder = Path(root).expanduser()
        tried.append(str(folder))
        if (folder / "data.noun").is_file() and (folder / "data.verb").is_file():
            return folder
    raise TaskError(f"{PLUGIN}: dataset 'wordnet-glosses': expected data.noun and data.verb in one of {tried}, "
                    f"got none; install them with `{WORDNET_APT}` or point options['root'] / ${WORDNET_ENV} at them")


def parse_data_file(path: Path, with_lemmas: bool = False) -> tuple[list[str], list[int]]:
    """Return ``(texts, classes)`` of one WordNet data file; a malformed synset line is a `TaskError`."""
    texts, classes = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if line.startswith("  ") or not line.strip():
                continue
            head, sep, gloss = line.partition(" | ")
            fields = head.split()
            try:
                lexfile = int(fields[1])
                words = [fields[4 + 2 * i].replace("_", " ") for i in range(int(fields[3], 16))]
            except (IndexError, ValueError):
                raise TaskError(f"{PLUGIN}: {path}:{number}: expected 'offset lex_filenum ss_type w_cnt word "
                                f"lex_id ... | gloss', got {line[:60]!r}") from None
            label = lexfile - FIRST_LEXFILE
            if not sep or not 0 <= label < len(LEXNAMES):
                raise TaskError(f"{PLUGIN}: {path}:{number}: expected a noun or verb synset with a gloss "
                                f"(lex_filenum 3..43), got lex_filenum {lexfile} and {'a' if sep else 'no'} gloss")
            gloss = gloss.strip()
            texts.append(f"{', '.join(words)}: {gloss}" if with_lemmas else gloss)
            classes.append(label)
    return texts, classes


@lru_cache(maxsize=4)
def _wordnet(folder: str, with_lemmas: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    texts, classes = [], []
    for name in ("data.noun", "data.verb"):
        t, c = parse_data_file(Path(folder) / name, with_lemmas)
        texts += t
        classes += c
    order = np.random.default_rng(SPLIT_SEED).permutation(len(texts))
    return texts, np.asarray(classes, dtype=np.int64), order


def load_wordnet_glosses(split: str, options: Mapping[str, Any] | None = None) -> TextDataset:
    """WordNet glosses for ``split`` ("train" 80 %, "validation" 10 %, "test" 10 %), 41 classes.

    Options: ``root`` (folder of the data files), ``with_lemmas`` (prefix each gloss with its synset's
    words, default false), ``max_samples`` (keep the first N of the split)."""
    options = text_options(options)
    if split not in SPLITS:
        raise TaskError(f"{PLUGIN}: split: expected one of {tuple(SPLITS)} for dataset 'wordnet-glosses', "
                        f"got {split!r}")
    with_lemmas = options.get("with_lemmas", False)
    if not isinstance(with_lemmas, bool):
        raise TaskError(f"{PLUGIN}: options['with_lemmas']: expected true or false, got {with_lemmas!r}")
    texts, classes, order = _wordnet(str(wordnet_dir(options)), with_lemmas)
    lo, hi = SPLITS[split]
    idx = order[round(lo * len(order)): round(hi * len(order))]
    limit = options.get("max_samples")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise TaskError(f"{PLUGIN}: options['max_samples']: expected a positive integer, got {limit!r}")
        idx = idx[:limit]
    return TextDataset([texts[i] for i in idx], classes[idx])


def read_text_cell(cell: Any) -> str:
    """Return a text cell of a table as the raw sample (a string); anything else is a `TaskError`."""
    if not isinstance(cell, str):
        raise TaskError(f"{PLUGIN}: text column: expected strings, got {type(cell).__name__} {cell!r}")
    return cell


TEXT_FILES = UserData(plugin=PLUGIN, dataset="text-files", modality="text", read=read_text_cell)
TEXT_FROM_DISK = UserData(plugin=PLUGIN, dataset="text-from-disk", modality="text", read=read_text_cell)


def load_text_files(split: str, options: Mapping[str, Any] | None = None) -> Any:
    """Your texts in the table ``options["path"]`` (csv, tsv, json, jsonl or parquet; the test split in
    ``options["test_path"]``, else a seeded ``test_fraction``): columns ``text`` and ``label`` (or
    ``options["column"]`` / ``options["label_column"]``)."""
    return TEXT_FILES.table(split, text_options(options))


def load_text_from_disk(split: str, options: Mapping[str, Any] | None = None) -> Any:
    """A dataset saved with ``save_to_disk`` at ``options["path"]``: columns ``text`` and ``label`` (or
    ``options["column"]`` / ``options["label_column"]``)."""
    return TEXT_FROM_DISK.saved(split, text_options(options))


DATASETS = [
    DatasetSpec(name="wordnet-glosses", modalities=["text"], load=load_wordnet_glosses, num_classes=len(LEXNAMES),
                description="WordNet noun and verb glosses labelled by lexicographer file (41 classes), "
                            "fixed 80/10/10 split",
                splits=tuple(SPLITS), install_hint=WORDNET_APT),
    DatasetSpec(name="text-files", volatile=True, modalities=["text"], load=load_text_files,
                description="your texts: a csv/tsv/json/jsonl/parquet table with text and label columns "
                            "(options: path, test_path)",
                splits=("train", "test"), install_hint="--set options.text.path=<your .csv / .json / .parquet>"),
    DatasetSpec(name="text-from-disk", volatile=True, modalities=["text"], load=load_text_from_disk,
                description="a datasets.save_to_disk folder with text and label columns (options: path)",
                splits=("train", "test"), install_hint="--set options.text.path=<save_to_disk folder>"),
]
