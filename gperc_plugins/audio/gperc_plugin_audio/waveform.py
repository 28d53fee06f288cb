"""Waveforms in: read a raw audio sample in any accepted form and bring it to the task's format.

Accepted samples (the ``audio`` value of a dataset sample, or what a user passes):

- a path (``str`` / ``pathlib.Path``) to a file soundfile reads (WAV, FLAC, OGG...);
- a dict ``{"waveform": array, "sample_rate": int}`` (or ``{"path": ...}``);
- a tuple ``(waveform, sample_rate)``;
- a bare array (torch tensor or numpy array), taken to be at the task's ``sample_rate``.

An array is ``[T]`` (mono) or ``[C, T]`` channels-first; float in [-1, 1] or integer PCM (scaled
by its dtype's range).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from gperc_core import InputError
from gperc_core.errors import describe

from . import PLUGIN_NAME
from .options import AudioOptions

_MAX_CHANNELS = 16


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read an audio file with soundfile; return ``(waveform [C, T] float32, sample_rate)``."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{PLUGIN_NAME} plugin: sample: expected an existing audio file, got {str(path)!r} "
                         f"(no such file)")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError
        raise InputError(f"{PLUGIN_NAME} plugin: sample: expected an audio file soundfile can read, got "
                         f"{str(path)!r} ({exc})") from exc
    return torch.from_numpy(data.T.copy()), int(rate)


def coerce_sample(sample: Any, default_rate: int) -> tuple[torch.Tensor, int]:
    """Turn any accepted sample form into ``(waveform [C, T] float32, sample_rate)``.

    Raises `InputError` naming the plugin, the argument, the expected and the actual value.
    """
    if isinstance(sample, (str, Path)):
        return _check_clip(*read_audio(sample))
    if isinstance(sample, dict):
        if "waveform" in sample:
            rate = sample.get("sample_rate", default_rate)
            return _check_clip(_as_tensor(sample["waveform"], "sample['waveform']"), _check_rate(rate))
        if "path" in sample:
            return _check_clip(*read_audio(sample["path"]))
        raise InputError(f"{PLUGIN_NAME} plugin: sample: expected a dict with 'waveform' (and 'sample_rate') or "
                         f"'path', got keys {sorted(sample)}")
    if isinstance(sample, tuple) and len(sample) == 2:
        return _check_clip(_as_tensor(sample[0], "sample[0]"), _check_rate(sample[1]))
    return _check_clip(_as_tensor(sample, "sample"), default_rate)


def _check_rate(rate: Any) -> int:
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise InputError(f"{PLUGIN_NAME} plugin: sample_rate: expected a positive integer (Hz), got {rate!r}")
    return rate


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy ships with torch
            np = None
        if np is not None and isinstance(value, np.ndarray):
            if value.dtype.kind not in "fiu":
                raise InputError(f"{PLUGIN_NAME} plugin: {name}: expected a numeric waveform array, got "
                                 f"{describe(value)}")
            value = torch.from_numpy(np.ascontiguousarray(value))
        else:
            raise InputError(f"{PLUGIN_NAME} plugin: {name}: expected a waveform (torch tensor or numpy array "
                             f"[T] or [C, T]), a file path, or a dict with 'waveform', got {describe(value)}")
    if value.dtype == torch.bool or value.dtype.is_complex:
        raise InputError(f"{PLUGIN_NAME} plugin: {name}: expected a real float or integer PCM waveform, got "
                         f"{describe(value)}")
    if value.dim() == 1:
        value = value.unsqueeze(0)
    if value.dim() != 2:
        raise InputError(f"{PLUGIN_NAME} plugin: {name}: expected a waveform of shape [T] or [C, T], got "
                         f"{describe(value)}")
    if value.shape[0] > _MAX_CHANNELS and value.shape[1] <= _MAX_CHANNELS:
        raise InputError(f"{PLUGIN_NAME} plugin: {name}: expected channels first, [C, T] with C <= "
                         f"{_MAX_CHANNELS}, got {describe(value)} (transpose a [T, C] array)")
    if not value.dtype.is_floating_point:
        scale = float(torch.iinfo(value.dtype).max) + 1.0
        value = value.to(torch.float32) / scale
    return value.to(torch.float32)


def _check_clip(waveform: torch.Tensor, rate: int) -> tuple[torch.Tensor, int]:
    if waveform.shape[-1] == 0 or waveform.shape[0] == 0:
        raise InputError(f"{PLUGIN_NAME} plugin: sample: expected a non-empty audio clip (at least one sample), "
                         f"got an empty clip of shape {tuple(waveform.shape)}")
    if not bool(torch.isfinite(waveform).all()):
        raise InputError(f"{PLUGIN_NAME} plugin: sample: expected finite sample values, got NaN or inf")
    return waveform, rate


@functools.lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.Resample(orig, new)


def resample(waveform: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """Resample ``[C, T]`` from ``orig`` to ``new`` Hz with torchaudio (kernel cached per rate pair)."""
    if orig == new:
        return waveform
    with torch.no_grad():
        return _resampler(orig, new)(waveform)


def trim_silence(waveform: torch.Tensor, threshold: float) -> torch.Tensor:
    """Cut leading and trailing samples whose amplitude (max over channels) is below ``threshold``
    times the clip's peak; a silent clip is returned unchanged."""
    level = waveform.abs().amax(dim=0)
    loud = (level > threshold * level.max()).nonzero().flatten()
    if loud.numel() == 0:
        return waveform
    return waveform[:, int(loud[0]): int(loud[-1]) + 1]


def fix_length(waveform: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Zero-pad at the end or crop ``[C, T]`` to exactly ``num_samples`` samples."""
    t = waveform.shape[-1]
    if t >= num_samples:
        return waveform[:, :num_samples]
    return torch.nn.functional.pad(waveform, (0, num_samples - t))


def prepare_waveform(sample: Any, opts: AudioOptions) -> torch.Tensor:
    """Return the sample as the task wants it: ``[C, T]`` float32 at ``opts.sample_rate``, mixed down,
    trimmed, peak-normalised and padded / cropped as the options say."""
    waveform, rate = coerce_sample(sample, opts.sample_rate)
    if opts.mono and waveform.shape[0] > 1:
        waveform = waveform.mean(dim=0, keepdim=True)
    expected = opts.expected_channels
    if expected is not None and waveform.shape[0] != expected:
        raise InputError(f"{PLUGIN_NAME} plugin: sample: expected {expected} audio channel(s) (options "
                         f"mono/num_channels), got {waveform.shape[0]}")
    waveform = resample(waveform, rate, opts.sample_rate)
    if opts.trim:
        waveform = trim_silence(waveform, opts.trim_threshold)
    if opts.normalize:
        peak = waveform.abs().max()
        if peak > 0:
            waveform = waveform / peak
    if opts.num_samples:
        waveform = fix_length(waveform, opts.num_samples)
    if waveform.shape[-1] == 0:
        raise InputError(f"{PLUGIN_NAME} plugin: sample: expected a clip that is not empty after resampling, "
                         f"got {tuple(waveform.shape)}")
    return waveform
