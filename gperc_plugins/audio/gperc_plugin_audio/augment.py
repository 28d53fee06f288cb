"""Training-time augmentation of audio frames: SpecAugment masks, time shifts, frequency warping
(vocal-tract-length perturbation) and time stretching (off unless asked).

``options["augment"]`` is ``false`` (default), ``true`` (the default recipe ``["freq_mask",
"time_mask"]``) or a list of names from `AUGMENTATIONS`. The plugin's ``gperc_transform`` hook
applies it to training samples only, once per epoch, on the converted ``[frames, bins]`` array of
the ``frames`` layout (log-mel or MFCC): masked bins and frames take the array's mean (0 after
``cmvn``), shifted frames are filled with it. ``freq_warp`` resamples the bin axis by a random
factor (a speaker's vocal tract scales its formants along frequency: VTLP, Jaitly & Hinton 2013) and
``time_stretch`` the frame axis (speaking rate); both interpolate linearly, the warped bins repeat the
edge bin and stretched-out frames take the mean. Masks are torchaudio's `mask_along_axis` drawn with
the global RNG seeded from the hook's generator, so each epoch sees a fresh view and a resumed run
the same ones.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from gperc_core import InputArray, TaskError
from gperc_core.plugins.specs import recipe_names

from . import PLUGIN_NAME

AUGMENTATIONS = ("freq_mask", "time_mask", "time_shift", "freq_warp", "time_stretch")
DEFAULT_RECIPE = ("freq_mask", "time_mask")
FREQ_MASK_FRACTION = 0.15
"""Widest frequency mask, as a fraction of the bins (SpecAugment's F: 6 of 40 mel bins)."""
TIME_MASK_FRACTION = 0.1
"""Widest time mask and largest shift, as a fraction of the frames (15 of a 1.5 s clip's 150)."""
FREQ_WARP_RANGE = (0.85, 1.15)
"""Frequency-warp factors, drawn log-uniformly (VTLP uses 0.9-1.1 on mel filters; adult voices'
formants differ by up to ~15 %)."""
TIME_STRETCH_RANGE = (0.85, 1.15)
"""Time-stretch factors, drawn log-uniformly (Kaldi's speed perturbation uses 0.9, 1.0, 1.1)."""


def _log_uniform(low: float, high: float) -> float:
    """One factor drawn log-uniformly in ``[low, high]`` from the global RNG."""
    u = float(torch.rand(()))
    return math.exp(math.log(low) * (1 - u) + math.log(high) * u)


def resample_axis(spec: torch.Tensor, factor: float, axis: int, fill: float | None) -> torch.Tensor:
    """Return ``spec`` with axis ``axis`` scaled by ``factor`` about index 0 (output index ``i`` reads
    input position ``i / factor``, linearly interpolated), same shape; positions past the last input
    take ``fill``, or the last input's value when ``fill`` is ``None``."""
    n = spec.shape[axis]
    src = torch.arange(n, dtype=torch.float32) / factor
    beyond = src > n - 1
    src = src.clamp(max=n - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    w = (src - lo.float()).to(spec.dtype)
    shape = [1] * spec.dim()
    shape[axis] = n
    w = w.view(shape)
    out = spec.index_select(axis, lo) * (1 - w) + spec.index_select(axis, hi) * w
    if fill is not None and bool(beyond.any()):
        index = [slice(None)] * spec.dim()
        index[axis] = beyond
        out[tuple(index)] = fill
    return out


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
        elif name == "freq_warp":
            spec = resample_axis(spec, _log_uniform(*FREQ_WARP_RANGE), axis=1, fill=None)
        elif name == "time_stretch":
            spec = resample_axis(spec, _log_uniform(*TIME_STRETCH_RANGE), axis=2, fill=fill)
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
        torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA too, and costs ~0.3 ms
        out = augment_frames(x, names, bins)
    return InputArray(array=out.to(x.dtype), mask=array.mask, output=array.output, target=array.target,
                      position=array.position)
