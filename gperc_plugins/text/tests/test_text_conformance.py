"""The gperc conformance suite on the text plugin: bytes, SentencePiece, and masked language modelling."""

from __future__ import annotations

import atexit
import shutil
import tempfile

import gperc_plugin_text.plugin as text_plugin
from gperc_core.testing import PluginConformance

TEXTS = ["a small domesticated carnivorous mammal with soft fur", "move fast using the feet",
         "a building where people live", "the period of time between sunrise and sunset"]


class TestTextBytes(PluginConformance):
    plugin = text_plugin

    def make_samples(self, modality):
        return TEXTS

    def options(self, modality):
        return {"tokenizer": "bytes", "max_len": 40}


class TestTextSentencePiece(PluginConformance):
    plugin = text_plugin
    cache = tempfile.mkdtemp(prefix="gperc-text-conformance-")
    atexit.register(shutil.rmtree, cache, True)

    def make_samples(self, modality):
        return TEXTS * 3

    def options(self, modality):
        return {"vocab_size": 300, "cache_dir": self.cache, "max_len": 16}


class TestTextMaskedLM(TestTextSentencePiece):
    def options(self, modality):
        return {**super().options(modality), "task": "mlm", "mask_seed": 0}
