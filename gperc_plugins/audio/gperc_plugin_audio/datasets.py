"""The audio plugin's datasets: ``spoken-digits`` (synthesised), ``audio-folder`` (your audio files,
the `datasets` ``audiofolder`` builder) and ``audio-from-disk`` (a ``save_to_disk`` folder).

Items are ``{"audio": {"path": ...}, "target": int}`` (or ``{"audio": {"waveform", "sample_rate"}}``
for audio stored as bytes): the waveform of a path is read by the input-array hook, so a dataset
costs no memory up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from gperc_core import TaskError, UserData, UserSamples

from . import PLUGIN_NAME
from .synth import FESTIVAL_VOICES, FLITE_VOICES, SynthesisPlan, default_cache_dir, synthesize

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
    ``train_flite_voices`` (default kal16, awb, slt) and the festival voices ``train_festival_voices``
    (default none; ``ked`` needs ``apt-get install festival festvox-kdlpc16k``); ``test`` = the held-out
    flite voice ``test_voice`` (default rms). Options: ``cache_dir`` (default
    ``$GPERC_CACHE/spoken-digits``), ``test_voice``, ``train_flite_voices``, ``train_festival_voices``,
    ``validation_voice`` and any `SynthesisPlan` field (e.g. ``digits``). With ``validation_voice`` (a
    flite voice in neither of the others) there is also a ``validation`` split of that voice's clips: a
    held-out voice, as the test is, for model selection.
    """
    opts = dataset_options(options)
    test_voice = opts.get("test_voice", DEFAULT_TEST_VOICE)
    validation_voice = opts.get("validation_voice")
    _check_split(split, ("train", "validation", "test") if validation_voice else ("train", "test"), "spoken-digits")
    train_flite = tuple(opts.get("train_flite_voices", DEFAULT_TRAIN_FLITE))
    if test_voice not in FLITE_VOICES:
        raise TaskError(f"{PLUGIN_NAME} plugin: options['test_voice']: expected a flite voice among {FLITE_VOICES}, "
                        f"got {test_voice!r}")
    if test_voice in train_flite:
        raise TaskError(f"{PLUGIN_NAME} plugin: options['train_flite_voices']: expected voices other than the "
                        f"held-out test_voice={test_voice!r}, got {list(train_flite)}")
    if validation_voice is not None and (validation_voice not in FLITE_VOICES or validation_voice == test_voice
                                         or validation_voice in train_flite):
        raise TaskError(f"{PLUGIN_NAME} plugin: options['validation_voice']: expected a flite voice among "
                        f"{FLITE_VOICES} other than test_voice={test_voice!r} and train_flite_voices="
                        f"{list(train_flite)}, got {validation_voice!r}")
    train_festival = opts.get("train_festival_voices", ())
    if isinstance(train_festival, str) or not isinstance(train_festival, Sequence) or any(
            v not in FESTIVAL_VOICES for v in train_festival):
        raise TaskError(f"{PLUGIN_NAME} plugin: options['train_festival_voices']: expected a list of voices among "
                        f"{tuple(FESTIVAL_VOICES)}, got {train_festival!r}")
    plan_opts = dict(opts)
    plan_opts.setdefault("flite_voices", sorted(set(train_flite) | {test_voice} | (
        {validation_voice} if validation_voice else set())))
    plan_opts.setdefault("festival_voices", sorted(set(train_festival)))
    plan = SynthesisPlan.from_options(plan_opts)
    root = Path(opts["cache_dir"]) if opts.get("cache_dir") else None
    clips = synthesize(plan, root)
    base = root or default_cache_dir()
    if split in ("test", "validation"):
        voice = test_voice if split == "test" else validation_voice
        chosen = [c for c in clips if c.synth == "flite" and c.voice == voice]
    else:
        chosen = [c for c in clips if c.synth == "espeak-ng" or (c.synth == "flite" and c.voice in train_flite)
                  or (c.synth == "festival" and c.voice in train_festival)]
    if not chosen:
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'spoken-digits' split {split!r}: expected clips, got none "
                        f"(check test_voice / train_flite_voices / the plan options)")
    return ClipDataset(paths=[base / c.file for c in chosen], targets=[c.label for c in chosen],
                       classes=[str(d) for d in range(10)],
                       meta=[{"synth": c.synth, "voice": c.voice} for c in chosen])


def read_audio_cell(cell: Any) -> Any:
    """Return an audio cell of a `datasets` table as the raw sample the input-array hook takes:
    ``{"path"}`` stays a path (read by the hook with soundfile), ``{"bytes"}`` is decoded here with
    soundfile into ``{"waveform", "sample_rate"}`` (`datasets`' own audio decoder needs torchcodec)."""
    if isinstance(cell, Mapping):
        if cell.get("bytes"):
            import io

            import soundfile
            import torch

            data, rate = soundfile.read(io.BytesIO(cell["bytes"]), dtype="float32", always_2d=True)
            return {"waveform": torch.from_numpy(data.T.copy()), "sample_rate": int(rate)}
        if cell.get("path"):
            return {"path": str(cell["path"])}
        if "array" in cell:
            import numpy as np

            rate = cell.get("sampling_rate")
            return {"waveform": np.asarray(cell["array"], dtype=np.float32), **({"sample_rate": int(rate)} if rate else {})}
    return cell


def check_audio_cell(cell: Any) -> None:
    """Raise when the audio file (or bytes) of ``cell`` is not one soundfile can open (its header)."""
    if not isinstance(cell, Mapping) or not (cell.get("bytes") or cell.get("path")):
        return
    import io

    import soundfile

    soundfile.info(io.BytesIO(cell["bytes"]) if cell.get("bytes") else str(cell["path"]))


AUDIO_FOLDER = UserData(plugin=f"{PLUGIN_NAME} plugin", dataset="audio-folder", modality="audio",
                        read=read_audio_cell, check=check_audio_cell)
AUDIO_FROM_DISK = UserData(plugin=f"{PLUGIN_NAME} plugin", dataset="audio-from-disk", modality="audio",
                           read=read_audio_cell, check=check_audio_cell)


def load_audio_folder(split: str, options: Mapping[str, Any] | None = None) -> UserSamples:
    """Load a folder of audio files laid out as ``<root>/<label>/<file>.wav``, or as
    ``<root>/<split>/<label>/<file>.wav``, with the `datasets` ``audiofolder`` builder (files are
    decoded by this plugin's soundfile reader).

    Options: ``root`` (required), ``test_fraction`` (default 0.2) and ``split_seed`` (default 0):
    without split folders a file is in ``test`` when a hash of the seed and its path relative to
    ``root`` falls below the fraction; ``on_error`` (``"fail"`` / ``"skip"`` unreadable files).
    Labels are the sorted class folder names (see `gperc_core.UserData`).
    """
    return AUDIO_FOLDER.folder("audiofolder", split, dataset_options(options))


def load_audio_from_disk(split: str, options: Mapping[str, Any] | None = None) -> UserSamples:
    """A dataset saved with ``save_to_disk`` at ``options["path"]``: column ``audio`` (or
    ``options["column"]``; an ``Audio`` feature, a path, or ``{"array", "sampling_rate"}``) and
    ``label`` (or ``options["label_column"]``)."""
    return AUDIO_FROM_DISK.saved(split, dataset_options(options))
