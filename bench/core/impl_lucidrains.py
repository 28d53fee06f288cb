"""lucidrains perceiver-pytorch built for a benchmark `Shape` (runs in .peers-venv).

Mapping: perceiver_pytorch.PerceiverIO(dim=C, queries_dim=D, logits_dim=10, num_latents=N,
latent_dim=D, cross_heads=H, latent_heads=H, cross_dim_head=D/H, latent_dim_head=D/H, depth=L,
decoder_ff=True), called with one learned query ``[1, D]`` (a parameter of the wrapper). Its
cross-attention over the input happens once; the decoder reads the latents with H heads. Its MLPs
are GEGLU with mult 4 (first layer D -> 8D, gated down to 4D, then 4D -> D): widening 4 as the
library defines it, about 1.5x the MLP arithmetic of a plain GELU MLP. No position encoding
(PerceiverIO takes the array as is).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .shapes import Shape

DESCRIPTION = ("perceiver_pytorch.PerceiverIO(dim=C, queries_dim=D, logits_dim=10, num_latents=N, latent_dim=D, "
               "cross_heads=H, latent_heads=H, cross_dim_head=D/H, latent_dim_head=D/H, depth=L, decoder_ff=True) "
               "+ one learned [1, D] query; GEGLU MLPs (mult 4)")


def version() -> str:
    """Return the installed perceiver-pytorch version."""
    from importlib.metadata import version as dist_version

    return dist_version("perceiver-pytorch")


class _WithQuery(nn.Module):
    """PerceiverIO plus the learned output query it expects from its caller; returns ``[b, classes]``."""

    def __init__(self, model: nn.Module, outputs: int, width: int) -> None:
        super().__init__()
        self.model = model
        self.query = nn.Parameter(torch.randn(outputs, width) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, queries=self.query).mean(dim=1)


def build(s: Shape) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """Return ``(model, forward)`` where ``forward(x [b, m, c]) -> logits [b, classes]``."""
    from perceiver_pytorch import PerceiverIO

    inner = PerceiverIO(depth=s.layers, dim=s.c, queries_dim=s.d, logits_dim=s.classes, num_latents=s.n,
                        latent_dim=s.d, cross_heads=s.h, latent_heads=s.h, cross_dim_head=s.d // s.h,
                        latent_dim_head=s.d // s.h, decoder_ff=True)
    model = _WithQuery(inner, s.outputs, s.d)
    return model, model
