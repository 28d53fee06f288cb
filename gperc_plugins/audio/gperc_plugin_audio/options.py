"""The per-task options of the ``audio`` modality, validated once into an `AudioOptions`.

Keys the plugin reads from ``options`` (every other key is left to other consumers, e.g. the
dataset keys of `gperc_plugin_audio.datasets` or the core's ``tokenizer``):

=================  ========================================================================
representation     ``"logmel"`` (default), ``"mfcc"`` or ``"raw"`` (samples + Fourier features)
layout             ``"frames"`` (default): one element per frame, ``[frames, C * bins]``;
                   ``"gperc"`` (mfcc only): gperc's ``[frames * num_mfcc, C]``
sample_rate        rate every clip is resampled to, Hz (default 16000)
duration           seconds every clip is padded / cropped to; ``None``/0 keeps its length
hop_length         STFT hop in samples (default 160)
n_fft              STFT window in samples (default 400)
n_mels             mel bins (default 40)
num_mfcc           MFCC coefficients (default 13)
fourier_bands      Fourier bands of the time position features (the model computes them for clips of
                   a fixed duration; variable-length clips carry them as channels);
                   default 16 for ``raw``, 0 (none) for frames
mono               mix channels down to one (default True)
num_channels       expected channel count after mixing (default: 1 when mono, else any)
trim               cut leading / trailing silence (default False)
trim_threshold     silence is below this fraction of the clip's peak (default 0.02)
normalize          scale each clip to peak 1 (default True)
cmvn               standardise the frames: ``true``/``"clip"`` with the clip's mean and std (default),
                   ``"bin"`` per feature bin over the frames, ``false`` not at all (frames only)
cmvn_signal        take the ``cmvn`` statistics over the frames up to the clip's last non-zero sample,
                   leaving out the zero padding up to ``duration``, which then takes the standardised
                   minimum of those frames (default False: statistics over every frame)
=================  ========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from gperc_core import USER_DATA_OPTIONS, ConfigError, Option
from gperc_core.plugins.specs import dataclass_options

from . import PLUGIN_NAME

REPRESENTATIONS = ("logmel", "mfcc", "raw")
LAYOUTS = ("frames", "gperc")

OPTION_DOCS: dict[str, str] = {
    "representation": "logmel, mfcc, or raw samples with Fourier position features",
    "layout": "frames ([frames, C*bins]) or gperc (mfcc only: [frames*num_mfcc, C])",
    "sample_rate": "Hz every clip is resampled to",
    "duration": "seconds every clip is padded/cropped to; 0 keeps each clip's length",
    "hop_length": "STFT hop in samples",
    "n_fft": "STFT window in samples",
    "n_mels": "mel bins",
    "num_mfcc": "MFCC coefficients",
    "fourier_bands": "Fourier bands of time features per element (default 16 raw, 0 frames)",
    "mono": "mix channels down to one",
    "num_channels": "expected channels after mixing (default 1 when mono)",
    "trim": "cut leading and trailing silence",
    "trim_threshold": "silence threshold as a fraction of the peak",
    "normalize": "scale each clip to peak 1",
    "cmvn": "standardise frames: true/'clip' per clip, 'bin' per feature bin, false: off",
    "cmvn_signal": "cmvn statistics over the clip's own frames, not its zero padding",
}

_OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "representation": str, "layout": str, "sample_rate": int, "duration": float, "hop_length": int, "n_fft": int,
    "n_mels": int, "num_mfcc": int, "fourier_bands": int, "mono": bool, "num_channels": int, "trim": bool,
    "trim_threshold": float, "normalize": bool, "cmvn": (bool, str),
    "cmvn_signal": bool,
}
_CHOICES: dict[str, tuple[Any, ...]] = {"representation": REPRESENTATIONS, "layout": LAYOUTS}

DATASET_OPTIONS: dict[str, Option] = {
    "test_voice": Option(str, None, "spoken-digits: the held-out flite voice of the test split (default rms)"),
    "train_flite_voices": Option(list, None, "spoken-digits: flite voices of the train split (default kal16, awb, slt)"),
    "train_festival_voices": Option(list, None, "spoken-digits: festival voices added to the train split (default "
                                    "none; ked: apt-get install festival festvox-kdlpc16k)"),
    "validation_voice": Option(str, None, "spoken-digits: a held-out flite voice that makes a 'validation' split"),
    "cache_dir": Option(str, None, "spoken-digits: where the clips are synthesised (default $GPERC_CACHE/spoken-digits)"),
    "root": Option(str, None, "audio-folder: folder of <label>/<file>.wav (or <split>/<label>/<file>.wav)"),
    **{name: USER_DATA_OPTIONS[name] for name in ("path", "column", "label_column", "test_fraction", "split_seed",
                                                  "on_error")},
    **{name: Option(list, None, f"spoken-digits synthesis plan: {name}") for name in (
        "digits", "espeak_accents", "espeak_variants", "espeak_speeds", "espeak_pitches", "flite_voices",
        "flite_stretches", "flite_pitches", "festival_voices")},
}

AUGMENT_OPTIONS: dict[str, Option] = {
    "augment": Option((bool, list), False, "training-time masks of frames: false, true (freq_mask + time_mask) or "
                      "a list of: freq_mask, time_mask, time_shift, freq_warp, time_stretch (gperc_plugin_audio.augment)"),
}


@dataclass(frozen=True)
class AudioOptions:
    """Validated audio options (see the module docstring for each field)."""

    representation: str = "logmel"
    layout: str = "frames"
    sample_rate: int = 16000
    duration: float | None = None
    hop_length: int = 160
    n_fft: int = 400
    n_mels: int = 40
    num_mfcc: int = 13
    fourier_bands: int | None = None
    mono: bool = True
    num_channels: int | None = None
    trim: bool = False
    trim_threshold: float = 0.02
    normalize: bool = True
    cmvn: bool | str = True
    cmvn_signal: bool = False

    @property
    def bands(self) -> int:
        """Fourier bands actually used: the option, else 16 for raw samples and 0 for frames."""
        if self.fourier_bands is not None:
            return self.fourier_bands
        return 16 if self.representation == "raw" else 0

    @property
    def num_samples(self) -> int | None:
        """Samples per clip after padding/cropping, or ``None`` for variable-length clips."""
        return round(self.duration * self.sample_rate) if self.duration else None

    @property
    def expected_channels(self) -> int | None:
        """Channels every clip must have after mixing: 1 when mono, else ``num_channels``."""
        return 1 if self.mono else self.num_channels

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> "AudioOptions":
        """Read and validate the audio keys of ``options``; raise `ConfigError` naming the key."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in options.items() if k in known}
        opts = cls(**values)
        opts._validate()
        return opts

    def _validate(self) -> None:
        if self.representation not in REPRESENTATIONS:
            _bad("representation", f"one of {REPRESENTATIONS}", self.representation)
        if self.layout not in LAYOUTS:
            _bad("layout", f"one of {LAYOUTS}", self.layout)
        if self.layout == "gperc" and self.representation != "mfcc":
            _bad("layout", "'frames' unless representation='mfcc' ('gperc' is gperc's MFCC layout)", self.layout)
        for name in ("sample_rate", "hop_length", "n_fft", "n_mels", "num_mfcc"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                _bad(name, "a positive integer", value)
        if self.duration is not None and (not isinstance(self.duration, (int, float)) or isinstance(
                self.duration, bool) or self.duration < 0):
            _bad("duration", "a number of seconds >= 0 (0 keeps each clip's length)", self.duration)
        if self.fourier_bands is not None and (not isinstance(self.fourier_bands, int) or isinstance(
                self.fourier_bands, bool) or self.fourier_bands < 0):
            _bad("fourier_bands", "an integer >= 0", self.fourier_bands)
        if self.num_channels is not None and (not isinstance(self.num_channels, int) or self.num_channels <= 0
                                              or (self.mono and self.num_channels != 1)):
            _bad("num_channels", "a positive integer (1 when mono=true)", self.num_channels)
        if self.cmvn not in (True, False, "clip", "bin") or isinstance(self.cmvn, int) and not isinstance(self.cmvn, bool):
            _bad("cmvn", "true, false, 'clip' or 'bin'", self.cmvn)
        for name in ("mono", "trim", "normalize", "cmvn_signal"):
            if not isinstance(getattr(self, name), bool):
                _bad(name, "true or false", getattr(self, name))
        if not isinstance(self.trim_threshold, (int, float)) or not 0 <= self.trim_threshold < 1:
            _bad("trim_threshold", "a number in [0, 1)", self.trim_threshold)
        if self.representation == "mfcc" and self.num_mfcc > self.n_mels:
            _bad("num_mfcc", f"at most n_mels={self.n_mels}", self.num_mfcc)


def _bad(name: str, expected: str, got: Any) -> None:
    raise ConfigError(f"{PLUGIN_NAME} plugin: options[{name!r}]: expected {expected}, got {got!r}")


def declared_options() -> dict[str, Option]:
    """The audio modality's declared options: every `AudioOptions` field (its type, default and
    `OPTION_DOCS` line) plus the dataset keys of `DATASET_OPTIONS`."""
    return {**dataclass_options(AudioOptions, OPTION_DOCS, _OPTION_TYPES, _CHOICES), **DATASET_OPTIONS,
            **AUGMENT_OPTIONS}
