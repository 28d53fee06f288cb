"""The encoder's attention sink (``PerceiverConfig.encoder_sink``): a softmax read-out cannot tell an input
from that input repeated, one with a sink can (it counts); padding still changes nothing; the sink learns,
saves and loads with the model, splits into the encoder's pipeline stage; bad values are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gperc_core import ConfigError, Perceiver, PerceiverConfig
from gperc_core.parallel.pipeline import cut_stage, plan_stages

SETS = dict(input_len=12, input_dim=5, input_pos_enc="none", latent_len=4, latent_dim=16, output_dim=16,
            n_classes=3, num_layers=2, dropout=0.0)


def _model(sink: bool) -> Perceiver:
    model = Perceiver(PerceiverConfig(**SETS, encoder_sink=sink)).eval()
    if sink:
        with torch.no_grad():  # a trained sink: its key is no longer zero
            model.encoder.sink.copy_(torch.randn(model.encoder.sink.shape, generator=torch.Generator().manual_seed(1)))
    return model


def test_only_a_sink_lets_the_read_out_count_repeated_inputs():
    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(0))
    twice = torch.cat([x, x], dim=1)  # every input element twice: the same proportions, twice the count
    with torch.no_grad():
        plain = _model(False)
        torch.testing.assert_close(plain(twice), plain(x), atol=1e-5, rtol=0)
        sink = _model(True)
        assert (sink(twice) - sink(x)).abs().max() > 1e-3
        latents, attention = sink.encode(x, return_attention=True)
    assert attention.shape[-1] == 6 + 1  # the sink's column, last
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]), atol=1e-5, rtol=0)
    assert bool((attention[..., -1] > 0).all())


@pytest.mark.parametrize("dtype", [torch.bool, torch.long])
def test_padding_changes_nothing_with_a_sink(dtype):
    model = _model(True)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 7, 5, generator=g)
    padded = torch.cat([x, torch.randn(3, 5, 5, generator=g)], dim=1)
    mask = (torch.arange(12) < 7).expand(3, -1).to(dtype)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, mask), model(x), atol=1e-5, rtol=0)


def test_the_sink_learns_saves_and_loads(tmp_path):
    model = Perceiver(PerceiverConfig(**SETS, encoder_sink=True))
    assert torch.equal(model.encoder.sink, torch.zeros(1, 1, model.config.input_embed_dim))
    x, y = torch.randn(8, 12, 5), torch.randint(0, 3, (8,))
    F.cross_entropy(model(x), y).backward()
    assert model.encoder.sink.grad.abs().sum() > 0
    with torch.no_grad():
        model.encoder.sink.add_(0.5)
    model.save(tmp_path)
    loaded = Perceiver.from_pretrained(tmp_path).eval()
    assert loaded.config.encoder_sink is True
    assert torch.equal(loaded.encoder.sink, model.encoder.sink)
    assert torch.equal(loaded(x), model.eval()(x))
    # the other units start as they do without a sink: a seed means the same weights with or without it
    plain = Perceiver(PerceiverConfig(**SETS)).state_dict()
    with_sink = Perceiver(PerceiverConfig(**SETS, encoder_sink=True)).state_dict()
    assert set(with_sink) - set(plain) == {"encoder.sink"}
    assert all(torch.equal(plain[k], with_sink[k]) for k in plain)


def test_the_sink_goes_with_the_encoder_stage():
    model = _model(True)
    stages = [cut_stage(model, *b) for b in plan_stages(model.config, 2).bounds]
    assert "encoder.sink" in stages[0].state_dict() and "encoder.sink" not in stages[1].state_dict()
    x = torch.randn(2, 12, 5)
    with torch.no_grad():
        torch.testing.assert_close(stages[1](stages[0](input_array=x)), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_sink_must_be_true_or_false(value):
    with pytest.raises(ConfigError, match=f"encoder_sink: expected True or False, got {value!r}"):
        PerceiverConfig(**SETS, encoder_sink=value)
