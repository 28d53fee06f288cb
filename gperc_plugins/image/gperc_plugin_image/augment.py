"""Training-time augmentation with torchvision's v2 transforms (off unless a task's options ask).

``options["augment"]`` is ``false`` (default), ``true`` (the default recipe ``["crop"]``), or a list
of names from `AUGMENTATIONS`. The datasets of this plugin apply the result to train-split samples
only, on the raw image, before the input array is made.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from gperc_core import TaskError

from . import PLUGIN

AUGMENTATIONS = ("crop", "flip", "rotate", "affine", "erase")
DEFAULT_RECIPE = ("crop",)


def augmentation_names(value: Any) -> tuple[str, ...]:
    """Return the augmentation names an ``augment`` option asks for (``()`` for none)."""
    if value is None or value is False:
        return ()
    if value is True:
        return DEFAULT_RECIPE
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n in AUGMENTATIONS for n in names):
        raise TaskError(f"{PLUGIN}: options['augment']: expected true, false or a list of names from "
                        f"{AUGMENTATIONS}, got {value!r}")
    return tuple(names)


def build_augmentation(value: Any, height: int, width: int) -> Callable[[Any], torch.Tensor] | None:
    """Return a callable that augments one ``[H, W, C]`` image (numpy or torch, uint8 or float) and
    returns a ``[H, W, C]`` tensor of the same dtype, or ``None`` when ``value`` asks for nothing."""
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

    def augment(image: Any) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
        squeeze = tensor.dim() == 2
        chw = tensor.unsqueeze(0) if squeeze else tensor.permute(2, 0, 1)
        out = pipeline(chw)
        return out[0] if squeeze else out.permute(1, 2, 0).contiguous()

    return augment
