"""The audio input-array hook on synthetic sine waves: sample forms, resampling, representations, bad input."""

import math

import numpy as np
import pytest
import soundfile
import torch

from gperc_core import ConfigError, InputError
from gperc_plugin_audio.features import array_width
from gperc_plugin_audio.options import AudioOptions
from gperc_plugin_audio.plugin import gperc_input_array, read_file
from gperc_plugin_audio.waveform import trim_silence


def sine(seconds=0.5, rate=8000, freq=440.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * math.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels) if channels > 1 else wave


def array(sample, **options):
    return gperc_input_array(modality="audio", sample=sample, options=options).array


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "tone.wav"
    soundfile.write(path, sine(rate=8000), 8000)
    return path


def test_foreign_modality_returns_none(wav):
    assert gperc_input_array(modality="image", sample=str(wav), options={}) is None


def test_every_sample_form_gives_the_same_array(wav):
    reference = array(str(wav))
    data, rate = soundfile.read(wav, dtype="float32")
    forms = [wav, {"path": str(wav)}, {"waveform": data, "sample_rate": rate}, (torch.from_numpy(data), rate),
             read_file(str(wav))]
    for form in forms:
        assert torch.allclose(array(form), reference, atol=1e-4)


def test_resampling_to_the_task_rate(wav):
    # 0.5 s at 8 kHz -> 16 kHz: 8000 samples -> ceil(8000 / 160) = 50 log-mel frames of 40 bins
    assert tuple(array(str(wav)).shape) == (50, 40)
    assert tuple(array(str(wav), sample_rate=8000, hop_length=80).shape) == (50, 40)


def test_int16_pcm_is_scaled():
    pcm = (sine(rate=16000) * 32767).astype(np.int16)
    assert torch.allclose(array((pcm, 16000), representation="raw", fourier_bands=0, normalize=False)[:, 0],
                          torch.from_numpy(sine(rate=16000)), atol=1e-3)


@pytest.mark.parametrize("options, shape", [
    ({"representation": "logmel", "duration": 1.0}, (100, 40)),
    ({"representation": "mfcc", "duration": 1.0}, (100, 13)),
    ({"representation": "mfcc", "duration": 1.0, "layout": "gperc", "cmvn": False}, (100 * 13, 1)),
    ({"representation": "logmel", "duration": 1.0, "fourier_bands": 4}, (100, 40)),  # the model adds 9
    ({"representation": "logmel", "duration": 0, "fourier_bands": 4}, (50, 40 + 9)),  # per clip (a 0.5 s sine)
    ({"representation": "raw", "duration": 0.25, "fourier_bands": 8}, (4000, 1)),
    ({"representation": "logmel", "duration": 1.0, "mono": False, "n_mels": 20}, (100, 2 * 20)),
])
def test_representations(options, shape):
    out = array((sine(rate=16000, channels=2), 16000), **options)
    assert tuple(out.shape) == shape and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    channels = 1 if options.get("mono", True) else 2
    assert array_width(AudioOptions.from_dict(options), channels) == shape[1]


def test_fixed_length_clips_declare_a_time_grid_instead_of_channels():
    from gperc_plugin_audio.features import position_grid, to_array
    from gperc_plugin_audio.waveform import prepare_waveform

    from gperc_core import PositionGrid, fourier_features

    opts = AudioOptions.from_dict({"representation": "logmel", "duration": 0.5, "fourier_bands": 4})
    fixed = to_array(prepare_waveform((sine(rate=16000), 16000), opts), opts)  # a 0.5 s sine: 50 frames
    grid = position_grid(opts, fixed.shape[0])
    assert grid == PositionGrid((50,), 4) and fixed.shape == (50, 40)
    per_clip = AudioOptions.from_dict({"representation": "logmel", "duration": 0, "fourier_bands": 4})
    old = to_array(prepare_waveform((sine(rate=16000), 16000), per_clip), per_clip)
    assert position_grid(per_clip, old.shape[0]) is None
    # the model's features of the grid are exactly the channels variable-length clips carry
    assert torch.equal(old[:, 40:], fourier_features(grid.shape, grid.num_bands))
    assert torch.allclose(old[:, :40], fixed)


def test_raw_fourier_features_and_peak_normalisation():
    out = array((sine(rate=16000), 16000), representation="raw", fourier_bands=2, duration=0)
    assert float(out[:, 0].abs().max()) == pytest.approx(1.0, abs=1e-4)
    assert float(out[0, 1]) == pytest.approx(-1.0) and float(out[-1, 1]) == pytest.approx(1.0)  # position in [-1, 1]


def test_logmel_tells_tones_apart():
    low, high = array((sine(freq=300, rate=16000), 16000)), array((sine(freq=3000, rate=16000), 16000))
    assert float((low - high).abs().mean()) > 0.1


def test_cmvn_modes():
    tone = (sine(rate=16000), 16000)
    clip, per_bin, off = (array(tone, cmvn=mode) for mode in ("clip", "bin", False))
    assert float(clip.mean()) == pytest.approx(0.0, abs=1e-4) and float(clip.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)
    assert torch.allclose(per_bin.mean(0), torch.zeros(40), atol=1e-4)
    assert torch.equal(array(tone), clip) and float(off.mean()) < -1.0  # log-mel of a quiet tone is mostly < 0


@pytest.mark.parametrize("cmvn", ["bin", "clip"])
def test_cmvn_signal_makes_a_words_frames_independent_of_its_padding(cmvn):
    noise = np.random.default_rng(0).normal(0, 0.05, 4800).astype(np.float32)  # every bin varies over the frames
    word = (sine(seconds=0.3, rate=16000, freq=500) + sine(seconds=0.3, rate=16000, freq=1800) + noise, 16000)
    short, long = (array(word, duration=d, cmvn=cmvn, cmvn_signal=True) for d in (0.6, 1.5))
    assert short.shape[0] == 60 and long.shape[0] == 150
    assert torch.allclose(short, long[:60], atol=1e-4)  # the word and the padding: same values either way
    frames = short[:30]  # the word's own frames are standardised by their own statistics
    if cmvn == "bin":
        assert torch.allclose(frames.mean(0), torch.zeros(40), atol=1e-4)
    else:
        assert float(frames.mean()) == pytest.approx(0.0, abs=1e-4)
    floor = frames.amin(0) if cmvn == "bin" else frames.min()
    assert torch.allclose(short[30:], floor.expand_as(short[30:]))  # the padding: as quiet as the word gets
    plain_short, plain_long = (array(word, duration=d, cmvn=cmvn) for d in (0.6, 1.5))
    assert float((plain_short[:30] - plain_long[:30]).abs().max()) > 0.1  # without it, the padding moves them


def test_signal_frames_of_padded_and_silent_clips():
    from gperc_plugin_audio.features import signal_frames

    padded = torch.nn.functional.pad(torch.ones(1, 1000), (0, 3000))
    assert signal_frames(padded, 160) == 7  # ceil(1000 / 160)
    assert signal_frames(torch.zeros(1, 4000), 160) == 25  # nothing but zeros: every frame
    assert signal_frames(torch.nn.functional.pad(torch.ones(1, 10), (0, 3000)), 160) == 2  # at least 2


def test_trim_and_fixed_duration():
    wave = np.concatenate([np.zeros(4000, np.float32), sine(rate=16000), np.zeros(4000, np.float32)])
    trimmed = trim_silence(torch.from_numpy(wave)[None], 0.02)
    assert 7900 <= trimmed.shape[1] <= 8000
    assert array((wave, 16000), trim=True, representation="raw", fourier_bands=0).shape[0] == trimmed.shape[1]
    assert array((wave, 16000), trim=True, duration=1.0).shape[0] == 100


@pytest.mark.parametrize("sample, message", [
    (np.zeros(0, np.float32), "expected a non-empty audio clip"),
    ((torch.zeros(1, 0), 16000), "expected a non-empty audio clip"),
    (torch.zeros(2, 3, 4), "expected a waveform of shape"),
    (torch.zeros(16000, 2), "expected channels first"),
    (np.array(["a", "b"]), "expected a numeric waveform"),
    (torch.ones(100, dtype=torch.bool), "expected a real float or integer PCM"),
    ((torch.ones(100), -5), "sample_rate: expected a positive integer"),
    ({"wave": 1}, "expected a dict with 'waveform'"),
    ("/no/such/file.wav", "expected an existing audio file"),
    (3.5, "expected a waveform"),
    (torch.tensor([0.0, float("nan")]), "expected finite sample values"),
])
def test_bad_samples_are_input_errors_naming_the_plugin(sample, message):
    with pytest.raises(InputError, match=message) as info:
        array(sample)
    assert "audio plugin" in str(info.value)


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(InputError, match="audio plugin: sample: expected an audio file soundfile can read"):
        array(str(bad))


def test_channel_count_is_checked():
    with pytest.raises(InputError, match="expected 1 audio channel"):
        array((sine(rate=16000, channels=2), 16000), mono=False, num_channels=1)


@pytest.mark.parametrize("options, key", [({"representation": "spectrogram"}, "representation"),
                                          ({"layout": "gperc"}, "layout"), ({"sample_rate": 0}, "sample_rate"),
                                          ({"duration": -1}, "duration"), ({"trim": "yes"}, "trim"),
                                          ({"cmvn": "frame"}, "cmvn"), ({"cmvn": 1}, "cmvn"),
                                          ({"cmvn_signal": "yes"}, "cmvn_signal"),
                                          ({"representation": "mfcc", "num_mfcc": 80}, "num_mfcc")])
def test_bad_options_are_config_errors(options, key):
    with pytest.raises(ConfigError, match=f"audio plugin: options\\['{key}'\\]: expected"):
        array((sine(rate=16000), 16000), **options)
