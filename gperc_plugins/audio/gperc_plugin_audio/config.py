"""gperc's `AudioConfig`, same signature and arithmetic, on gperc_core's validating `PerceiverConfig`.

gperc's arithmetic (kept exactly, so gperc code ports by changing the import)::

    samples_per_track   = sample_rate * duration
    samples_per_segment = int(samples_per_track / num_segments)
    input_len           = ceil(samples_per_segment / hop_length) * num_mfcc
    input_dim           = num_channels
    output_len          = 1,  output_dim = latent_dim

i.e. every (MFCC frame, coefficient) pair of a segment is one input element whose channels are
the audio channels. The plugin produces exactly this array with
``options = {"representation": "mfcc", "layout": "gperc", ...}``, which `AudioConfig.to_options`
returns; its MFCC frames are cropped to ``ceil(samples / hop_length)`` so the arithmetic holds.
"""

from __future__ import annotations

import math
from typing import Any

from gperc_core import ConfigError, PerceiverConfig

_PLUGIN = "audio"


def _positive(name: str, value: Any, kind: type = int) -> None:
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool) and value > 0
    if not ok:
        expected = "a positive number" if kind is float else "a positive integer"
        raise ConfigError(f"{_PLUGIN} plugin: AudioConfig {name}: expected {expected}, got {value!r}")


class AudioConfig(PerceiverConfig):
    """Config for audio classification with gperc's signature.

    Args:
        sample_rate: sampling rate of the audio in Hz.
        duration: duration of a track in seconds.
        hop_length: hop of the sliding FFT window, in samples.
        num_mfcc: MFCC coefficients per frame.
        num_segments: segments a track is cut into (one sample per segment).
        num_channels: audio channels (1 mono, 2 stereo).
        latent_len, latent_dim, n_classes: as in `PerceiverConfig`.
        **kwargs: any other `PerceiverConfig` field (an unknown name is a `ConfigError`).

    The derived fields (``input_len``, ``input_dim``, ``output_len``, ``output_dim``, ``n_classes``,
    ``decoder_residual``, ``decoder_projection``) override ``kwargs``, as in gperc.
    """

    extra_fields = {name: None for name in ("sample_rate", "duration", "hop_length", "num_mfcc", "num_segments",
                                            "num_channels", "samples_per_track", "samples_per_segment",
                                            "decoder_cross_attention")}

    def __init__(self, sample_rate: int, duration: int | float, hop_length: int, num_mfcc: int,
                 num_segments: int, num_channels: int, latent_len: int, latent_dim: int, n_classes: int,
                 **kwargs: Any) -> None:
        for name, value in (("sample_rate", sample_rate), ("hop_length", hop_length), ("num_mfcc", num_mfcc),
                            ("num_segments", num_segments), ("num_channels", num_channels)):
            _positive(name, value)
        _positive("duration", duration, float)
        samples_per_track = int(sample_rate * duration)
        samples_per_segment = int(samples_per_track / num_segments)
        if samples_per_segment <= 0:
            raise ConfigError(f"{_PLUGIN} plugin: AudioConfig num_segments: expected at most "
                              f"{samples_per_track} segments (one sample each), got {num_segments}")
        values = dict(kwargs)
        values.update(
            sample_rate=sample_rate, duration=duration, hop_length=hop_length, num_mfcc=num_mfcc,
            num_segments=num_segments, num_channels=num_channels,
            samples_per_track=samples_per_track, samples_per_segment=samples_per_segment,
            input_len=math.ceil(samples_per_segment / hop_length) * num_mfcc,
            input_dim=num_channels, latent_len=latent_len, latent_dim=latent_dim,
            output_len=1, output_dim=latent_dim, n_classes=n_classes,
            decoder_cross_attention=False, decoder_residual=False, decoder_projection=True,
        )
        super().__init__(**values)

    @property
    def num_frames(self) -> int:
        """MFCC frames per segment: ``ceil(samples_per_segment / hop_length)``."""
        return math.ceil(self.samples_per_segment / self.hop_length)

    def to_options(self) -> dict[str, Any]:
        """Return the audio plugin options that produce this config's input array: MFCC elements in
        gperc's layout, ``[num_frames * num_mfcc, num_channels]``, over one segment's duration."""
        return {
            "representation": "mfcc",
            "layout": "gperc",
            "sample_rate": int(self.sample_rate),
            "duration": self.samples_per_segment / self.sample_rate,
            "hop_length": int(self.hop_length),
            "num_mfcc": int(self.num_mfcc),
            "mono": int(self.num_channels) == 1,
            "num_channels": int(self.num_channels),
        }
