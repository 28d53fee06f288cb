"""The hook implementations of gperc-plugin-image (entry point ``image`` in group ``gperc``).

Importing this module is cheap: torchvision and scikit-learn load inside the hooks that need them.
"""

from __future__ import annotations

from typing import Any

import torch

from gperc_core import (USER_DATA_OPTIONS, DatasetSpec, InputArray, ModalitySpec, Option, TaskError, hookimpl,
                        packaged_task_cards)

from . import GPERC_CORE_REQUIRES, PLUGIN  # noqa: F401 - the manager reads GPERC_CORE_REQUIRES here
from .arrays import (DEFAULT_NUM_BANDS, DEFAULT_PATCH_SIZE, REPRESENTATIONS, ArrayOptions, pixel_query_array,
                     pixel_query_width, queries_carry_pixels, query_array, read_image_file)
from .config import TASKS
from .datasets import DATASETS

MODALITY = "image"

OPTIONS = {
    "representation": Option(str, "pixels", "'pixels': [H*W, C] or 'patches': [patches, p*p*C]; the model adds "
                             "the Fourier features of the (H, W) or (rows, cols) grid", choices=REPRESENTATIONS),
    "patch_size": Option(int, DEFAULT_PATCH_SIZE, "side of the square patches; the image is zero-padded to whole "
                         "patches"),
    "num_bands": Option(int, DEFAULT_NUM_BANDS, "Fourier bands per axis: the model adds 2 * (2 * num_bands + 1) "
                        "position channels per element"),
    "max_resolution": Option(list, None, "[H, W] resolution the Fourier frequencies are spaced for (default: the "
                             "grid's)"),
    "image_shape": Option(list, None, "[H, W] or [H, W, C] every sample must have (required for segmentation)"),
    "channels": Option(int, None, "number of channels every sample must have"),
    "task": Option(str, "classification", "'classification' or 'segmentation' (one Fourier query per pixel)",
                   choices=TASKS),
    "query_pixels": Option(bool, False, "segmentation: each pixel's query carries the pixel's (normalised) "
                           "channels after its Fourier features, so the decoder reads the pixel it labels; the "
                           "queries are then 2 * (2 * num_bands + 1) + C wide, the model's output_dim"),
    "augment": Option((bool, list), False, "false, true (random crop) or a list of: crop, flip, rotate, affine, "
                      "erase (train split)"),
    "root": Option(str, None, "image-folder: your <label>/<image> folder; fashion-mnist: its folder or a torchvision "
                   "root (default $GPERC_FASHION_MNIST, then the Debian package)"),
    "normalize": Option(list, None, "[mean, std] or [[means], [stds]] per channel of the [0, 1] pixels: each "
                        "pixel becomes (value - mean) / std, so content is on the scale of the position "
                        "features (see docs: the dead start)"),
    "max_samples": Option(int, None, "keep only the first N samples of each split (quick runs)"),
    **{name: USER_DATA_OPTIONS[name] for name in ("path", "column", "label_column", "test_fraction", "split_seed",
                                                  "on_error")},
}


@hookimpl
def gperc_register_modalities() -> list[ModalitySpec]:
    """The image modality: raw float input arrays."""
    return [ModalitySpec(name=MODALITY, description="images (H x W x C, uint8 or float) as pixels or patches "
                         "on a grid the model gives 2-D Fourier position features", input_type="raw", options=OPTIONS,
                         read_file=read_image_file)]


@hookimpl
def gperc_register_datasets() -> list[DatasetSpec]:
    """Fashion-MNIST, scikit-learn digits, digits segmentation, and your images (image-folder,
    image-from-disk)."""
    return list(DATASETS)


@hookimpl
def gperc_register_tasks() -> list[dict[str, Any]]:
    """The image task cards shipped in ``gperc_plugin_image/tasks/*.toml``."""
    return packaged_task_cards("gperc_plugin_image")


@hookimpl
def gperc_input_array(modality: str, sample: Any, options: dict[str, Any]) -> InputArray | None:
    """One image to ``[H*W, C]`` (pixels) or ``[patches, p*p*C]`` (patches) with its position grid
    (the model adds the grid's Fourier features). Images need no tokenizer, so this implementation
    leaves out the hook's ``tokenizer`` argument."""
    if modality != MODALITY:
        return None
    if isinstance(sample, dict) and MODALITY in sample:
        sample = sample[MODALITY]
    geometry = ArrayOptions(options)
    image = geometry.image(sample)
    array = geometry.array(image)
    output = None
    if queries_carry_pixels(options):
        _check_segmentation_geometry(geometry)
        output = pixel_query_array(array, image.shape[0], image.shape[1], geometry.num_bands)
    return InputArray(array=array, output=output, position=geometry.grid(image.shape[0], image.shape[1]))


def _check_segmentation_geometry(geometry: ArrayOptions) -> None:
    """Raise `TaskError` unless ``geometry`` fixes the image shape and reads pixels (one query per pixel)."""
    if geometry.image_shape is None:
        raise TaskError(f"{PLUGIN}: options['image_shape']: expected [H, W] (or [H, W, C]) for segmentation "
                        f"queries (one per pixel), got None")
    if geometry.representation != "pixels":
        raise TaskError(f"{PLUGIN}: options['representation']: expected 'pixels' for segmentation (one query "
                        f"per pixel), got {geometry.representation!r}")


@hookimpl
def gperc_transform(modality: str, array: InputArray, options: dict[str, Any], generator: torch.Generator
                    ) -> InputArray | None:
    """Training-time augmentation of one converted image (``options['augment']``), fresh every epoch."""
    if modality != MODALITY:
        return None
    from .augment import augment_array

    return augment_array(array, options, generator)


@hookimpl
def gperc_output_array(modality: str, options: dict[str, Any], output_dim: int) -> torch.Tensor | None:
    """Segmentation: one Fourier query per pixel, ``[H*W, output_dim]``; otherwise ``None``. With
    ``query_pixels`` every sample brings its own queries (`gperc_input_array`); this static array
    (pixel channels zero) then only fixes their shape, and ``output_dim`` must be their width."""
    if modality != MODALITY or (options or {}).get("task", "classification") != "segmentation":
        return None
    geometry = ArrayOptions(options)
    _check_segmentation_geometry(geometry)
    height, width = geometry.image_shape[:2]
    if queries_carry_pixels(options):
        channels = geometry.channels or 1
        width_needed = pixel_query_width(geometry.num_bands, channels)
        if output_dim != width_needed:
            raise TaskError(f"{PLUGIN}: output_dim: expected {width_needed} with options['query_pixels'] (2 axes x "
                            f"(2 x num_bands={geometry.num_bands} + 1) Fourier channels + {channels} pixel "
                            f"channel(s)), got {output_dim}; set model.output_dim = {width_needed}")
        return pixel_query_array(torch.zeros(height * width, channels), height, width, geometry.num_bands)
    return query_array(height, width, output_dim, geometry.num_bands)
