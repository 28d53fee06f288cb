"""HF transformers' Perceiver built from a config (no weights downloaded) for a benchmark `Shape`.

Mapping: PerceiverModel(PerceiverConfig(d_model=C, num_latents=N, d_latents=D, num_blocks=1,
num_self_attends_per_block=L, num_self_attention_heads=H, num_cross_attention_heads=H,
self_attention_widening_factor=4, cross_attention_widening_factor=4,
attention_probs_dropout_prob=0, num_labels=10), decoder=PerceiverClassificationDecoder(
num_channels=D, one trainable query of D channels, num_heads=H, widening_factor=4,
use_query_residual=True)), no input preprocessor (the input is already ``[b, m, C]``), so no
position encoding. Q/K/V widths default to D (qk_channels/v_channels None).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .shapes import Shape

DESCRIPTION = ("transformers.PerceiverModel(PerceiverConfig(d_model=C, num_latents=N, d_latents=D, num_blocks=1, "
               "num_self_attends_per_block=L, self/cross heads=H, widening 4, dropout 0, num_labels=10), "
               "decoder=PerceiverClassificationDecoder(num_channels=D, trainable 1 x D query, num_heads=H, "
               "widening_factor=4, use_query_residual=True)), no preprocessor")


def version() -> str:
    """Return the installed transformers version."""
    from importlib.metadata import version as dist_version

    return dist_version("transformers")


class _Logits(nn.Module):
    """Unwraps PerceiverModel's output object to its ``[b, classes]`` logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(inputs=x).logits


def build(s: Shape) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """Return ``(model, forward)`` where ``forward(x [b, m, c]) -> logits [b, classes]``."""
    from transformers import PerceiverConfig, PerceiverModel
    from transformers.models.perceiver.modeling_perceiver import PerceiverClassificationDecoder

    config = PerceiverConfig(d_model=s.c, num_latents=s.n, d_latents=s.d, num_blocks=1,
                             num_self_attends_per_block=s.layers, num_self_attention_heads=s.h,
                             num_cross_attention_heads=s.h, self_attention_widening_factor=s.widening,
                             cross_attention_widening_factor=s.widening, attention_probs_dropout_prob=0.0,
                             num_labels=s.classes)
    decoder = PerceiverClassificationDecoder(
        config, num_channels=s.d, trainable_position_encoding_kwargs=dict(num_channels=s.d, index_dims=s.outputs),
        num_heads=s.h, widening_factor=s.widening, use_query_residual=True)
    model = _Logits(PerceiverModel(config, decoder=decoder))
    return model, model
