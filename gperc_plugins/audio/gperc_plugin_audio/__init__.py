"""gperc-plugin-audio: the audio modality of gperc.

Waveforms (files, arrays or ``{"waveform", "sample_rate"}`` dicts) become Perceiver input arrays:
log-mel or MFCC frames from torchaudio, or raw samples with 1-D Fourier position features. The
plugin registers the ``audio`` modality, the ``spoken-digits`` dataset (synthesised offline by
espeak-ng and flite) and the ``audio-folder`` dataset (a user's ``<label>/<file>.wav`` folder).

Heavy imports (torchaudio, soundfile) happen inside functions, so importing this package is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

GPERC_CORE_REQUIRES = ">=0.1,<0.2"
"""The gperc-core versions this plugin supports (also its distribution's Requires-Dist)."""

PLUGIN_NAME = "audio"
"""The plugin's entry-point name, used in its error messages."""

from .config import AudioConfig  # noqa: E402

__all__ = ["__version__", "GPERC_CORE_REQUIRES", "PLUGIN_NAME", "AudioConfig"]
