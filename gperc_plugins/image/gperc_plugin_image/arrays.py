"""Images to Perceiver input arrays: validation, pixels or patches, and their position grid.

The arrays carry no position channels: the plugin declares each array's grid (`ArrayOptions.grid`,
a `PositionGrid`) and the model computes its Fourier features once.

Every function here is pure (no plugin manager, no I/O) so it can be tested and reused on its own.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gperc_core import InputError, PositionGrid, TaskError, fourier_features
from gperc_core.errors import describe

from . import PLUGIN

REPRESENTATIONS = ("pixels", "patches")
DEFAULT_NUM_BANDS = 8
DEFAULT_PATCH_SIZE = 4


def _fail(argument: str, expected: str, got: Any) -> InputError:
    return InputError(f"{PLUGIN}: {argument}: expected {expected}, got {got}")


def as_image(sample: Any, *, expected_shape: Sequence[int] | None = None) -> torch.Tensor:
    """Check one raw image and return it as a float32 ``[H, W, C]`` tensor.

    ``sample`` is a numpy array, a torch tensor or a PIL image of shape ``[H, W]`` (grey) or
    ``[H, W, C]`` (channels last), dtype uint8 (scaled to ``[0, 1]``) or floating (kept as is).
    ``expected_shape`` is ``[H, W]`` or ``[H, W, C]``; a mismatch is an `InputError`.
    """
    if hasattr(sample, "getbands") and hasattr(sample, "size"):  # a PIL image
        sample = np.asarray(sample)
    if isinstance(sample, np.ndarray):
        if sample.dtype != np.uint8 and not np.issubdtype(sample.dtype, np.floating):
            raise _fail("sample", "an image of dtype uint8 or float", describe(sample))
        tensor = torch.from_numpy(np.array(sample, copy=not sample.flags.writeable, order="C"))
    elif isinstance(sample, torch.Tensor):
        if sample.dtype != torch.uint8 and not sample.dtype.is_floating_point:
            raise _fail("sample", "an image of dtype uint8 or float", describe(sample))
        tensor = sample.detach().cpu()
    else:
        raise _fail("sample", "an image as a numpy array, torch tensor or PIL image of shape [H, W] or [H, W, C]",
                    describe(sample))
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(-1)
    if tensor.dim() != 3 or min(tensor.shape) == 0:
        raise _fail("sample", "an image of shape [H, W] or [H, W, C] with every axis > 0", describe(sample))
    if tensor.shape[2] > 4 and tensor.shape[0] <= 4:
        raise _fail("sample", "channels last ([H, W, C]); this looks channels first", describe(sample))
    if expected_shape is not None:
        want = [int(s) for s in expected_shape]
        if list(tensor.shape[: len(want)]) != want:
            raise _fail("sample", f"an image of shape {want} (options['image_shape'])", describe(sample))
    image = tensor.to(torch.float32) / 255.0 if tensor.dtype == torch.uint8 else tensor.to(torch.float32)
    if not bool(torch.isfinite(image).all()):
        raise _fail("sample", "finite pixel values", "NaN or infinite values")
    return image


@lru_cache(maxsize=64)
def _cached_features(shape: tuple[int, ...], num_bands: int, max_resolution: tuple[float, ...] | None) -> torch.Tensor:
    return fourier_features(shape, num_bands, max_resolution)


def position_features(shape: Sequence[int], num_bands: int,
                      max_resolution: Sequence[float] | None = None) -> torch.Tensor:
    """Return the Fourier features of a grid of ``shape`` (``[prod(shape), len(shape) * (2K + 1)]``),
    cached per grid so a dataset pays for them once. The result must not be modified in place."""
    res = tuple(float(r) for r in max_resolution) if max_resolution is not None else None
    return _cached_features(tuple(int(s) for s in shape), int(num_bands), res)


def feature_channels(num_axes: int, num_bands: int) -> int:
    """Number of Fourier channels ``num_axes`` axes with ``num_bands`` bands add to each element."""
    return num_axes * (2 * int(num_bands) + 1)


def pixel_array(image: torch.Tensor) -> torch.Tensor:
    """Return ``[H*W, C]``: each pixel's channels, row-major. The position features are the model's
    (Fourier features of the ``(H, W)`` grid, see `ArrayOptions.grid`), not stored per sample."""
    h, w, c = image.shape
    return image.reshape(h * w, c)


def patch_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Return the number of patch rows and columns of an image (zero-padded up to whole patches)."""
    return math.ceil(height / patch_size), math.ceil(width / patch_size)


def patch_array(image: torch.Tensor, patch_size: int = DEFAULT_PATCH_SIZE) -> torch.Tensor:
    """Return ``[rows*cols, p*p*C]``: non-overlapping ``p x p`` patches in row-major order (the image is
    zero-padded on the bottom and right to whole patches), each flattened (row, column, channel).
    The position features are the model's (Fourier features of the ``(rows, cols)`` grid)."""
    h, w, c = image.shape
    p = int(patch_size)
    rows, cols = patch_grid(h, w, p)
    padded = torch.nn.functional.pad(image, (0, 0, 0, cols * p - w, 0, rows * p - h))
    return padded.reshape(rows, p, cols, p, c).permute(0, 2, 1, 3, 4).reshape(rows * cols, p * p * c)


class ArrayOptions:
    """The image options that shape an input array, read and checked once from a task's options.

    Keys (all optional): ``representation`` ("pixels" | "patches"), ``patch_size`` (int),
    ``num_bands`` (int), ``max_resolution`` (list of 2 numbers), ``image_shape`` ([H, W] or
    [H, W, C]), ``channels`` (int), ``normalize`` (``[mean, std]`` or ``[[mean per channel],
    [std per channel]]`` of the ``[0, 1]`` pixels). Bad values raise `TaskError` naming the option.
    """

    def __init__(self, options: Mapping[str, Any] | None) -> None:
        options = dict(options or {})
        self.representation = options.get("representation", "pixels")
        if self.representation not in REPRESENTATIONS:
            raise TaskError(f"{PLUGIN}: options['representation']: expected one of {REPRESENTATIONS}, "
                            f"got {self.representation!r}")
        self.patch_size = _positive("patch_size", options.get("patch_size", DEFAULT_PATCH_SIZE))
        self.num_bands = _positive("num_bands", options.get("num_bands", DEFAULT_NUM_BANDS))
        self.max_resolution = options.get("max_resolution")
        if self.max_resolution is not None and (
                not isinstance(self.max_resolution, (list, tuple)) or len(self.max_resolution) != 2
                or not all(isinstance(r, (int, float)) and r > 0 for r in self.max_resolution)):
            raise TaskError(f"{PLUGIN}: options['max_resolution']: expected 2 positive numbers, "
                            f"got {self.max_resolution!r}")
        shape = options.get("image_shape")
        if shape is not None and (not isinstance(shape, (list, tuple)) or len(shape) not in (2, 3) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise TaskError(f"{PLUGIN}: options['image_shape']: expected [H, W] or [H, W, C] of positive "
                            f"integers, got {shape!r}")
        self.image_shape = list(shape) if shape is not None else None
        channels = options.get("channels")
        if channels is None and self.image_shape is not None and len(self.image_shape) == 3:
            channels = self.image_shape[2]
        self.channels = _positive("channels", channels) if channels is not None else None
        self.normalize = _normalization(options.get("normalize"), self.channels)

    def image(self, sample: Any) -> torch.Tensor:
        """Return ``sample`` checked against these options as float ``[H, W, C]``."""
        image = as_image(sample, expected_shape=self.image_shape[:2] if self.image_shape else None)
        if self.channels is not None and image.shape[2] != self.channels:
            raise _fail("sample", f"an image with {self.channels} channel(s) (the task's options), "
                        f"shape [H, W, {self.channels}]", f"shape {list(image.shape)}")
        return image

    def array(self, image: torch.Tensor) -> torch.Tensor:
        """Return the input array of a checked image in this representation (no position channels),
        standardised per channel when ``normalize`` is set."""
        if self.normalize is not None:
            mean, std = self.normalize
            if mean.numel() not in (1, image.shape[2]):
                raise _fail("sample", f"an image with {mean.numel()} channel(s) (options['normalize'])",
                            f"shape {list(image.shape)}")
            image = (image - mean) / std
        if self.representation == "patches":
            return patch_array(image, self.patch_size)
        return pixel_array(image)

    def grid(self, height: int, width: int) -> PositionGrid:
        """Return the position grid of an ``height x width`` image's elements: ``(H, W)`` pixels or
        ``(rows, cols)`` patches, with ``num_bands`` and ``max_resolution``; the model adds its
        Fourier features (``feature_channels(2, num_bands)`` channels per element)."""
        shape = patch_grid(height, width, self.patch_size) if self.representation == "patches" else (height, width)
        res = tuple(float(r) for r in self.max_resolution) if self.max_resolution is not None else None
        return PositionGrid(shape=tuple(int(s) for s in shape), num_bands=int(self.num_bands), max_resolution=res)

    def geometry(self, height: int, width: int, channels: int) -> tuple[int, int]:
        """Return ``(m, c)``: the input array shape of an ``height x width x channels`` image."""
        if self.representation == "patches":
            rows, cols = patch_grid(height, width, self.patch_size)
            return rows * cols, self.patch_size ** 2 * channels
        return height * width, channels


def _normalization(value: Any, channels: int | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Check the ``normalize`` option; returns ``(mean, std)`` as float tensors of 1 or C values."""
    if value is None:
        return None

    def numbers(x: Any) -> list[float] | None:
        items = x if isinstance(x, (list, tuple)) else [x]
        if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return None
        return [float(v) for v in items]

    pair = (list(value) if isinstance(value, (list, tuple)) and len(value) == 2 else None)
    mean, std = (numbers(pair[0]), numbers(pair[1])) if pair else (None, None)
    if mean is None or std is None or len(mean) != len(std) or any(s <= 0 for s in std):
        raise TaskError(f"{PLUGIN}: options['normalize']: expected [mean, std] or [[means], [stds]] with every "
                        f"std > 0 (statistics of the [0, 1] pixels), got {value!r}")
    if channels is not None and len(mean) not in (1, channels):
        raise TaskError(f"{PLUGIN}: options['normalize']: expected 1 or {channels} values per statistic "
                        f"(options['channels']), got {len(mean)}")
    return torch.tensor(mean), torch.tensor(std)


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise TaskError(f"{PLUGIN}: options[{name!r}]: expected a positive integer, got {value!r}")
    return value


def query_array(height: int, width: int, output_dim: int, num_bands: int = DEFAULT_NUM_BANDS) -> torch.Tensor:
    """Return per-pixel decoder queries ``[H*W, output_dim]``: each pixel's Fourier features with as
    many bands as fit in ``output_dim`` (at most ``num_bands``), zero-padded to ``output_dim``."""
    fit = (output_dim // 2 - 1) // 2
    if fit < 1:
        raise TaskError(f"{PLUGIN}: output_dim: expected at least 6 channels for per-pixel Fourier queries "
                        f"(2 axes x (2 bands + 1)), got {output_dim}")
    feats = position_features((height, width), min(int(num_bands), fit))
    queries = torch.zeros(height * width, int(output_dim))
    queries[:, : feats.shape[1]] = feats
    return queries


def queries_carry_pixels(options: Mapping[str, Any] | None) -> bool:
    """True when ``options`` ask for segmentation queries that carry their pixel (``query_pixels``);
    a non-boolean value, or one set without ``task = "segmentation"``, is a `TaskError`."""
    options = options or {}
    value = options.get("query_pixels", False)
    if not isinstance(value, bool):
        raise TaskError(f"{PLUGIN}: options['query_pixels']: expected true or false, got {value!r}")
    task = options.get("task", "classification")
    if value and task != "segmentation":
        raise TaskError(f"{PLUGIN}: options['query_pixels']: expected task 'segmentation' (one query per pixel), "
                        f"got task {task!r}")
    return value


def pixel_query_width(num_bands: int, channels: int) -> int:
    """Width of the per-pixel queries that carry their pixel (``query_pixels``): the ``(H, W)`` grid's
    Fourier channels plus the image's ``channels``."""
    return feature_channels(2, num_bands) + int(channels)


def pixel_query_array(array: torch.Tensor, height: int, width: int, num_bands: int) -> torch.Tensor:
    """Return one sample's per-pixel decoder queries ``[H*W, F + C]``: each pixel's Fourier features
    (``F = 2 * (2 * num_bands + 1)``) followed by its channels from the pixel ``array`` ``[H*W, C]``,
    so the decoder reads the pixel it labels (Perceiver IO's input-derived queries)."""
    feats = position_features((height, width), num_bands)
    return torch.cat([feats.to(array.dtype), array], dim=1)


def read_image_file(path: str) -> np.ndarray:
    """Read one image file into the raw sample the datasets yield: ``[H, W, C]`` uint8 for PNG / JPEG
    (decoded by torchvision), or the array of a ``.npy`` file (loaded without pickle)."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise _fail("path", "an existing image file (.png, .jpg, .jpeg or .npy)", repr(str(path)))
    if file.suffix.lower() == ".npy":
        try:
            return np.load(file, allow_pickle=False)
        except ValueError as exc:
            raise _fail("path", "a .npy file of numbers", f"{str(path)!r} ({exc})") from None
    from torchvision.io import ImageReadMode, decode_image, read_file  # heavy: only when reading files

    try:
        chw = decode_image(read_file(str(file)), mode=ImageReadMode.UNCHANGED)
    except RuntimeError as exc:
        raise _fail("path", "a PNG or JPEG image", f"{str(path)!r} ({exc})") from None
    return chw.permute(1, 2, 0).contiguous().numpy()
