"""The audio plugin's datasets: ``spoken-digits`` (synthesised) and ``audio-folder`` (your WAV files).

Both return a `ClipDataset`: a sequence whose items are ``{"audio": {"path": ...}, "target": int}``
(the waveform is read by the input-array hook, so a dataset costs no memory up front).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from gperc_core import TaskError

from . import PLUGIN_NAME
from .synth import FLITE_VOICES, SynthesisPlan, default_cache_dir, synthesize

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
DEFAULT_TEST_VOICE = "rms"
DEFAULT_TRAIN_FLITE = ("kal16", "awb", "slt")


@dataclass
class ClipDataset:
    """Clips on disk with integer labels; ``meta[i]`` says who spoke clip ``i`` (synth, voice)."""

    paths: list[Path]
    targets: list[int]
    classes: list[str]
    meta: list[dict[str, str]]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"index: expected an int, got {type(index).__name__}")
        return {"audio": {"path": str(self.paths[index])}, "target": self.targets[index]}


def dataset_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The dataset keys of ``options``: its own keys, overlaid by an ``options["audio"]`` table if any."""
    merged = dict(options or {})
    nested = merged.pop("audio", None)
    if isinstance(nested, Mapping):
        merged.update(nested)
    return merged


def _check_split(split: str, splits: Sequence[str], dataset: str) -> None:
    if split not in splits:
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset {dataset!r} split: expected one of {list(splits)}, "
                        f"got {split!r}")


def load_spoken_digits(split: str, options: Mapping[str, Any] | None = None) -> ClipDataset:
    """Load split ``train`` or ``test`` of spoken digits, synthesising the clips on first use.

    Split by synthesiser voice (DATASETS.md): ``train`` = every espeak-ng clip plus the flite voices
    ``train_flite_voices`` (default kal16, awb, slt); ``test`` = the held-out flite voice
    ``test_voice`` (default rms). Options: ``cache_dir`` (default ``$GPERC_CACHE/spoken-digits``),
    ``test_voice``, ``train_flite_voices`` and any `SynthesisPlan` field (e.g. ``digits``).
    """
    _check_split(split, ("train", "test"), "spoken-digits")
    opts = dataset_options(options)
    test_voice = opts.get("test_voice", DEFAULT_TEST_VOICE)
    train_flite = tuple(opts.get("train_flite_voices", DEFAULT_TRAIN_FLITE))
    if test_voice not in FLITE_VOICES:
        raise TaskError(f"{PLUGIN_NAME} plugin: options['test_voice']: expected a flite voice among {FLITE_VOICES}, "
                        f"got {test_voice!r}")
    if test_voice in train_flite:
        raise TaskError(f"{PLUGIN_NAME} plugin: options['train_flite_voices']: expected voices other than the "
                        f"held-out test_voice={test_voice!r}, got {list(train_flite)}")
    plan_opts = dict(opts)
    plan_opts.setdefault("flite_voices", sorted(set(train_flite) | {test_voice}))
    plan = SynthesisPlan.from_options(plan_opts)
    root = Path(opts["cache_dir"]) if opts.get("cache_dir") else None
    clips = synthesize(plan, root)
    base = root or default_cache_dir()
    if split == "test":
        chosen = [c for c in clips if c.synth == "flite" and c.voice == test_voice]
    else:
        chosen = [c for c in clips if c.synth == "espeak-ng" or c.voice in train_flite]
    if not chosen:
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'spoken-digits' split {split!r}: expected clips, got none "
                        f"(check test_voice / train_flite_voices / the plan options)")
    return ClipDataset(paths=[base / c.file for c in chosen], targets=[c.label for c in chosen],
                       classes=[str(d) for d in range(10)],
                       meta=[{"synth": c.synth, "voice": c.voice} for c in chosen])


def _stable_fraction(text: str) -> float:
    """A number in [0, 1) fixed by ``text`` (so a file keeps its split when others are added)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2 ** 32


def load_audio_folder(split: str, options: Mapping[str, Any] | None = None) -> ClipDataset:
    """Load a folder of audio files laid out as ``<root>/<label>/<file>.wav``, or as
    ``<root>/<split>/<label>/<file>.wav`` when ``<root>/<split>`` exists.

    Options: ``root`` (required), ``test_fraction`` (default 0.2: without split folders a file is in
    ``test`` when a hash of its relative path falls below it). Labels are the sorted class folder names.
    """
    _check_split(split, ("train", "test"), "audio-folder")
    opts = dataset_options(options)
    root = opts.get("root")
    if not root or not Path(root).is_dir():
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'audio-folder' options['root']: expected a folder laid out "
                        f"as <label>/<file>.wav, got {root!r}")
    root = Path(root)
    fraction = float(opts.get("test_fraction", 0.2))
    if not 0.0 < fraction < 1.0:
        raise TaskError(f"{PLUGIN_NAME} plugin: options['test_fraction']: expected a number in (0, 1), got {fraction}")
    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / split if split_dirs else root
    classes = sorted(p.name for p in (root / "train" if split_dirs else root).iterdir() if p.is_dir())
    if not classes:
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'audio-folder' options['root']: expected class folders "
                        f"<label>/ under {str(root)!r}, got none")
    paths, targets = [], []
    for index, name in enumerate(classes):
        for path in sorted((base / name).glob("*")):
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            if not split_dirs:
                in_test = _stable_fraction(str(path.relative_to(root))) < fraction
                if in_test != (split == "test"):
                    continue
            paths.append(path)
            targets.append(index)
    if not paths:
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'audio-folder' split {split!r}: expected audio files "
                        f"({', '.join(AUDIO_SUFFIXES)}) under {str(base)!r}, got none")
    return ClipDataset(paths=paths, targets=targets, classes=classes, meta=[{"synth": "file"} for _ in paths])
