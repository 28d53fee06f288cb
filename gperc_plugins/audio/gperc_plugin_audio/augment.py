"""Training-time augmentation of audio frames: SpecAugment masks and time shifts (off unless asked).

``options["augment"]`` is ``false`` (default), ``true`` (the default recipe ``["freq_mask",
"time_mask"]``) or a list of names from `AUGMENTATIONS`. The plugin's ``gperc_transform`` hook
applies it to training samples only, once per epoch, on the converted ``[frames, bins]`` array of
the ``frames`` layout (log-mel or MFCC): masked bins and frames take the array's mean (0 after
``cmvn``), shifted frames are filled with it. Masks are torchaudio's `mask_along_axis` drawn with
the global RNG seeded from the hook's generator, so each epoch sees a fresh view and a resumed run
the same ones.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from gperc_core import InputArray, TaskError
from gperc_core.plugins.specs import recipe_names

from . import PLUGIN_NAME

AUGMENTATIONS = ("freq_mask", "time_mask", "time_shift")
DEFAULT_RECIPE = ("freq_mask", "time_mask")
FREQ_MASK_FRACTION = 0.15
"""Widest frequency mask, as a fraction of the bins (SpecAugment's F: 6 of 40 mel bins)."""
TIME_MASK_FRACTION = 0.1
"""Widest time mask and largest shift, as a fraction of the frames (15 of a 1.5 s clip's 150)."""


def augmentation_names(value: Any) -> tuple[str, ...]:
    """Return the augmentation names an ``augment`` option asks for (``()`` for none)."""
    return recipe_names(value, AUGMENTATIONS, DEFAULT_RECIPE, f"{PLUGIN_NAME}: options['augment']")


def augment_frames(frames: torch.Tensor, names: tuple[str, ...], bins: int) -> torch.Tensor:
    """Return an augmented copy of ``[frames, channels]`` whose first ``bins`` channels are spectral
    (later channels, e.g. in-array Fourier features, are kept); draws from the global RNG."""
    from torchaudio.functional import mask_along_axis

    spec = frames[:, :bins].T.unsqueeze(0).clone()  # [1, bins, frames]
    fill = float(spec.mean())
    n = spec.shape[-1]
    for name in names:
        if name == "freq_mask":
            spec = mask_along_axis(spec, max(1, round(FREQ_MASK_FRACTION * bins)), fill, axis=1)
        elif name == "time_mask":
            spec = mask_along_axis(spec, max(1, round(TIME_MASK_FRACTION * n)), fill, axis=2)
        elif name == "time_shift":
            limit = max(1, round(TIME_MASK_FRACTION * n))
            shift = int(torch.randint(-limit, limit + 1, (1,)))
            spec = torch.roll(spec, shift, dims=2)
            if shift > 0:
                spec[..., :shift] = fill
            elif shift < 0:
                spec[..., shift:] = fill
    out = frames.clone()
    out[:, :bins] = spec[0].T
    return out


def augment_array(array: InputArray, options: Mapping[str, Any], generator: torch.Generator) -> InputArray | None:
    """Return an augmented copy of one converted clip (``None`` when ``options`` ask for nothing);
    random draws come from ``generator`` only."""
    names = augmentation_names((options or {}).get("augment"))
    if not names:
        return None
    from .options import AudioOptions

    opts = AudioOptions.from_dict(options)
    if opts.representation == "raw" or opts.layout != "frames":
        raise TaskError(f"{PLUGIN_NAME}: options['augment']: expected representation 'logmel' or 'mfcc' with "
                        f"layout 'frames' (masks act on spectral frames), got representation "
                        f"{opts.representation!r}, layout {opts.layout!r}")
    x = array.array
    in_array_features = 2 * opts.bands + 1 if opts.bands and not opts.num_samples else 0  # variable-length clips
    bins = x.shape[1] - in_array_features
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = augment_frames(x, names, bins)
    return InputArray(array=out.to(x.dtype), mask=array.mask, output=array.output, target=array.target,
                      position=array.position)
