"""gperc-plugin-text: the text modality of gperc.

Text becomes token ids through a SentencePiece unigram model (byte fallback) trained on the task's
corpus and cached, or through raw UTF-8 bytes; the dataset is WordNet's noun and verb glosses
labelled by lexicographer file (41 classes); tasks are sequence classification and masked language
modelling. `TextConfig` and `BinaryConfig` are gperc's config classes with gperc's signatures.
"""

from __future__ import annotations

__version__ = "0.1.0"

GPERC_CORE_REQUIRES = ">=0.1,<0.2"
"""The gperc-core versions this plugin works with (also its distribution's Requires-Dist)."""

PLUGIN = "gperc-plugin-text"
"""Distribution name; every error this plugin raises starts with it."""

from .config import BinaryConfig, TextConfig  # noqa: E402
from .tokenizers import BytesTokenizer, SentencePieceTokenizer  # noqa: E402

__all__ = ["__version__", "GPERC_CORE_REQUIRES", "PLUGIN", "TextConfig", "BinaryConfig", "BytesTokenizer",
           "SentencePieceTokenizer"]
