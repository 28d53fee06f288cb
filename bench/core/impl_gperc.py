"""gperc: `gperc_core.Perceiver` built for a benchmark `Shape` (runs in the project's .venv).

Mapping: PerceiverConfig(input_len=M, input_dim=C, latent_len=N, latent_dim=D, num_heads=H,
num_layers=L, output_len=1, output_dim=D, ffw_latent=4D, ffw_output=4D, n_classes=10,
dropout=0.0, input_pos_enc="none"); one learned output query, decoder reduction "mean" over that
one query, then the classifier. Cross-attention MLP widening 4 (ffw_latent).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .shapes import Shape

DESCRIPTION = ("gperc_core.Perceiver(PerceiverConfig(input_len=M, input_dim=C, latent_len=N, latent_dim=D, "
               "num_heads=H, num_layers=L, output_len=1, output_dim=D, ffw_latent=4D, ffw_output=4D, "
               "n_classes=10, dropout=0.0, input_pos_enc='none'))")


def version() -> str:
    """Return the installed gperc-core version."""
    from importlib.metadata import version as dist_version

    return dist_version("gperc-core")


def build(s: Shape) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """Return ``(model, forward)`` where ``forward(x [b, m, c]) -> logits [b, classes]``."""
    from gperc_core import Perceiver, PerceiverConfig

    config = PerceiverConfig(input_len=s.m, input_dim=s.c, latent_len=s.n, latent_dim=s.d, num_heads=s.h,
                             num_layers=s.layers, output_len=s.outputs, output_dim=s.d, ffw_latent=s.ffw,
                             ffw_output=s.ffw, n_classes=s.classes, dropout=0.0, input_pos_enc="none")
    model = Perceiver(config)
    return model, model
