"""PerceiverConfig: gperc's fields, extras, mapping access, serialisation, validation."""

from __future__ import annotations

import pytest

from gperc_core import ConfigError, PerceiverConfig

GPERC_FIELDS = ["input_len", "input_dim", "latent_len", "latent_dim", "output_len", "output_dim", "ffw_latent",
                "ffw_output", "num_heads", "num_layers", "input_type", "input_num_tokens", "decoder_reduction",
                "decoder_residual", "decoder_projection", "n_classes", "pos_init_std", "dropout", "seed"]


def test_has_gperc_fields_with_defaults():
    config = PerceiverConfig()
    for name in GPERC_FIELDS:
        assert name in config
    assert config.input_type == "raw" and config.decoder_reduction == "mean"
    assert config.keys()[: len(GPERC_FIELDS)] == GPERC_FIELDS


def test_extra_kwargs_kept_and_item_access():
    config = PerceiverConfig(latent_dim=32, my_extra="hello")
    assert config.my_extra == "hello"
    assert config["my_extra"] == "hello"
    assert config["latent_dim"] == 32
    config["dropout"] = 0.0
    assert config.dropout == 0.0
    with pytest.raises(KeyError, match="nope"):
        config["nope"]


def test_json_and_toml_round_trip(tmp_path):
    config = PerceiverConfig(input_len=12, input_pos_shape=[3, 4], input_pos_enc="fourier", fourier_num_bands=4,
                             cross_heads=1, self_widening=2.0, share_weights=True, my_extra=[1, 2])
    assert PerceiverConfig.from_json(config.to_json()) == config
    config.to_json(tmp_path / "c.json")
    assert PerceiverConfig.from_json(tmp_path / "c.json") == config
    assert PerceiverConfig.from_toml(config.to_toml()) == config
    config.to_toml(tmp_path / "c.toml")
    assert PerceiverConfig.from_toml(tmp_path / "c.toml") == config


def test_replace_validates():
    config = PerceiverConfig()
    assert config.replace(latent_dim=32).latent_dim == 32
    with pytest.raises(ConfigError, match="latent_dim"):
        config.replace(latent_dim=15)


@pytest.mark.parametrize("kwargs, match", [
    (dict(latent_dim=15, num_heads=2), r"latent_dim: expected a multiple of the cross-attention heads \(2\), got 15"),
    (dict(latent_dim=16, self_heads=3), r"latent_dim: expected a multiple of the self-attention heads \(3\)"),
    (dict(output_dim=10, num_heads=4, latent_dim=16), r"output_dim: expected a multiple of the decoder heads \(4"),
    (dict(decoder_reduction="median"), r"decoder_reduction: expected one of .*got 'median'"),
    (dict(input_type="tokens"), r"input_num_tokens: expected a positive integer when input_type='tokens', got None"),
    (dict(input_type="pixels"), r"input_type: expected one of \('raw', 'tokens'\), got 'pixels'"),
    (dict(input_len=0), r"input_len: expected a positive integer, got 0"),
    (dict(num_layers=-1), r"num_layers: expected an integer >= 0, got -1"),
    (dict(dropout=1.5), r"dropout: expected a number in \[0, 1\), got 1.5"),
    (dict(input_pos_enc="rope"), r"input_pos_enc: expected one of"),
    (dict(input_len=10, input_pos_shape=[3, 3]), r"input_pos_shape: .*product is input_len=10, got \[3, 3\]"),
    (dict(share_weights="yes"), r"share_weights: expected True or False, got 'yes'"),
    (dict(cross_widening=-1), r"cross_widening: expected a positive number or None, got -1"),
])
def test_validation_errors_name_field_expected_and_actual(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PerceiverConfig(**kwargs)


def test_derived_widths():
    config = PerceiverConfig(latent_dim=32, output_dim=16, cross_widening=2, self_widening=4, cross_heads=1,
                             self_heads=8, num_heads=2)
    assert (config.encoder_ffw, config.processor_ffw, config.decoder_ffw) == (64, 128, 32)
    assert (config.n_cross_heads, config.n_self_heads, config.n_decoder_heads) == (1, 8, 1)
    assert PerceiverConfig().num_classes == 10
    fourier = PerceiverConfig(input_len=12, input_pos_shape=[3, 4], input_pos_enc="fourier", fourier_num_bands=4)
    assert fourier.fourier_channels == 2 * 9 and fourier.input_embed_dim == 8 + 18
