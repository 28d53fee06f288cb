"""gperc's AudioConfig: signature, arithmetic, validation, and the options that reproduce it."""

import math

import pytest
import torch

from gperc_core import ConfigError, PerceiverConfig
from gperc_plugin_audio import AudioConfig
from gperc_plugin_audio.plugin import gperc_input_array


def make(**changes):
    values = dict(sample_rate=16000, duration=2, hop_length=512, num_mfcc=13, num_segments=4, num_channels=1,
                  latent_len=8, latent_dim=16, n_classes=10)
    values.update(changes)
    return AudioConfig(**values)


def test_arithmetic_matches_gperc():
    config = make()
    assert config.samples_per_track == 32000
    assert config.samples_per_segment == 8000
    assert config.input_len == math.ceil(8000 / 512) * 13 == 16 * 13
    assert config.input_dim == 1
    assert (config.output_len, config.output_dim, config.n_classes) == (1, 16, 10)
    assert config.decoder_residual is False and config.decoder_projection is True
    assert isinstance(config, PerceiverConfig)


def test_derived_fields_override_kwargs_and_fields_survive_json():
    config = make(input_len=3, num_layers=3)
    assert config.input_len == 16 * 13 and config.num_layers == 3
    again = AudioConfig.from_json(config.to_json())
    assert again == config and again.num_mfcc == 13
    plain = PerceiverConfig.from_json(config.to_json())  # the audio settings are no model fields: dropped
    assert plain.input_len == config.input_len and "num_mfcc" not in plain
    with pytest.raises(ConfigError, match="my_note: expected a field of AudioConfig"):
        make(my_note="x")


@pytest.mark.parametrize("field, value", [("sample_rate", 0), ("hop_length", -1), ("num_mfcc", 1.5),
                                          ("duration", 0), ("num_channels", True)])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"audio plugin: AudioConfig {field}: expected"):
        make(**{field: value})


def test_too_many_segments():
    with pytest.raises(ConfigError, match="num_segments"):
        make(sample_rate=10, duration=1, num_segments=20)


def test_to_options_gives_arrays_of_the_configured_shape():
    config = make(sample_rate=8000, duration=1, hop_length=256, num_mfcc=10, num_segments=2)
    t = torch.arange(8000, dtype=torch.float32) / 8000
    wave = torch.sin(2 * math.pi * 440 * t)
    array = gperc_input_array(modality="audio", sample=(wave, 8000), options=config.to_options()).array
    assert tuple(array.shape) == (config.input_len, config.input_dim) == (math.ceil(4000 / 256) * 10, 1)
