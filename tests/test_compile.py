"""torch.compile: the forward pass is one graph, with and without a mask, and matches eager."""

from __future__ import annotations

import pytest
import torch

from gperc_core import PerceiverConfig, mask_sentinel
from gperc_core.model.perceiver import Perceiver

pytestmark = pytest.mark.slow


def _model(**kw) -> Perceiver:
    config = PerceiverConfig(input_len=32, input_dim=4, latent_len=8, latent_dim=32, output_dim=32, num_heads=4,
                             num_layers=2, ffw_latent=64, ffw_output=64, n_classes=3, dropout=0.0, **kw)
    return Perceiver(config).eval()


@pytest.mark.parametrize("with_mask", [False, True])
def test_forward_has_no_graph_break(with_mask):
    torch._dynamo.reset()
    model = _model()
    x = torch.randn(2, 32, 4)
    mask = torch.ones(2, 32, dtype=torch.bool)
    mask[0, 20:] = False
    args = (x, mask) if with_mask else (x,)
    explanation = torch._dynamo.explain(model)(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_matches_eager_and_accepts_sentinels():
    torch._dynamo.reset()
    model = _model(input_pos_enc="fourier", input_pos_shape=[4, 8], fourier_num_bands=2)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 32, 4)
    mask = torch.ones(2, 32, dtype=torch.bool)
    mask[1, 5:] = False
    torch.testing.assert_close(compiled(x, mask), model(x, mask))
    torch.testing.assert_close(compiled(x, mask_sentinel(2)), model(x))
