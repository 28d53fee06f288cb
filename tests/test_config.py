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


def test_unknown_kwargs_are_errors_and_item_access():
    with pytest.raises(ConfigError, match=r"latnt_dim: expected a field of PerceiverConfig, got an unknown name "
                                          r"\(did you mean 'latent_dim'\?\)"):
        PerceiverConfig(latnt_dim=64)
    with pytest.raises(ConfigError, match="my_extra: expected a field of PerceiverConfig.*fields: input_len"):
        PerceiverConfig(latent_dim=32, my_extra="hello")
    config = PerceiverConfig(latent_dim=32)
    assert config["latent_dim"] == 32
    config["dropout"] = 0.0
    assert config.dropout == 0.0
    with pytest.raises(KeyError, match="nope"):
        config["nope"]


def test_json_and_toml_round_trip(tmp_path):
    config = PerceiverConfig(input_len=12, input_pos_shape=[3, 4], input_pos_enc="fourier", fourier_num_bands=4,
                             cross_heads=1, self_widening=2.0, share_weights=True)
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


@pytest.mark.parametrize("assign", [lambda c: c.__setitem__("latent_dim", 17), lambda c: setattr(c, "latent_dim", 17)])
def test_assignment_validates_and_a_failed_one_changes_nothing(assign):
    config = PerceiverConfig(latent_dim=16, num_heads=2)
    before = config.to_dict()
    with pytest.raises(ConfigError, match=r"latent_dim: expected a multiple of the cross-attention heads \(2\), got 17"):
        assign(config)
    assert config.to_dict() == before and config.latent_dim == 16
    config.latent_dim = 32
    with pytest.raises(ConfigError, match="output_dim: expected a multiple of the decoder heads"):
        config["num_heads"] = 4  # each assignment is checked alone: use replace() for coupled changes
    config.output_dim = 32
    config["num_heads"] = 4
    assert (config.latent_dim, config.output_dim, config.num_heads) == (32, 32, 4)
    assert config.replace(num_heads=8, latent_dim=64, output_dim=64).num_heads == 8


def test_assigning_an_unknown_field_is_an_error():
    config = PerceiverConfig()
    with pytest.raises(ConfigError, match="latnt_dim: .*did you mean 'latent_dim'"):
        config.latnt_dim = 64
    with pytest.raises(ConfigError, match="n_layers: .*did you mean 'num_layers'"):
        config["n_layers"] = 3
    with pytest.raises(ConfigError, match="num_classes: expected a field"):
        config.num_classes = 3  # a derived property, not a field
    assert "latnt_dim" not in config and config == PerceiverConfig()


def test_replace_keeps_the_class_and_rejects_unknown_fields():
    config = PerceiverConfig()
    with pytest.raises(ConfigError, match="latnt_dim: .*did you mean 'latent_dim'"):
        config.replace(latnt_dim=32)
    copy = config.replace(latent_dim=32)
    assert copy.latent_dim == 32 and config.latent_dim == 16


def test_fusion_fields_are_declared_and_checked():
    config = PerceiverConfig()
    assert config.fusion is None and config.modality_dropout == 0.0
    with pytest.raises(ConfigError, match="fusion: expected None or a table"):
        PerceiverConfig(fusion={})
    with pytest.raises(ConfigError, match="modality_dropout: expected a number in"):
        PerceiverConfig(modality_dropout=1.0)
    with pytest.raises(ConfigError, match=r"modality_dropout.b: expected one of the fused modalities \['a'\]"):
        PerceiverConfig(fusion={"a": {"input_len": 64, "input_dim": 8}}, modality_dropout={"b": 0.5})


def test_from_json_is_strict_but_drops_legacy_keys(tmp_path):
    text = PerceiverConfig(latent_dim=32).to_dict()
    with pytest.raises(ConfigError, match="latnt_dim: .*did you mean 'latent_dim'"):
        PerceiverConfig.from_dict({**text, "latnt_dim": 8})
    with pytest.raises(ConfigError, match="latnt_dim"):
        PerceiverConfig.from_toml("latnt_dim = 8\n")
    with pytest.warns(UserWarning, match=r"dropped keys that are not config fields: \['my_extra'\]"):
        loose = PerceiverConfig.from_dict({**text, "my_extra": 1}, strict=False)
    assert loose == PerceiverConfig(latent_dim=32)
    legacy = PerceiverConfig.from_dict({**text, "image_shape": [28, 28, 1], "num_bands": 4, "task": "classification"})
    assert legacy == PerceiverConfig(latent_dim=32) and "image_shape" not in legacy


def test_an_old_format_checkpoint_config_loads(tmp_path):
    """config.json as gperc-core 0.1 wrote it: without the fusion fields, with a plugin config's data
    options and a user's extra attribute."""
    import json

    from gperc_core.io.checkpoint import read_config

    old = {k: v for k, v in PerceiverConfig(input_len=784, input_dim=1, latent_dim=32, output_dim=32,
                                            n_classes=10).to_dict().items()
           if k not in ("fusion", "modality_dropout")}
    old.update(image_shape=[28, 28, 1], task="classification", num_bands=None, my_note="hello")
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.warns(UserWarning, match="my_note"):
        config = read_config(tmp_path)
    assert config.input_len == 784 and config.n_classes == 10 and config.fusion is None
    assert "image_shape" not in config and "my_note" not in config
    fused = {**old, "fusion": {"a": {"input_len": 780, "input_dim": 1}, "b": {"input_len": 4, "input_dim": 1}},
             "modality_dropout": {"a": 0.1}}
    fused.pop("my_note")
    (tmp_path / "config.json").write_text(json.dumps(fused))
    assert read_config(tmp_path).modality_dropout == {"a": 0.1}


@pytest.mark.parametrize("seed", [None, "4", 1.5, True, -1])
def test_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ConfigError, match="seed: expected an integer >= 0"):
        PerceiverConfig(seed=seed)


@pytest.mark.parametrize("value", ["x", "0", "-2", "1.5"])
def test_environment_integers_name_the_variable(monkeypatch, value):
    from gperc_core.config.env import env_int
    from gperc_core.data.cache import default_num_proc

    monkeypatch.setenv("GPERC_NUM_PROC", value)
    with pytest.raises(ConfigError, match=rf"GPERC_NUM_PROC: expected an integer >= 1 in the environment, got '{value}'"):
        default_num_proc()
    monkeypatch.setenv("GPERC_TEST_INT", " 7 ")
    assert env_int("GPERC_TEST_INT", 0) == 7 and env_int("GPERC_UNSET_INT", 0) is None
