"""SpecAugment-style training transforms of the audio plugin (``options['augment']``)."""

from __future__ import annotations

import pytest
import torch

from gperc_core import InputArray, PositionGrid, TaskError
from gperc_plugin_audio.augment import AUGMENTATIONS, augment_array, augmentation_names, resample_axis
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


def test_resample_axis_scales_about_zero_and_fills_past_the_end():
    x = torch.arange(10.0).view(1, 1, 10)
    assert torch.equal(resample_axis(x, 1.0, axis=2, fill=-1.0), x)
    stretched = resample_axis(x, 2.0, axis=2, fill=-1.0)  # output i reads input i / 2
    assert torch.allclose(stretched[0, 0], torch.arange(10.0) / 2)
    squeezed = resample_axis(x, 0.5, axis=2, fill=-1.0)  # output i reads input 2i: past 9 takes the fill
    assert squeezed[0, 0].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, -1.0, -1.0, -1.0, -1.0, -1.0]
    edge = resample_axis(x, 0.5, axis=2, fill=None)  # or repeats the last input
    assert edge[0, 0, 5:].tolist() == [9.0] * 5


def test_frequency_warp_moves_a_formant_along_the_bins():
    spec = torch.zeros(1, 40, 30)
    spec[0, 20] = 1.0  # a formant at bin 20 in every frame
    peaks = []
    for factor in (0.85, 1.15):
        out = resample_axis(spec, factor, axis=1, fill=None)
        peaks.append(float((out[0, :, 0] * torch.arange(40.0)).sum() / out[0, :, 0].sum()))
    assert peaks[0] == pytest.approx(20 * 0.85, abs=0.5) and peaks[1] == pytest.approx(20 * 1.15, abs=0.5)


@pytest.mark.parametrize("name, axis", [("freq_warp", 1), ("time_stretch", 0)])
def test_warps_draw_factors_within_their_range(name, axis):
    from gperc_plugin_audio.augment import FREQ_WARP_RANGE, TIME_STRETCH_RANGE

    low, high = FREQ_WARP_RANGE if name == "freq_warp" else TIME_STRETCH_RANGE
    n = 40 if axis == 1 else 150
    ramp = torch.arange(float(n)).view(-1, 1) if axis == 0 else torch.arange(float(n)).view(1, -1)
    clip = InputArray(array=ramp.expand(150, 40).clone(), position=PositionGrid((150,), 4))
    for seed in range(20):
        out = augment_array(clip, {**OPTIONS, "augment": [name]}, torch.Generator().manual_seed(seed)).array
        line = out[:, 5] if axis == 0 else out[5, :]
        factor = 10.0 / float(line[10])  # output 10 reads input 10 / factor: a ramp says the factor
        assert low - 1e-4 <= factor <= high + 1e-4


def test_augmentation_touches_no_global_rng(monkeypatch):
    # torch.manual_seed would reseed the CUDA generators too (and costs ~0.3 ms a call): only the CPU
    # stream, inside fork_rng, is seeded, and the caller's CPU stream is left as it was
    def refuse(seed):
        raise AssertionError("torch.manual_seed called: it reseeds every device's generator")

    clip = _clip()
    monkeypatch.setattr(torch, "manual_seed", refuse)
    before = torch.get_rng_state()
    first = augment_array(clip, {**OPTIONS, "augment": True}, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first.array, augment_array(clip, {**OPTIONS, "augment": True},
                                                  torch.Generator().manual_seed(0)).array)
