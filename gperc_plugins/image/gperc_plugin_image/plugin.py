"""The hook implementations of gperc-plugin-image (entry point ``image`` in group ``gperc``).

Importing this module is cheap: torchvision and scikit-learn load inside the hooks that need them.
"""

from __future__ import annotations

from typing import Any

import torch

from gperc_core import DatasetSpec, InputArray, ModalitySpec, TaskError, hookimpl

from . import GPERC_CORE_REQUIRES, PLUGIN  # noqa: F401 - the manager reads GPERC_CORE_REQUIRES here
from .arrays import ArrayOptions, query_array, read_image_file
from .datasets import DATASETS

MODALITY = "image"

OPTIONS = {
    "representation": "'pixels' (default): [H*W, C + F] or 'patches': [patches, p*p*C + F]",
    "patch_size": "side of the square patches (default 4); the image is zero-padded to whole patches",
    "num_bands": "Fourier bands per axis (default 8); F = 2 * (2 * num_bands + 1) position channels",
    "max_resolution": "[H, W] resolution the Fourier frequencies are spaced for (default: the image's)",
    "image_shape": "[H, W] or [H, W, C] every sample must have (required for segmentation queries)",
    "channels": "number of channels every sample must have",
    "task": "'classification' (default) or 'segmentation' (one Fourier query per pixel)",
    "augment": "false (default), true (random crop) or a list of: crop, flip, rotate, affine, erase (train split)",
    "root": "Fashion-MNIST folder or torchvision root (default $GPERC_FASHION_MNIST, then the Debian package)",
    "max_samples": "keep only the first N samples of each split (quick runs)",
}


@hookimpl
def gperc_register_modalities() -> list[ModalitySpec]:
    """The image modality: raw float input arrays."""
    return [ModalitySpec(name=MODALITY, description="images (H x W x C, uint8 or float) as pixels or patches "
                         "with 2-D Fourier position features", input_type="raw", options=OPTIONS,
                         read_file=read_image_file)]


@hookimpl
def gperc_register_datasets() -> list[DatasetSpec]:
    """Fashion-MNIST, scikit-learn digits and digits segmentation."""
    return list(DATASETS)


@hookimpl
def gperc_input_array(modality: str, sample: Any, options: dict[str, Any]) -> InputArray | None:
    """One image to ``[H*W, C + F]`` (pixels) or ``[patches, p*p*C + F]`` (patches)."""
    if modality != MODALITY:
        return None
    if isinstance(sample, dict) and MODALITY in sample:
        sample = sample[MODALITY]
    geometry = ArrayOptions(options)
    return InputArray(array=geometry.array(geometry.image(sample)))


@hookimpl
def gperc_output_array(modality: str, options: dict[str, Any], output_dim: int) -> torch.Tensor | None:
    """Segmentation: one Fourier query per pixel, ``[H*W, output_dim]``; otherwise ``None``."""
    if modality != MODALITY or (options or {}).get("task", "classification") != "segmentation":
        return None
    geometry = ArrayOptions(options)
    if geometry.image_shape is None:
        raise TaskError(f"{PLUGIN}: options['image_shape']: expected [H, W] (or [H, W, C]) for segmentation "
                        f"queries (one per pixel), got None")
    if geometry.representation != "pixels":
        raise TaskError(f"{PLUGIN}: options['representation']: expected 'pixels' for segmentation (one query "
                        f"per pixel), got {geometry.representation!r}")
    height, width = geometry.image_shape[:2]
    return query_array(height, width, output_dim, geometry.num_bands)
