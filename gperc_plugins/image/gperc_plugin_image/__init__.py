"""gperc-plugin-image: the image modality of gperc.

Pixels (any H x W x C, uint8 or float) become ``[H*W, C + position features]`` input arrays with
N-dimensional Fourier features, or patches become ``[num_patches, p*p*C + features]``; datasets are
Fashion-MNIST (Debian ``dataset-fashion-mnist`` or torchvision's folder layout) and scikit-learn's
digits; tasks are classification and per-pixel segmentation. `ImageConfig` is gperc's config class
with gperc's signature.
"""

from __future__ import annotations

__version__ = "0.1.0"

GPERC_CORE_REQUIRES = ">=0.1,<0.2"
"""The gperc-core versions this plugin works with (also its distribution's Requires-Dist)."""

PLUGIN = "gperc-plugin-image"
"""Distribution name; every error this plugin raises starts with it."""

from .config import ImageConfig  # noqa: E402

__all__ = ["__version__", "GPERC_CORE_REQUIRES", "PLUGIN", "ImageConfig"]
