"""Waveform -> Perceiver input array: log-mel or MFCC frames, or raw samples with Fourier features."""

from __future__ import annotations

import functools
import math

import torch

from gperc_core import PositionGrid, fourier_features

from .options import AudioOptions

_LOG_FLOOR = 1e-6


@functools.lru_cache(maxsize=8)
def _mel(sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                                                n_mels=n_mels)


@functools.lru_cache(maxsize=8)
def _mfcc(sample_rate: int, n_fft: int, hop_length: int, n_mels: int, num_mfcc: int) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.MFCC(sample_rate=sample_rate, n_mfcc=num_mfcc, log_mels=True,
                                      melkwargs={"n_fft": n_fft, "hop_length": hop_length, "n_mels": n_mels})


@functools.lru_cache(maxsize=8)
def _time_features(length: int, bands: int) -> torch.Tensor:
    return fourier_features([length], bands)


def num_frames(num_samples: int, hop_length: int) -> int:
    """Frames the plugin keeps for a clip of ``num_samples``: ``ceil(num_samples / hop_length)`` (gperc's
    arithmetic; torchaudio's centred STFT makes ``floor(n / hop) + 1``, cropped to this)."""
    return max(1, math.ceil(num_samples / hop_length))


def frame_features(waveform: torch.Tensor, opts: AudioOptions) -> torch.Tensor:
    """Return the ``[C, bins, frames]`` log-mel (``log(mel + 1e-6)``) or MFCC features of ``[C, T]``."""
    with torch.no_grad():
        if opts.representation == "mfcc":
            feats = _mfcc(opts.sample_rate, opts.n_fft, opts.hop_length, opts.n_mels, opts.num_mfcc)(waveform)
        else:
            feats = torch.log(_mel(opts.sample_rate, opts.n_fft, opts.hop_length, opts.n_mels)(waveform) + _LOG_FLOOR)
    feats = feats[..., : num_frames(waveform.shape[-1], opts.hop_length)]
    if opts.cmvn:
        # "clip" (True): one mean and std per clip (loudness-invariant, spectral shape kept);
        # "bin": a mean and std per feature bin over the frames (removes a synthesiser's spectral tilt)
        dims = (-1,) if opts.cmvn == "bin" else (-2, -1)
        end = signal_frames(waveform, opts.hop_length) if opts.cmvn_signal else feats.shape[-1]
        stats = feats[..., :end]
        mean = stats.mean(dim=dims, keepdim=True)
        std = stats.std(dim=dims, keepdim=True, unbiased=False).clamp_min(1e-5)
        feats = (feats - mean) / std
        if end < feats.shape[-1]:
            # the padding becomes as quiet as the word gets (its minimum, per bin or per clip), not a log
            # floor standardised into tens of standard deviations below it
            feats[..., end:] = feats[..., :end].amin(dim=dims, keepdim=True)
    return feats


def signal_frames(waveform: torch.Tensor, hop_length: int) -> int:
    """Frames of ``[C, T]`` up to its last non-zero sample (at least 2, at most all): the clip without the
    zero padding that `fix_length` appends, whose constant log floor would otherwise dominate the cmvn
    statistics of a short word (and make them depend on its duration). With ``cmvn_signal`` the
    statistics come from these frames and the padded frames take the standardised minimum."""
    loud = (waveform.abs().amax(dim=0) > 0).nonzero()
    total = num_frames(waveform.shape[-1], hop_length)
    end = int(loud[-1]) + 1 if loud.numel() else waveform.shape[-1]
    return min(total, max(2, num_frames(end, hop_length)))


def to_array(waveform: torch.Tensor, opts: AudioOptions) -> torch.Tensor:
    """Return the float32 input array of a prepared ``[C, T]`` waveform.

    - ``raw``: ``[T, C (+ F)]``, each sample's channels;
    - frames, ``layout="frames"``: ``[frames, C * bins (+ F)]``;
    - MFCC, ``layout="gperc"``: ``[frames * num_mfcc, C]`` (gperc's AudioConfig arithmetic; frame-major).

    With ``fourier_bands > 0`` the elements have time position features, ``F = 2 * fourier_bands + 1``
    channels. Clips of a fixed ``duration`` carry none: they declare a `PositionGrid` (`position_grid`)
    and the model computes the features once. Variable-length clips (``duration`` 0) keep the ``F``
    channels per clip, because their positions are relative to each clip's own length, which no
    single grid describes.
    """
    if opts.representation == "raw":
        array = waveform.transpose(0, 1)
    else:
        feats = frame_features(waveform, opts)  # [C, bins, frames]
        if opts.layout == "gperc":
            return feats.permute(2, 1, 0).reshape(-1, feats.shape[0]).contiguous().float()
        array = feats.permute(2, 0, 1).reshape(feats.shape[-1], -1)  # [frames, C * bins]
    if opts.bands and not opts.num_samples:
        array = torch.cat([array, _time_features(array.shape[0], opts.bands)], dim=1)
    return array.contiguous().float()


def position_grid(opts: AudioOptions, length: int) -> PositionGrid | None:
    """The time grid of a fixed-length clip's ``length`` elements, whose Fourier features the model
    computes; ``None`` without time features, for variable-length clips and for the gperc layout."""
    if not opts.bands or not opts.num_samples or opts.layout == "gperc":
        return None
    return PositionGrid((int(length),), int(opts.bands))


def array_width(opts: AudioOptions, channels: int = 1) -> int:
    """The channel width ``c`` of the arrays `to_array` makes for clips of ``channels`` channels."""
    if opts.layout == "gperc":
        return channels
    if opts.representation == "raw":
        base = channels
    else:
        base = channels * (opts.num_mfcc if opts.representation == "mfcc" else opts.n_mels)
    return base + (2 * opts.bands + 1 if opts.bands and not opts.num_samples else 0)
