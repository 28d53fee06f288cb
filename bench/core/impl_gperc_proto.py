"""A prototype of a change to gperc_core/attention.py, measured without editing the core.

Same model as `impl_gperc`; the only difference is the attention kernel under reduced
precision: `torch.nn.functional.scaled_dot_product_attention` as seen by gperc_core.attention is
replaced by `dispatch_sdpa`, which computes small-score attention in bf16/fp16 on CPU explicitly
(``softmax(q k^T * scale) v`` with bf16 matmuls) and calls the fused kernel otherwise. Reason:
on CPU, the fused (flash) SDPA kernel in bf16 is slower than in fp32 and about 3x slower than
two bf16 matmuls for latent self-attention (n = m = 128, head width 32), mostly in its backward.
The explicit path materialises ``[b, h, n, m]`` scores, so it is used only when that matrix is
small (``n * m <= SMALL_SCORES``); cross-attention over long inputs keeps the fused kernel.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .shapes import Shape

DESCRIPTION = "gperc with attention dispatch: explicit bf16 attention for small score matrices on CPU"
SMALL_SCORES = 128 * 1024  # n * m up to this: explicit attention under bf16/fp16 on CPU
_fused = F.scaled_dot_product_attention


def dispatch_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    """Drop-in for `F.scaled_dot_product_attention` choosing the explicit path when it is faster."""
    small = query.shape[-2] * key.shape[-2] <= SMALL_SCORES
    if (query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16) and small and not is_causal
            and not kwargs and dropout_p == 0.0):
        s = scale if scale is not None else query.shape[-1] ** -0.5
        scores = (query * s) @ key.transpose(-1, -2)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
                else scores + attn_mask
        return scores.softmax(dim=-1) @ value
    return _fused(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                  **kwargs)


def version() -> str:
    """Return the installed gperc-core version, marked as the prototype."""
    from .impl_gperc import version as gperc_version

    return gperc_version() + "+proto"


def build(s: Shape) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """Return gperc's model for ``s`` with the attention dispatch installed."""
    import gperc_core.attention as attention

    from .impl_gperc import build as build_gperc

    class _F:
        """gperc_core.attention's view of torch.nn.functional, with the dispatching SDPA."""

        def __getattr__(self, name):
            return dispatch_sdpa if name == "scaled_dot_product_attention" else getattr(F, name)

    attention.F = _F()
    return build_gperc(s)
