"""Import of `transformers` Perceivers (gperc_core.interop.transformers): same logits to 1e-4, safe loading,
exact refusals, `gperc convert` and `gperc train --init`. Offline: every model is randomly initialised."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the transformers extra is part of the test install")
from transformers.models.perceiver import modeling_perceiver as hfp  # noqa: E402

from gperc_core.errors import CheckpointError, ConfigError  # noqa: E402
from gperc_core.interop.transformers import convert_transformers, from_transformers, image_to_gperc  # noqa: E402

TOL = 1e-4


def small_config(**changes) -> "transformers.PerceiverConfig":
    """A tiny `transformers` Perceiver config (every width small, no dropout)."""
    base = dict(num_latents=6, d_latents=32, d_model=16, num_blocks=1, num_self_attends_per_block=2,
                num_self_attention_heads=4, num_cross_attention_heads=2, self_attention_widening_factor=2,
                cross_attention_widening_factor=3, vocab_size=50, max_position_embeddings=24, image_size=4,
                num_labels=5, attention_probs_dropout_prob=0.0)
    base.update(changes)
    return transformers.PerceiverConfig(**base)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (biases and norms included, the key bias too) random values; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def random_mask(b: int, m: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, m, generator=gen) > 0.4).long()
    mask[:, 0] = 1
    return mask


def assert_same(expected: torch.Tensor, actual: torch.Tensor) -> None:
    assert expected.shape == actual.shape, (expected.shape, actual.shape)
    diff = (expected - actual).abs().max().item()
    assert diff < TOL, f"max abs difference {diff}"


def tokens(b: int = 3, m: int = 24, seed: int = 2) -> torch.Tensor:
    return torch.randint(0, 50, (b, m), generator=torch.Generator().manual_seed(seed))


def images(b: int = 2, size: int = 4, seed: int = 3) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- logits per class
@pytest.mark.parametrize("changes", [
    {},
    {"qk_channels": 16, "v_channels": 32},
    {"num_blocks": 2},  # two distinct layers, cycled twice
    {"num_blocks": 3, "num_self_attends_per_block": 1},  # one shared layer
    {"cross_attention_shape_for_attention": "q", "use_query_residual": False},
])
def test_sequence_classification_matches(changes):
    hf = randomise(transformers.PerceiverForSequenceClassification(small_config(**changes)))
    model = from_transformers(hf)
    ids = tokens(m=20)
    for mask in (None, random_mask(3, 20)):
        with torch.no_grad():
            expected = hf(inputs=ids, attention_mask=mask).logits
            actual = model(ids, attention_mask=mask)
        assert_same(expected, actual)


def test_masked_lm_matches_with_tied_embedding():
    hf = randomise(transformers.PerceiverForMaskedLM(small_config()))
    model = from_transformers(hf)
    assert model.config.tie_output_embedding and model.decoder.projection is None
    ids = tokens(m=24)
    for mask in (None, random_mask(3, 24)):
        with torch.no_grad():
            expected = hf(inputs=ids, attention_mask=mask).logits
            actual = model(ids, attention_mask=mask)
        assert_same(expected, actual)  # [b, max_position_embeddings, vocab_size]
    with torch.no_grad():  # the projection is the input embedding itself, so tuning one tunes both
        model.embeddings.input_embedding.weight.mul_(2.0)
        assert not torch.allclose(model(ids), actual)


def test_image_classification_learned_matches():
    hf = randomise(transformers.PerceiverForImageClassificationLearned(small_config()))
    model = from_transformers(hf)
    pixels = images()
    with torch.no_grad():
        assert_same(hf(inputs=pixels).logits, model(image_to_gperc(pixels)))
        mask = random_mask(2, 16)
        assert_same(hf(inputs=pixels, attention_mask=mask).logits, model(image_to_gperc(pixels), attention_mask=mask))


def test_image_classification_fourier_matches():
    hf = randomise(transformers.PerceiverForImageClassificationFourier(small_config(image_size=5, num_cross_attention_heads=1)))
    model = from_transformers(hf)
    assert model.config.input_pos_shape == [5, 5]
    pixels = images(size=5)
    with torch.no_grad():
        assert_same(hf(inputs=pixels).logits, model(image_to_gperc(pixels)))
        mask = random_mask(2, 25)
        assert_same(hf(inputs=pixels, attention_mask=mask).logits, model(image_to_gperc(pixels), attention_mask=mask))
    other = from_transformers(hf, image_size=(3, 6))  # a Fourier model reads any size; gperc fixes it
    pixels = torch.randn(2, 3, 3, 6)
    with torch.no_grad():
        assert_same(hf(inputs=pixels).logits, other(image_to_gperc(pixels)))


@pytest.mark.parametrize("fourier", [dict(concat_pos=True, sine_only=False), dict(concat_pos=True, sine_only=True)])
def test_perceiver_model_with_fourier_image_preprocessor(fourier):
    config = small_config(num_cross_attention_heads=1)  # the keys are as wide as pixels + features (kv)
    prep = hfp.PerceiverImagePreprocessor(
        config, prep_type="pixels", spatial_downsample=1,
        fourier_position_encoding_kwargs=dict(max_resolution=(8, 6), num_bands=4, **fourier))
    decoder = hfp.PerceiverClassificationDecoder(
        config, num_channels=32, trainable_position_encoding_kwargs=dict(num_channels=32, index_dims=1),
        use_query_residual=True)
    hf = randomise(transformers.PerceiverModel(config, input_preprocessor=prep, decoder=decoder))
    model = from_transformers(hf, image_size=(4, 4))
    pixels = images()
    with torch.no_grad():
        assert_same(hf(inputs=pixels).logits, model(image_to_gperc(pixels)))


def test_perceiver_model_generic_returns_latents():
    hf = randomise(transformers.PerceiverModel(small_config()))  # no preprocessor, no decoder
    model = from_transformers(hf)
    assert model.config.encoder_only and model.decoder is None
    x = torch.randn(3, 10, 16)
    for mask in (None, random_mask(3, 10)):
        with torch.no_grad():
            assert_same(hf(inputs=x, attention_mask=mask).last_hidden_state, model(x, attention_mask=mask))


def test_perceiver_model_text_with_basic_decoder():
    config = small_config()
    decoder = hfp.PerceiverBasicDecoder(
        config, output_num_channels=7, output_index_dims=3, num_channels=12, qk_channels=8, v_channels=12,
        num_heads=2, widening_factor=2, use_query_residual=True, final_project=True,
        trainable_position_encoding_kwargs=dict(num_channels=12, index_dims=3))
    hf = randomise(transformers.PerceiverModel(config, input_preprocessor=hfp.PerceiverTextPreprocessor(config),
                                               decoder=decoder))
    model = from_transformers(hf)
    ids = tokens(m=9)
    for mask in (None, random_mask(3, 9)):
        with torch.no_grad():
            assert_same(hf(inputs=ids, attention_mask=mask).logits, model(ids, attention_mask=mask))


def test_key_bias_is_dropped_exactly():
    """gperc keys have no bias: a key bias only shifts each query row's scores, so softmax removes it."""
    hf = randomise(transformers.PerceiverForSequenceClassification(small_config()))
    ids = tokens(m=12)
    with torch.no_grad():
        before = hf(inputs=ids).logits
        bias = hf.perceiver.encoder.cross_attention.attention.self.key.bias
        assert bias.abs().sum() > 0
        bias.add_(5.0)
        assert_same(before, hf(inputs=ids).logits)
    _, state = convert_transformers(hf)
    assert not any(k.endswith("key.bias") for k in state)


# --------------------------------------------------------------------------- folders and safety
def test_save_pretrained_folder_converts(tmp_path):
    hf = randomise(transformers.PerceiverForSequenceClassification(small_config()))
    hf.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()
    model = from_transformers(tmp_path)
    ids = tokens(m=8)
    with torch.no_grad():
        assert_same(hf(inputs=ids).logits, model(ids))


def test_pickled_weights_are_refused(tmp_path):
    hf = transformers.PerceiverForSequenceClassification(small_config())
    hf.save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*never unpickles.*save_pretrained.*safe_serialization=True"):
        from_transformers(tmp_path)


def test_unsupported_class_in_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "perceiver",
                                                      "architectures": ["PerceiverForOpticalFlow"]}))
    with pytest.raises(ConfigError, match="architectures.*PerceiverForOpticalFlow"):
        from_transformers(tmp_path)


@pytest.mark.parametrize("make, field", [
    (lambda: transformers.PerceiverForSequenceClassification(small_config(hidden_act="relu")), "hidden_act"),
    (lambda: transformers.PerceiverForImageClassificationConvProcessing(small_config()), "model"),
    (lambda: transformers.PerceiverModel(
        small_config(), input_preprocessor=hfp.PerceiverImagePreprocessor(
            small_config(), prep_type="patches", spatial_downsample=2,
            fourier_position_encoding_kwargs=dict(max_resolution=(4, 4), num_bands=2))), "spatial_downsample"),
    (lambda: transformers.PerceiverModel(
        small_config(num_cross_attention_heads=1), input_preprocessor=hfp.PerceiverImagePreprocessor(
            small_config(), prep_type="pixels", spatial_downsample=1, project_pos_dim=8,
            fourier_position_encoding_kwargs=dict(max_resolution=(4, 4), num_bands=2))), "project_pos_dim"),
])
def test_unrepresentable_models_are_refused(make, field):
    with pytest.raises(ConfigError, match=f"^{field}: expected"):
        from_transformers(make())


def test_changed_layer_norm_eps_is_refused():
    hf = transformers.PerceiverForSequenceClassification(small_config())
    hf.perceiver.encoder.self_attends[1].layernorm.eps = 1e-12
    with pytest.raises(ConfigError, match=r"encoder\.self_attends\.1\.layernorm: expected .*eps"):
        from_transformers(hf)


# --------------------------------------------------------------------------- CLI and fine-tuning
def _letters_model(tmp_path):
    """A transformers sequence classifier shaped for the fake ``seq/letters`` task, saved with save_pretrained."""
    hf = randomise(transformers.PerceiverForSequenceClassification(small_config(
        vocab_size=4, max_position_embeddings=9, num_labels=3, d_model=16, d_latents=16, num_latents=4)))
    folder = tmp_path / "hf"
    hf.save_pretrained(folder, safe_serialization=True)
    return hf, folder


def test_gperc_convert_cli_writes_a_loadable_model(tmp_path, capsys):
    from gperc_core.cli import main
    from gperc_core.model.perceiver import Perceiver

    hf, folder = _letters_model(tmp_path)
    out = tmp_path / "gperc"
    assert main(["convert", str(folder), str(out)]) == 0
    assert "model folder:" in capsys.readouterr().out
    model = Perceiver.from_pretrained(out).eval()
    ids = torch.randint(0, 4, (2, 9))
    with torch.no_grad():
        assert_same(hf(inputs=ids).logits, model(ids))
    assert main(["convert", str(folder), str(out)]) == 2  # an existing model is not overwritten
    assert "expected a new folder" in capsys.readouterr().err
    assert main(["convert", str(folder), str(out), "--force"]) == 0


def test_train_init_from_converted_model(tmp_path, monkeypatch, capsys):
    import gperc_core.plugins.manager as plugins
    from gperc_core.api.training import train
    from gperc_core.cli import main
    from gperc_core.data.tasks import create_task
    from gperc_core.io.checkpoint import load_tensors, read_config
    from taskfakes import fake_pm

    monkeypatch.setattr(plugins, "_default", fake_pm())
    _, folder = _letters_model(tmp_path)
    out = tmp_path / "gperc"
    assert main(["convert", str(folder), str(out)]) == 0
    quick = ["--quiet", "--no-bf16", "--max-steps", "1", "--set", "training.max_train_samples=8",
             "--set", "training.max_eval_samples=8"]
    assert main(["train", "seq/letters", "--init", str(out), "--out", str(tmp_path / "bad"), *quick]) == 2
    err = capsys.readouterr().err
    assert "training.init" in err and "latent_len" not in err and "decoder_reduction (task 'mean', init 'first')" in err

    subset = {"training.max_train_samples": 8, "training.max_eval_samples": 8}  # inference reads the training subset
    task_config = create_task("seq/letters", pm=fake_pm(), **subset).infer_config().to_dict()
    init_config = read_config(out).to_dict()
    overrides = {f"model.{k}": v for k, v in init_config.items() if task_config[k] != v and k not in ("seed", "dropout")}
    overrides.update({"training.lr": 1e-12, "training.max_steps": 1, "training.max_train_samples": 8,
                      "training.max_eval_samples": 8, "training.bf16": False, "training.progress": False,
                      "training.weight_decay": 0.0, "training.init": str(out)})
    result = train("seq/letters", tmp_path / "run", overrides=overrides, pm=fake_pm())
    start, tuned = load_tensors(out / "model.safetensors"), load_tensors(result["model"])
    assert start.keys() == tuned.keys()
    for key in start:  # one step at lr 1e-12: the run began from the converted weights
        assert torch.allclose(start[key], tuned[key], atol=1e-6), key


def test_new_fields_default_to_gperc_model():
    """A config.json without the interop fields builds the same modules and weights as before them."""
    from gperc_core.config.perceiver import PerceiverConfig
    from gperc_core.model.perceiver import Perceiver

    new = {"cross_qk_channels", "cross_v_channels", "self_qk_channels", "self_v_channels", "decoder_qk_channels",
           "decoder_v_channels", "encoder_residual", "processor_blocks", "input_projection", "input_pos_dim",
           "fourier_concat_pos", "fourier_sine_only", "encoder_only", "tie_output_embedding"}
    old = {k: v for k, v in PerceiverConfig().to_dict().items() if k not in new}
    model = Perceiver(PerceiverConfig.from_dict(old))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["encoder.block.attention.key.weight"] == (16, 8)
    assert shapes["decoder.block.attention.out.weight"] == (10, 10)
    assert not any("output_bias" in k or "input_projection" in k for k in shapes)
    assert model.encoder.block.add_residual and len(model.processors) == 2
