"""The gperc conformance suite on the image plugin: pixels, patches and segmentation queries."""

from __future__ import annotations

import numpy as np

import gperc_plugin_image.plugin as image_plugin
from gperc_core.testing import PluginConformance


def _images(shapes, dtype=np.uint8):
    rng = np.random.default_rng(0)
    if dtype == np.uint8:
        return [rng.integers(0, 256, size=s, dtype=np.uint8) for s in shapes]
    return [rng.random(s, dtype=np.float32) for s in shapes]


class TestImagePixels(PluginConformance):
    plugin = image_plugin

    def make_samples(self, modality):
        return _images([(6, 5, 3), (4, 4, 3), (7, 3, 3)])          # different sizes: padded with a mask

    def options(self, modality):
        return {"num_bands": 3, "channels": 3}


class TestImagePatches(PluginConformance):
    plugin = image_plugin

    def make_samples(self, modality):
        return _images([(9, 9), (8, 12)], dtype=np.float32)

    def options(self, modality):
        return {"representation": "patches", "patch_size": 3, "num_bands": 2}


class TestImageSegmentation(PluginConformance):
    plugin = image_plugin

    def make_samples(self, modality):
        return _images([(8, 8, 1), (8, 8, 1)], dtype=np.float32)

    def options(self, modality):
        return {"task": "segmentation", "image_shape": [8, 8, 1], "num_bands": 4}
