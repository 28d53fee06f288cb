"""krasserm perceiver-io 0.11.0 built for a benchmark `Shape` (runs in .peers-venv).

Mapping: PerceiverIO(PerceiverEncoder(identity input adapter of C channels, num_latents=N,
num_latent_channels=D, H cross- and H self-attention heads, num_cross_attention_layers=1,
num_self_attention_layers_per_block=L, num_self_attention_blocks=1, widening factor 4 for cross-
and self-attention, dropout 0), PerceiverDecoder(ClassificationOutputAdapter(10 classes, D),
TrainableQueryProvider(1 query, D channels), H heads, widening 4)). Q/K/V widths default to D.
No position encoding (the input adapter passes the array through).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .shapes import Shape

DESCRIPTION = ("perceiver.model.core.PerceiverIO(PerceiverEncoder(identity adapter C, num_latents=N, "
               "num_latent_channels=D, cross/self heads=H, 1 cross layer, L self layers in 1 block, widening 4), "
               "PerceiverDecoder(ClassificationOutputAdapter(10, D), TrainableQueryProvider(1, D), heads=H, "
               "widening 4))")


def version() -> str:
    """Return the installed perceiver-io version."""
    from importlib.metadata import version as dist_version

    return dist_version("perceiver-io")


def build(s: Shape) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """Return ``(model, forward)`` where ``forward(x [b, m, c]) -> logits [b, classes]``."""
    from perceiver.model.core import (ClassificationOutputAdapter, InputAdapter, PerceiverDecoder,
                                      PerceiverEncoder, PerceiverIO, TrainableQueryProvider)

    class IdentityInputAdapter(InputAdapter):
        """The benchmark input is already ``[b, m, c]``: no embedding, no position encoding."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    encoder = PerceiverEncoder(
        input_adapter=IdentityInputAdapter(num_input_channels=s.c), num_latents=s.n, num_latent_channels=s.d,
        num_cross_attention_heads=s.h, num_cross_attention_layers=1, cross_attention_widening_factor=s.widening,
        num_self_attention_heads=s.h, num_self_attention_layers_per_block=s.layers, num_self_attention_blocks=1,
        self_attention_widening_factor=s.widening, dropout=0.0)
    decoder = PerceiverDecoder(
        output_adapter=ClassificationOutputAdapter(num_classes=s.classes, num_output_query_channels=s.d),
        output_query_provider=TrainableQueryProvider(num_queries=s.outputs, num_query_channels=s.d),
        num_latent_channels=s.d, num_cross_attention_heads=s.h, cross_attention_widening_factor=s.widening,
        dropout=0.0)
    model = PerceiverIO(encoder, decoder)
    return model, model
