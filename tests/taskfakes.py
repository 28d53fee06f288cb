"""A tiny in-memory plugin for the task, trainer and CLI tests: no real data, no real plugins.

Modalities: ``blob`` (raw ``[m, 2]`` point clouds of variable length whose mean tells the class) and
``seq`` (token ids of strings over "abc" whose most frequent letter tells the class). Datasets:
``blobs``, ``letters`` (3 classes each; ``letters`` has a validation split of its own) and ``letters-dense`` (one label per letter). Task cards:
``blob/blobs``, ``seq/letters``, ``seq/letters-dense``, ``multi/blob-seq`` (paired by target).
"""

from __future__ import annotations

import numpy as np
import torch

from gperc_core import DatasetSpec, InputArray, ModalitySpec, hookimpl

N_CLASSES = 3
SIZES = {"train": 96, "validation": 30, "test": 48}


def _blob(rng: np.random.Generator, label: int) -> np.ndarray:
    m = int(rng.integers(4, 9))
    centre = np.array([np.cos(2 * np.pi * label / N_CLASSES), np.sin(2 * np.pi * label / N_CLASSES)])
    return (centre + 0.3 * rng.standard_normal((m, 2))).astype(np.float32)


def _letters(rng: np.random.Generator, label: int) -> str:
    m = int(rng.integers(5, 10))
    weights = np.full(N_CLASSES, 0.15)
    weights[label] = 0.7
    return "".join("abc"[i] for i in rng.choice(N_CLASSES, size=m, p=weights / weights.sum()))


class _Split:
    """A list-backed dataset split with ``classes`` (class names) like a real loader."""

    classes = ["zero", "one", "two"]

    def __init__(self, samples: list[dict]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return self.samples[i]


def load_blobs(split: str, options: dict) -> _Split:
    rng = np.random.default_rng(0 if split == "train" else 1)
    labels = rng.integers(0, N_CLASSES, size=SIZES[split])
    return _Split([{"blob": _blob(rng, int(y)), "target": int(y)} for y in labels])


def load_letters(split: str, options: dict) -> _Split:
    rng = np.random.default_rng({"train": 10, "test": 11, "validation": 12}[split])
    labels = rng.integers(0, N_CLASSES, size=SIZES[split])
    return _Split([{"seq": _letters(rng, int(y)), "target": int(y)} for y in labels])


def load_letters_dense(split: str, options: dict) -> _Split:
    base = load_letters(split, options)
    return _Split([{"seq": s["seq"], "target": np.array(["abc".index(c) for c in s["seq"]])} for s in base.samples])


class CharTokenizer:
    """Characters to ids (0 is padding)."""

    def __init__(self, corpus) -> None:
        chars = sorted({c for text in corpus for c in text})
        self.ids = {c: i + 1 for i, c in enumerate(chars)}
        self.vocab_size = len(chars) + 1

    def encode(self, text: str) -> list[int]:
        return [self.ids[c] for c in text]

    def decode(self, ids) -> str:
        inverse = {i: c for c, i in self.ids.items()}
        return "".join(inverse.get(int(i), "?") for i in ids)


def read_blob_file(path: str) -> np.ndarray:
    return np.loadtxt(path, dtype=np.float32, ndmin=2)


class FakePlugin:
    """The plugin object (registered in-process with get_plugin_manager(plugins=[...]))."""

    __name__ = "fakes"

    @hookimpl
    def gperc_register_modalities(self):
        return [ModalitySpec("blob", "2-D point clouds", read_file=read_blob_file),
                ModalitySpec("seq", "letter strings", input_type="tokens")]

    @hookimpl
    def gperc_register_datasets(self):
        return [DatasetSpec("blobs", ["blob"], load_blobs, num_classes=N_CLASSES),
                DatasetSpec("letters", ["seq"], load_letters, num_classes=N_CLASSES,
                            splits=("train", "validation", "test")),
                DatasetSpec("letters-dense", ["seq"], load_letters_dense)]

    @hookimpl
    def gperc_register_tasks(self):
        small = {"latent_len": 4, "latent_dim": 16, "num_heads": 2, "num_layers": 1, "ffw_latent": 32,
                 "ffw_output": 32, "dropout": 0.1}
        training = {"epochs": 2, "batch_size": 16, "lr": 3e-3, "progress": False, "log_every": 2}
        return [
            {"name": "blob/blobs", "modalities": ["blob"], "dataset": "blobs", "model": small, "training": training,
             "baseline": {"accuracy": 0.9, "method": "nearest centre"}},
            {"name": "seq/letters", "modalities": ["seq"], "dataset": "letters", "model": small, "training": training},
            {"name": "seq/letters-dense", "modalities": ["seq"], "dataset": "letters-dense", "objective": "dense",
             "model": small, "training": training},
            {"name": "multi/blob-seq", "modalities": ["blob", "seq"], "pairing": {"blob": "blobs", "seq": "letters"},
             "model": small, "training": training, "fusion": {"dim": 16}},
        ]

    @hookimpl
    def gperc_tokenizer(self, modality, options, corpus):
        if modality != "seq" or corpus is None:
            return None
        return CharTokenizer(corpus)

    @hookimpl
    def gperc_input_array(self, modality, sample, options, tokenizer):
        if modality == "blob":
            return InputArray(array=torch.as_tensor(sample, dtype=torch.float32))
        if modality == "seq":
            return InputArray(array=torch.tensor(tokenizer.encode(sample), dtype=torch.long))
        return None


def fake_pm():
    """A plugin manager holding only the fake plugin."""
    from gperc_core.plugins.manager import get_plugin_manager

    return get_plugin_manager(plugins=[FakePlugin()], entry_points=False, strict=True)
