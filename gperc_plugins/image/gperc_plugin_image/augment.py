"""Training-time augmentation with torchvision's v2 transforms (off unless a task's options ask).

``options["augment"]`` is ``false`` (default), ``true`` (the default recipe ``["crop"]``), or a list
of names from `AUGMENTATIONS`. The plugin's ``gperc_transform`` hook (`augment_array`) applies it
to training samples only, once per epoch, in the DataLoader workers: on the converted array turned
back into its image (pixels ``[H*W, C]`` or patches ``[rows*cols, p*p*C]``), with the global RNG
seeded from the hook's generator, so each epoch sees a fresh view and a resumed run the same ones.

Segmentation samples (``task = "segmentation"``: one target per pixel) are transformed jointly: the
per-pixel targets go through the same geometric transform as a torchvision ``Mask`` (nearest
neighbour; pixels brought in from outside take class 0, the background), and queries that carry
their pixel (``query_pixels``) are rebuilt from the transformed pixels. ``erase`` is refused there
(it would hide pixels whose labels stay).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import numpy as np
import torch

from gperc_core import InputArray, TaskError
from gperc_core.plugins.specs import recipe_names

from . import PLUGIN

AUGMENTATIONS = ("crop", "flip", "rotate", "affine", "erase")
DEFAULT_RECIPE = ("crop",)


def augmentation_names(value: Any) -> tuple[str, ...]:
    """Return the augmentation names an ``augment`` option asks for (``()`` for none)."""
    return recipe_names(value, AUGMENTATIONS, DEFAULT_RECIPE, f"{PLUGIN}: options['augment']")


def build_augmentation(value: Any, height: int, width: int) -> Callable[..., Any] | None:
    """Return a callable that augments one ``[H, W, C]`` image (numpy or torch, uint8 or float) and
    returns a ``[H, W, C]`` tensor of the same dtype, or ``None`` when ``value`` asks for nothing.
    Called as ``augment(image, mask)`` with an ``[H, W]`` integer mask it returns ``(image, mask)``,
    the mask moved by the same geometric transform (nearest neighbour, filled with 0)."""
    names = augmentation_names(value)
    if not names:
        return None
    from torchvision.transforms import v2  # heavy: imported only when augmentation is asked for

    pad = max(1, round(min(height, width) / 8))
    steps = {
        "crop": lambda: v2.RandomCrop((height, width), padding=pad),
        "flip": lambda: v2.RandomHorizontalFlip(),
        "rotate": lambda: v2.RandomRotation(10),
        "affine": lambda: v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        "erase": lambda: v2.RandomErasing(p=0.5, scale=(0.02, 0.1)),
    }
    pipeline = v2.Compose([steps[name]() for name in names])

    def augment(image: Any, mask: torch.Tensor | None = None) -> Any:
        from torchvision import tv_tensors

        tensor = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
        squeeze = tensor.dim() == 2
        chw = tensor.unsqueeze(0) if squeeze else tensor.permute(2, 0, 1)
        if mask is None:
            out = pipeline(chw)
        else:
            out, moved = pipeline(tv_tensors.Image(chw), tv_tensors.Mask(mask.unsqueeze(0)))
            out = out.as_subclass(torch.Tensor)
        out = out[0] if squeeze else out.permute(1, 2, 0).contiguous()
        return out if mask is None else (out, moved.as_subclass(torch.Tensor)[0])

    return augment


@functools.lru_cache(maxsize=16)
def _cached_augmentation(names: tuple[str, ...], height: int, width: int) -> Callable[[Any], torch.Tensor] | None:
    return build_augmentation(list(names), height, width)


def augment_array(array: InputArray, options: Mapping[str, Any], generator: torch.Generator) -> InputArray | None:
    """Return an augmented copy of one converted image sample (``None`` when ``options`` ask for no
    augmentation); random draws come from ``generator`` only."""
    names = augmentation_names((options or {}).get("augment"))
    if not names or array.position is None or len(array.position.shape) != 2:
        return None
    rows, cols = (int(s) for s in array.position.shape)
    x = array.array
    from .arrays import ArrayOptions, pixel_query_array, queries_carry_pixels

    geometry = ArrayOptions(options)
    if geometry.representation == "patches":
        p = geometry.patch_size
        c = x.shape[1] // (p * p)
        image = x.reshape(rows, cols, p, p, c).permute(0, 2, 1, 3, 4).reshape(rows * p, cols * p, c)
    else:
        p, c = 1, x.shape[1]
        image = x.reshape(rows, cols, c)
    if geometry.normalize is not None:  # augment the [0, 1] pixels: padding and erasing fill with black
        mean, std = geometry.normalize
        image = image * std + mean
    dense = (options or {}).get("task", "classification") == "segmentation"
    if dense and "erase" in names:
        raise TaskError(f"{PLUGIN}: options['augment']: expected no 'erase' for segmentation (it would hide "
                        f"pixels whose labels stay), got {list(names)}")
    augment = _cached_augmentation(names, image.shape[0], image.shape[1])
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    target, output = array.target, array.output
    with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG
        torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA too, and costs ~0.3 ms
        if dense:
            labels = torch.as_tensor(target) if target is not None else None
            if labels is None or labels.numel() != rows * cols:
                raise TaskError(f"{PLUGIN}: segmentation sample target: expected one class per element of the "
                                f"{rows}x{cols} grid ({rows * cols}), got "
                                f"{None if labels is None else list(labels.shape)}")
            out, moved = augment(image, labels.reshape(rows, cols))
            target = moved.reshape(labels.shape).to(labels.dtype)
        else:
            out = augment(image)
    if geometry.normalize is not None:
        out = (out - mean) / std
    if p > 1:
        out = out.reshape(rows, p, cols, p, c).permute(0, 2, 1, 3, 4).reshape(rows * cols, p * p * c)
    else:
        out = out.reshape(rows * cols, c)
    out = out.to(x.dtype)
    if dense and queries_carry_pixels(options):
        output = pixel_query_array(out, rows, cols, geometry.num_bands)
    return InputArray(array=out, mask=array.mask, output=output, target=target, position=array.position)

