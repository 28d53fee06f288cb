"""The gperc plugin conformance suite run on the installed audio plugin."""

import math

import torch

from gperc_core.testing import PluginConformance


class TestAudioConformance(PluginConformance):
    plugin = "audio"

    def make_samples(self, modality):
        clips = []
        for seconds, freq in ((0.20, 300.0), (0.35, 900.0), (0.5, 2000.0)):
            t = torch.arange(int(seconds * 8000)) / 8000
            clips.append((torch.sin(2 * math.pi * freq * t), 8000))
        return clips

    def options(self, modality):
        return {"representation": "logmel", "n_mels": 16, "hop_length": 400}
