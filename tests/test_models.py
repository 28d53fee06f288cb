"""The Perceiver with gperc's API: shapes, reductions, sentinels, masks, invariances, errors, training."""

from __future__ import annotations

import inspect

import pytest
import torch

from gperc_core import (InputError, PerceiverConfig, mask_sentinel, output_sentinel)
from gperc_core.models import (Block, DecoderBlock, Embeddings, EncoderBlock, Perceiver, ProcessorBlock,
                               build_position_encoding, get_distributed_model)


def small_config(**kw) -> PerceiverConfig:
    base = dict(input_len=20, input_dim=6, latent_len=4, latent_dim=16, output_len=3, output_dim=8,
                ffw_latent=32, ffw_output=16, num_heads=2, num_layers=2, n_classes=5, dropout=0.0)
    base.update(kw)
    return PerceiverConfig(**base)


def test_seed_api_signatures():
    assert list(inspect.signature(build_position_encoding).parameters) == [
        "position_encoding_type", "config", "num_index_items", "emb_dim"]
    assert list(inspect.signature(Block.__init__).parameters)[1:7] == [
        "kv_dim", "q_dim", "num_heads", "ffw_dim", "dropout", "add_residual"]
    assert list(inspect.signature(Block.forward).parameters)[1:4] == ["kv", "q", "attn_mask"]
    assert list(inspect.signature(Embeddings.forward).parameters)[1:] == [
        "input_array", "attention_mask", "output_array"]
    assert list(inspect.signature(Perceiver.forward).parameters)[1:] == [
        "input_array", "attention_mask", "output_array", "return_attentions"]
    assert list(inspect.signature(Perceiver.num_parameters).parameters)[1:] == ["include_non_trainable"]
    assert list(inspect.signature(get_distributed_model).parameters)[0] == "config"
    for cls in (EncoderBlock, ProcessorBlock, DecoderBlock, Perceiver):
        assert list(inspect.signature(cls.__init__).parameters)[1:] == ["config"]


@pytest.mark.parametrize("reduction, shape", [("mean", (2, 5)), ("max", (2, 5)), ("sum", (2, 5)),
                                              ("first", (2, 5)), ("last", (2, 5)), ("eot", (2, 5)),
                                              (None, (2, 3, 5))])
def test_decoder_reductions(reduction, shape):
    model = Perceiver(small_config(decoder_reduction=reduction)).eval()
    x = torch.randn(2, 20, 6)
    assert model(x).shape == shape


def test_reductions_match_their_definition():
    model = Perceiver(small_config(decoder_reduction=None, decoder_projection=False)).eval()
    x = torch.randn(2, 20, 6)
    full = model(x)
    for name, expect in [("mean", full.mean(1)), ("max", full.amax(1)), ("sum", full.sum(1)),
                         ("first", full[:, 0]), ("last", full[:, -1])]:
        model.decoder.reduction = name
        torch.testing.assert_close(model(x), expect)


def test_eot_picks_last_unmasked_position():
    config = small_config(output_len=20, decoder_reduction="eot", decoder_projection=False)
    model = Perceiver(config).eval()
    x = torch.randn(2, 20, 6)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 7:] = False
    out = model(x, mask)
    model.decoder.reduction = None
    full = model(x, mask)
    torch.testing.assert_close(out[0], full[0, 6])
    torch.testing.assert_close(out[1], full[1, 19])


def test_return_attentions_lists_encoder_each_layer_and_decoder():
    model = Perceiver(small_config(num_layers=3)).eval()
    x = torch.randn(2, 20, 6)
    logits, attentions = model(x, return_attentions=True)
    assert [tuple(a.shape) for a in attentions] == [(2, 2, 4, 20)] + [(2, 2, 4, 4)] * 3 + [(2, 2, 3, 4)]
    torch.testing.assert_close(logits, model(x))


def test_sentinels_equal_none():
    model = Perceiver(small_config()).eval()
    x = torch.randn(3, 20, 6)
    expected = model(x)
    torch.testing.assert_close(model(x, mask_sentinel(3), output_sentinel(3)), expected)
    torch.testing.assert_close(model(x, None, output_sentinel(3)), expected)
    # a real [b, m] mask is always a mask, even when filled with ones
    torch.testing.assert_close(model(x, torch.ones(3, 20, dtype=torch.long)), expected)


def test_one_dimensional_non_sentinel_is_an_error():
    model = Perceiver(small_config())
    with pytest.raises(InputError, match="attention_mask: a 1-D tensor is only accepted as the sentinel"):
        model(torch.randn(3, 20, 6), torch.tensor([-69, -69, 1]))
    with pytest.raises(InputError, match="output_array: a 1-D tensor"):
        model(torch.randn(3, 20, 6), None, torch.zeros(3))


def test_a_mask_whose_mean_is_the_sentinel_is_still_a_mask():
    """gperc detected sentinels by their mean; a real mask can never be mistaken for one here."""
    model = Perceiver(small_config(input_len=2, input_dim=6)).eval()
    x = torch.randn(1, 2, 6)
    with pytest.raises(InputError, match="booleans or 0/1"):
        model(x, torch.tensor([[-69.0, -69.0]]))


def test_padding_invariance_of_the_whole_model():
    model = Perceiver(small_config()).eval()
    x = torch.randn(2, 20, 6)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[:, 12:] = False
    out = model(x, mask)
    x2 = x.clone()
    x2[:, 12:] = torch.randn(2, 8, 6) * 100
    torch.testing.assert_close(model(x2, mask), out)
    torch.testing.assert_close(model(x[:, :12]), out)


@pytest.mark.parametrize("heads", [1, 2, 4, 8, 16])
def test_every_latent_depends_on_every_unmasked_input_for_every_head_count(heads):
    config = small_config(latent_dim=16, num_heads=heads, output_dim=16, num_layers=0)
    model = Perceiver(config).double()
    x = torch.randn(1, 20, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[0, 15:] = False
    latents, _ = model.encode(x, mask)
    for j in range(config.latent_len):
        for hd in range(heads):  # every head's slice of every latent
            width = config.latent_dim // heads
            (grad,) = torch.autograd.grad(latents[0, j, hd * width:(hd + 1) * width].sum(), x, retain_graph=True)
            per_position = grad[0].abs().sum(-1)
            assert (per_position[:15] > 0).all()
            assert (per_position[15:] == 0).all()


def test_given_output_array_is_used_once_without_added_position():
    """gperc added the decoder position embedding twice; a given output array reaches the decoder as is."""
    model = Perceiver(small_config()).eval()
    x = torch.randn(2, 20, 6)
    queries = torch.randn(2, 3, 8)
    _, _, _, out_array = model.embeddings(x, None, queries)
    assert out_array is queries
    logits, _ = model.decoder(model.encode(x)[0].clone(), queries)
    latents = model.encode(x)[0]
    for layer in range(2):
        latents, _ = model.processor_at(layer)(latents)
    torch.testing.assert_close(model(x, None, queries), model.decoder(latents, queries)[0])


def test_token_inputs_and_errors():
    config = small_config(input_type="tokens", input_num_tokens=50, input_dim=8)
    model = Perceiver(config).eval()
    ids = torch.randint(0, 50, (2, 20))
    assert model(ids).shape == (2, 5)
    with pytest.raises(InputError, match=r"token ids in \[0, 50\), got values in \[50, 50\]"):
        model(torch.full((2, 20), 50))
    with pytest.raises(InputError, match="expected integer token ids"):
        model(torch.randn(2, 20))


@pytest.mark.parametrize("args, match", [
    ((torch.randn(2, 20, 5),), r"input_array: expected a float tensor \[batch, m<=20, 6\].*shape=\(2, 20, 5\)"),
    ((torch.randn(2, 21, 6),), r"input_array: expected between 1 and input_len=20 elements on axis 1, got 21"),
    ((torch.randint(0, 3, (2, 20, 6)),), r"input_array: expected a float tensor"),
    (([[1.0]],), r"input_array: expected a torch.Tensor, got list"),
    ((torch.randn(2, 20, 6), torch.ones(2, 19)), r"attention_mask: expected shape \[2, 20\]"),
    ((torch.randn(2, 20, 6), torch.zeros(2, 20)), r"at least one unmasked position per sample, samples \[0, 1\]"),
    ((torch.randn(2, 20, 6), None, torch.randn(2, 3, 7)), r"output_array: expected a float tensor \[2, o, 8\]"),
])
def test_bad_inputs_are_named_before_compute(args, match):
    model = Perceiver(small_config())
    with pytest.raises(InputError, match=match):
        model(*args)


def test_position_encodings():
    config = small_config(input_len=12, input_pos_shape=[3, 4], fourier_num_bands=2)
    trainable = build_position_encoding("trainable", config, 12, 6)
    sinusoid = build_position_encoding("sinusoid", config, 12, 6)
    fourier = build_position_encoding("fourier", config, 12, 12)
    assert trainable.requires_grad and not sinusoid.requires_grad and not fourier.requires_grad
    assert trainable.shape == sinusoid.shape == (12, 6) and fourier.shape == (12, 12)
    assert (fourier[:, 10:] == 0).all() and fourier[:, :10].abs().sum() > 0
    for kind in ("sinusoid", "fourier", "none"):
        model = Perceiver(small_config(input_len=12, input_pos_shape=[3, 4], input_pos_enc=kind,
                                       fourier_num_bands=2)).eval()
        assert model(torch.randn(2, 12, 6)).shape == (2, 5)


def test_share_weights_and_num_parameters():
    shared = Perceiver(small_config(num_layers=4, share_weights=True))
    separate = Perceiver(small_config(num_layers=4))
    assert len(shared.processors) == 1 and len(separate.processors) == 4
    per_layer = sum(p.numel() for p in separate.processors[0].parameters())
    assert separate.num_parameters() - shared.num_parameters() == 3 * per_layer
    fixed = Perceiver(small_config(input_pos_enc="sinusoid"))
    assert fixed.num_parameters(include_non_trainable=False) == fixed.num_parameters()
    frozen = Perceiver(small_config())
    frozen.embeddings.latent.requires_grad_(False)
    assert frozen.num_parameters() - frozen.num_parameters(include_non_trainable=False) == 4 * 16


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = Perceiver(small_config()), Perceiver(small_config())
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_bf16_autocast_close_to_fp32():
    model = Perceiver(small_config(latent_dim=32, output_dim=32)).eval()
    x = torch.randn(4, 20, 6)
    ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)


def test_small_overfit():
    torch.manual_seed(0)
    config = small_config(n_classes=4, output_len=1, latent_dim=32, output_dim=32, num_heads=4)
    model = Perceiver(config)
    x = torch.randn(16, 20, 6)
    y = torch.arange(16) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (model(x).argmax(-1) == y).all()
