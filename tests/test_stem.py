"""The convolutional input stem (``PerceiverConfig.input_stem``): the grid it leaves, that it is the
convolution it says over row-major grids, locality, padding invariance and masks, token inputs,
checkpoints, export, and bad settings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gperc_core import ConfigError, InputError, Perceiver, PerceiverConfig
from gperc_core.model.stem import ConvStem

GRID = dict(input_len=48, input_dim=2, input_pos_shape=[6, 8], input_pos_enc="fourier", fourier_num_bands=2,
            latent_len=4, latent_dim=16, output_dim=16, n_classes=3, dropout=0.0)
STEM = {"channels": [5, 7], "strides": [1, 2]}


def test_the_encoder_reads_the_grid_the_stem_leaves():
    config = PerceiverConfig(**GRID, input_stem=STEM)
    assert config.encoded_shape == (3, 4) and config.encoded_len == 12
    assert config.input_feature_dim == 7
    assert config.input_embed_dim == 7 + config.fourier_channels
    odd = config.replace(input_stem={"channels": [4, 4], "strides": [2, 2]})
    assert odd.encoded_shape == (2, 2)                             # 6 -> 3 -> 2, 8 -> 4 -> 2 (ceil)
    assert config.replace(input_stem=None).encoded_shape == (6, 8)
    one_d = PerceiverConfig(input_len=10, input_dim=3, input_stem={"channels": [4], "strides": [3]})
    assert one_d.encoded_shape == (4,) and one_d.input_feature_dim == 4
    projected = config.replace(input_projection=9)
    assert Perceiver(projected).embeddings.input_projection.in_features == 7


def test_the_stem_is_its_convolutions_over_the_row_major_grid():
    torch.manual_seed(0)
    stem = ConvStem(STEM, (6, 8), 2)
    x = torch.randn(3, 48, 2)
    image = x.transpose(1, 2).reshape(3, 2, 6, 8)                   # element r * 8 + c is pixel (r, c)
    conv1, conv2 = stem.layers
    expected = F.gelu(F.conv2d(F.gelu(F.conv2d(image, conv1.weight, conv1.bias, padding=1)),
                               conv2.weight, conv2.bias, stride=2, padding=1))
    features, mask = stem(x)
    assert mask is None and torch.allclose(features, expected.flatten(2).transpose(1, 2), atol=1e-6)


def test_an_input_element_reaches_only_the_outputs_over_its_neighbourhood():
    torch.manual_seed(0)
    stem = ConvStem({"channels": [4], "strides": [1]}, (6, 8), 2)
    x = torch.randn(1, 48, 2)
    moved = x.clone()
    moved[0, 2 * 8 + 5] += 1.0                                     # pixel (2, 5)
    changed = (stem(moved)[0] - stem(x)[0]).abs().amax(dim=-1).reshape(6, 8) > 0
    expected = torch.zeros(6, 8, dtype=torch.bool)
    expected[1:4, 4:7] = True                                      # its 3x3 neighbourhood
    assert torch.equal(changed, expected)


def test_a_grid_must_be_whole_and_an_all_real_mask_is_no_mask():
    model = Perceiver(PerceiverConfig(**GRID, input_stem=STEM)).eval()
    x = torch.randn(2, 48, 2)
    assert torch.equal(model(x), model(x, torch.ones(2, 48, dtype=torch.bool)))
    with pytest.raises(InputError, match=r"input_array: expected the whole grid \[6, 8\] \(input_len=48"):
        model(x[:, :30])


def test_masked_elements_read_as_zeros_and_the_mask_is_strided():
    stem = ConvStem(STEM, (6, 8), 2)
    x = torch.randn(2, 48, 2)
    mask = torch.ones(2, 48, dtype=torch.bool)
    mask[1, 20:] = False
    features, strided = stem(x, mask)
    assert torch.equal(strided, mask.reshape(2, 6, 8)[:, ::2, ::2].flatten(1))   # the centre element decides
    zeroed = x * mask.unsqueeze(-1)
    with torch.no_grad():
        first = F.gelu(stem.layers[0](zeroed.transpose(1, 2).reshape(2, 2, 6, 8))) * mask.reshape(2, 1, 6, 8)
        second = F.gelu(stem.layers[1](first))
    assert torch.allclose(features, second.flatten(2).transpose(1, 2), atol=1e-6)


TOKENS = dict(input_len=20, input_dim=8, input_type="tokens", input_num_tokens=30, latent_len=4, latent_dim=16,
              output_dim=16, n_classes=3, dropout=0.0, input_stem={"channels": [12, 12], "strides": [1, 2]})


@pytest.mark.parametrize("pos", ["trainable", "sinusoid"])
def test_right_padding_does_not_change_a_token_sequence(pos):
    """Over token ids the stem is a learned n-gram detector; padding after a sequence changes nothing."""
    model = Perceiver(PerceiverConfig(**TOKENS, input_pos_enc=pos)).eval()
    config = model.config
    assert config.encoded_shape == (10,)
    ids = torch.randint(1, 30, (1, 13))
    padded = torch.cat([ids, torch.zeros(1, 7, dtype=torch.long)], dim=1)
    mask = torch.arange(20).unsqueeze(0) < 13
    with torch.no_grad():
        alone = model(ids)                                       # a shorter 1-D sequence is fine
        assert torch.allclose(model(padded, mask), alone, atol=1e-5)
        other = torch.cat([ids, torch.randint(1, 30, (1, 7))], dim=1)
        assert torch.allclose(model(other, mask), alone, atol=1e-5)   # what is padded does not matter


def test_it_trains_and_saves_with_the_model(tmp_path):
    torch.manual_seed(0)
    model = Perceiver(PerceiverConfig(**GRID, input_stem=STEM))
    x, y = torch.randn(8, 48, 2), torch.randint(0, 3, (8,))
    F.cross_entropy(model(x), y).backward()
    assert model.embeddings.input_stem.layers[0].weight.grad.abs().sum() > 0
    model.save(tmp_path)
    loaded = Perceiver.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config
    assert torch.equal(loaded(x), model.eval()(x))
    again = Perceiver(PerceiverConfig(**GRID, input_stem=STEM))
    assert torch.equal(again.embeddings.input_stem.layers[0].weight, Perceiver(again.config).embeddings.input_stem
                       .layers[0].weight)                         # seeded like every other unit


@pytest.mark.parametrize("stem, message", [
    ({"channels": []}, "input_stem.channels: expected a non-empty list of positive integers"),
    ({"channels": [4, 0]}, "input_stem.channels: expected a non-empty list of positive integers"),
    ({"channels": [4], "strides": [1, 2]}, "input_stem.strides: expected one positive integer per layer (1)"),
    ({"channels": [4], "kernel_size": 2}, "input_stem.kernel_size: expected an odd positive integer, got 2"),
    ({"channels": [4], "kernal_size": 3}, "input_stem: expected keys among"),
    ([4, 8], "input_stem: expected None or a table"),
])
def test_bad_stems_name_the_key(stem, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PerceiverConfig(**GRID, input_stem=stem)


@pytest.mark.parametrize("changes, message", [
    (dict(decoder_reduction="eot", output_len=48), "decoder_reduction: expected not 'eot'"),
    (dict(fusion={"a": {"input_len": 48, "input_dim": 2}}), "fusion: expected None"),
    (dict(input_pos_shape=[2, 2, 2, 6]), "input_stem: expected an input grid .input_pos_shape. of 1 to 3 axes"),
])
def test_what_a_stem_cannot_go_with_is_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        PerceiverConfig(**{**GRID, **changes, "input_stem": STEM})


@pytest.mark.slow
def test_onnx_export_of_a_stem_runs_like_gperc(tmp_path):
    pytest.importorskip("onnxruntime")
    from gperc_core.interop.onnx import ExportedModel, export_model

    model = Perceiver(PerceiverConfig(**GRID, input_stem=STEM)).eval()
    exported = ExportedModel(export_model(model, tmp_path / "stem.onnx", "onnx"))
    for batch in (1, 4):
        x = torch.randn(batch, 48, 2)
        mask = torch.rand(batch, 48) > 0.3
        mask[:, 0] = True
        with torch.no_grad():
            assert (model(x) - exported(x)).abs().max() < 1e-4
            assert (model(x, mask) - exported(x, mask)).abs().max() < 1e-4
