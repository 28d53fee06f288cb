"""SpecAugment-style training transforms of the audio plugin (``options['augment']``)."""

from __future__ import annotations

import pytest
import torch

from gperc_core import InputArray, PositionGrid, TaskError
from gperc_plugin_audio.augment import AUGMENTATIONS, augment_array, augmentation_names
from gperc_plugin_audio.plugin import gperc_transform

OPTIONS = {"representation": "logmel", "n_mels": 40, "duration": 1.5, "fourier_bands": 4}


def _clip(frames: int = 150, bins: int = 40) -> InputArray:
    return InputArray(array=torch.randn(frames, bins), position=PositionGrid((frames,), 4), target=3)


def test_off_by_default_and_other_modalities_ignored():
    assert gperc_transform(modality="audio", array=_clip(), options=OPTIONS, generator=torch.Generator()) is None
    assert gperc_transform(modality="image", array=_clip(), options={**OPTIONS, "augment": True},
                           generator=torch.Generator()) is None


@pytest.mark.parametrize("names", [[n] for n in AUGMENTATIONS] + [True])
def test_masks_keep_shape_grid_target_and_follow_the_generator(names):
    clip = _clip()
    options = {**OPTIONS, "augment": names}
    outs = [augment_array(clip, options, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert outs[0].array.shape == clip.array.shape and outs[0].position == clip.position and outs[0].target == 3
    assert torch.equal(outs[0].array, outs[1].array)  # same generator state, same view (resumes replay)
    assert not torch.equal(outs[0].array, outs[2].array)  # another epoch or sample, another view
    assert not torch.equal(outs[0].array, clip.array)
    changed = (outs[0].array != clip.array)
    if names == ["freq_mask"]:
        assert changed.any(0).sum() <= 6 and changed.all(0).any()  # whole bins, at most 15 % of 40
    if names == ["time_mask"]:
        assert changed.any(1).sum() <= 15 and changed.all(1).any()  # whole frames, at most 10 % of 150


def test_in_array_fourier_channels_of_variable_clips_are_kept():
    options = {**OPTIONS, "duration": 0, "augment": ["time_shift", "freq_mask"]}
    clip = InputArray(array=torch.randn(80, 40 + 9))
    out = augment_array(clip, options, torch.Generator().manual_seed(0))
    assert torch.equal(out.array[:, 40:], clip.array[:, 40:])


@pytest.mark.parametrize("value", ["pitch", ["freq_mask", "echo"], 3])
def test_bad_augment_names_the_option(value):
    with pytest.raises(TaskError, match=r"options\['augment'\]: expected true, false or a list"):
        augmentation_names(value)


def test_raw_samples_are_refused():
    with pytest.raises(TaskError, match="expected representation 'logmel' or 'mfcc'"):
        augment_array(_clip(100, 1), {"representation": "raw", "augment": True}, torch.Generator())
