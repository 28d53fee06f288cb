"""A prototype of a change to gperc_core/attention.py, measured without editing the core.

Same model as `impl_gperc`; the only difference is the attention kernel under reduced
precision: `torch.nn.functional.scaled_dot_product_attention` as seen by gperc_core.model.attention is
replaced by `dispatch_sdpa`, which computes small-score attention in bf16/fp16 on CPU explicitly
(``softmax(q k^T * scale) v`` with bf16 matmuls) and calls the fused kernel otherwise. Reason:
on CPU, the fused (flash) SDPA kernel in bf16 is slower than in fp32 and about 3x slower than
two bf16 matmuls for latent self-attention (n = m = 128, head width 32), mostly in its backward.
The explicit path materialises ``[b, h, n, m]`` scores, so it is used only when that matrix is
small (``n * m <= SMALL_SCORES``); cross-attention over long inputs keeps the fused kernel,
called through `split_rows` so that its backward uses every thread when ``batch * heads`` is small.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .shapes import Shape

DESCRIPTION = ("gperc with attention dispatch: explicit bf16 attention for small score matrices on CPU, "
               "query rows split across threads for the fused kernel when batch*heads < threads")
SMALL_SCORES = 128 * 1024  # n * m up to this: explicit attention under bf16/fp16 on CPU
_fused = F.scaled_dot_product_attention


def split_rows(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    """The fused kernel, with the query rows of each (batch, head) split into more "heads" when
    ``batch * heads`` is below the thread count.

    The CPU flash-attention backward parallelises over batch x heads only; gperc's input-space
    cross-attention has one head ``[b, 1, h*n, c]``, so with b = 1 and 2 threads the backward
    runs ~10x slower than on one thread (nested 2-thread GEMMs on small blocks). Viewing the query
    as ``[b, g, h*n/g, c]`` and the keys/values as a stride-0 ``expand`` to ``[b, g, m, c]`` is the
    same attention (every row still sees every key) with g-way parallel work; the backward then
    holds g key/value gradients before autograd sums them (g x ``[b, m, c]`` extra memory).
    """
    b, heads, rows, width = query.shape
    threads = torch.get_num_threads()
    groups = -(-threads // (b * heads))
    if query.device.type != "cpu" or groups <= 1 or rows % groups or key.shape[1] != 1 or is_causal:
        return _fused(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                      scale=scale, **kwargs)
    q = query.reshape(b, groups, rows // groups, width)
    k = key.expand(b, groups, *key.shape[2:])
    v = value.expand(b, groups, *value.shape[2:])
    out = _fused(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale, **kwargs)
    return out.reshape(b, heads, rows, value.shape[-1])


def dispatch_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    """Drop-in for `F.scaled_dot_product_attention` choosing the explicit path when it is faster,
    and `split_rows` around the fused kernel otherwise."""
    small = query.shape[-2] * key.shape[-2] <= SMALL_SCORES
    if (query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16) and small and not is_causal
            and not kwargs and dropout_p == 0.0):
        s = scale if scale is not None else query.shape[-1] ** -0.5
        scores = (query * s) @ key.transpose(-1, -2)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
                else scores + attn_mask
        return scores.softmax(dim=-1) @ value
    return split_rows(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                      **kwargs)


def version() -> str:
    """Return the installed gperc-core version, marked as the prototype."""
    from .impl_gperc import version as gperc_version

    return gperc_version() + "+proto"


def build(s: Shape) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """Return gperc's model for ``s`` with the attention dispatch installed."""
    import gperc_core.model.attention as attention

    from .impl_gperc import build as build_gperc

    class _F:
        """gperc_core.model.attention's view of torch.nn.functional, with the dispatching SDPA."""

        def __getattr__(self, name):
            return dispatch_sdpa if name == "scaled_dot_product_attention" else getattr(F, name)

    attention.F = _F()
    return build_gperc(s)
