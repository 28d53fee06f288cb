"""Multi-head attention on `scaled_dot_product_attention`, and gperc's `Block`.

Heads are split as ``[batch, seq, heads, head_dim] -> [batch, heads, seq, head_dim]`` and scaled by
``1/sqrt(head_dim)``; masks are per key (``[batch, m]``, True/1 = attend). The key projection has no
bias: a key bias adds the same value to every score of a query row, which softmax removes, so it
would be a parameter without gradient.

When the key/value input is narrow (a Perceiver encoder reading raw pixels or samples of C
channels), attention is computed in the input space: ``Q_h W_k,h`` is ``[n, C]``, all heads become
rows of one query matrix over the shared ``[m, C]`` keys and values, and ``W_v,h`` is applied after
the weighted sum. The result is the same function of the same parameters, with neither the
``[m, d]`` keys nor values ever built: memory and compute stay linear in ``m`` with a factor ``C``
instead of ``d``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


EXPLICIT_MAX_SCORES = 128 * 1024
"""Largest per-head score matrix (queries x keys) computed explicitly in half precision on CPU."""


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
           dropout_p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """Return ``softmax(query key^T * scale) value`` over ``[..., heads, seq, dim]`` tensors.

    Uses `scaled_dot_product_attention`, except for small score matrices in bf16/fp16 on CPU, where
    the fused CPU kernel upcasts and its backward costs 2-3x two half-precision matmuls
    (bench/NOTES.md); there the two matmuls are written out. Both are exact attention.
    """
    n, m = query.shape[-2], key.shape[-2]
    if (query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16) and dropout_p == 0.0
            and n * m <= EXPLICIT_MAX_SCORES):
        factor = scale if scale is not None else query.shape[-1] ** -0.5
        scores = (query * factor) @ key.transpose(-1, -2)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1).to(value.dtype) @ value
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p, scale=scale)


NARROW_MATMUL_WIDTH = 64
"""Below this inner/outer width, half-precision CPU matmuls slow down about in proportion (bench/NOTES.md)."""


def _half_matmuls_on_cpu(weight: torch.Tensor) -> bool:
    """True when the matmuls of a module with this ``weight`` run in bf16/fp16 on CPU: the weight is
    half precision, or CPU autocast to a half-precision dtype is on."""
    if weight.device.type != "cpu":
        return False
    if weight.dtype in (torch.bfloat16, torch.float16):
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in (torch.bfloat16, torch.float16)


@torch.compiler.assume_constant_result
def _cpu_threads() -> int:
    """The intra-op thread count (a constant of the compiled graph)."""
    return torch.get_num_threads()


def _row_groups(batch: int, rows: int, device: torch.device) -> int:
    """Number of groups to split ``rows`` query rows into so that ``batch * groups`` covers the CPU threads
    (1 off the CPU and while `torch.export` traces: the split is a speed-up of the same attention and
    must not bake the exporting machine's thread count into the graph)."""
    if device.type != "cpu" or torch.compiler.is_exporting():
        return 1
    groups = -(-_cpu_threads() // batch)
    while groups > 1 and rows % groups:
        groups -= 1
    return groups


def key_padding_to_sdpa(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Turn a ``[batch, m]`` key mask (bool or 0/1) into SDPA's boolean ``[batch, 1, 1, m]`` form."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        mask = mask != 0
    return mask[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """Standard multi-head attention of ``q`` (``[b, n, q_dim]``) over ``kv`` (``[b, m, kv_dim]``).

    ``forward`` returns ``(out [b, n, q_dim], attention [b, heads, n, m] or None)``; the attention
    matrix is only built when ``need_weights=True``.
    """

    def __init__(self, q_dim: int, kv_dim: int, num_heads: int, dropout: float = 0.0,
                 qk_dim: int | None = None, v_dim: int | None = None) -> None:
        super().__init__()
        qk_dim = q_dim if qk_dim is None else qk_dim
        v_dim = qk_dim if v_dim is None else v_dim
        for name, width in (("q_dim" if qk_dim == q_dim else "qk_dim", qk_dim), ("v_dim", v_dim)):
            if width % num_heads:
                raise ValueError(f"{name}: expected a multiple of num_heads={num_heads}, got {width}")
        self.q_dim, self.kv_dim, self.num_heads = q_dim, kv_dim, num_heads
        self.qk_dim, self.v_dim = qk_dim, v_dim
        self.head_dim = qk_dim // num_heads
        self.v_head_dim = v_dim // num_heads
        self.dropout = float(dropout)
        self.query = nn.Linear(q_dim, qk_dim)
        self.key = nn.Linear(kv_dim, qk_dim, bias=False)
        self.value = nn.Linear(kv_dim, v_dim)
        self.out = nn.Linear(v_dim, q_dim)

    def _use_input_space(self, n: int, m: int) -> bool:
        """True when attending in the key/value input space costs fewer FLOPs than projecting K and V.

        While `torch.export` traces a dynamic ``m`` or number of queries ``n``, the choice is made at
        the example sizes (both paths are exact attention), so the graph holds one path and no guard
        on them."""
        if torch.compiler.is_exporting() and (isinstance(n, torch.SymInt) or isinstance(m, torch.SymInt)):
            from torch.fx.experimental.symbolic_shapes import size_hint

            n, m = (int(size_hint(v)) if isinstance(v, torch.SymInt) else v for v in (n, m))
        widths = self.qk_dim + self.v_dim
        # half-precision matmuls on CPU run at a rate that falls with their narrowest dimension below
        # NARROW_MATMUL_WIDTH: the projected path's score and value products are head_dim wide, the
        # input-space path's kv_dim wide (bench/NOTES.md, issue 11)
        slow_qk = slow_kv = 1.0
        if _half_matmuls_on_cpu(self.key.weight):
            slow_qk = max(1.0, NARROW_MATMUL_WIDTH / self.head_dim)
            slow_kv = max(1.0, NARROW_MATMUL_WIDTH / self.kv_dim)
        projected = m * self.kv_dim * widths + m * n * widths * slow_qk
        input_space = 2 * m * n * self.kv_dim * self.num_heads * slow_kv + n * widths * self.kv_dim
        return input_space < projected

    def forward(self, q: torch.Tensor, kv: torch.Tensor, attn_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, _ = q.shape
        m = kv.shape[1]
        h, hd, vd = self.num_heads, self.head_dim, self.v_head_dim
        mask = key_padding_to_sdpa(attn_mask)
        p = self.dropout if self.training else 0.0
        if q is kv and not need_weights:
            # self-attention: one GEMM for Q, K and V (the key's bias is zero by construction)
            weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
            bias = torch.cat([self.query.bias, torch.zeros_like(self.query.bias), self.value.bias])
            query, key, value = F.linear(q, weight, bias).split([self.qk_dim, self.qk_dim, self.v_dim], dim=-1)
            out = attend(query.view(b, n, h, hd).transpose(1, 2), key.view(b, n, h, hd).transpose(1, 2),
                         value.view(b, n, h, vd).transpose(1, 2), mask, p)
            return self.out(out.transpose(1, 2).reshape(b, n, self.v_dim)), None
        query = self.query(q).view(b, n, h, hd).transpose(1, 2)  # [b, h, n, hd]
        if need_weights:
            key = self.key(kv).view(b, m, h, hd).transpose(1, 2)
            value = self.value(kv).view(b, m, h, vd).transpose(1, 2)
            scores = (query @ key.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            attention = scores.softmax(dim=-1)
            out = F.dropout(attention, p, self.training) @ value
        elif self._use_input_space(n, m):
            attention = None
            c = self.kv_dim
            w_k = self.key.weight.view(h, hd, c)
            q_in = torch.einsum("bhnd,hdc->bhnc", query, w_k.to(query.dtype)).reshape(b, 1, h * n, c)
            kv_in = kv.unsqueeze(1).to(q_in.dtype)  # [b, 1, m, c], shared by every head
            groups = _row_groups(b, h * n, kv.device)
            if groups > 1:
                # CPU attention kernels parallelise over batch x heads: split the query rows into
                # groups over a stride-0 view of the keys so every thread has work (same attention).
                q_in = q_in.reshape(b, groups, h * n // groups, c)
                kv_in = kv_in.expand(b, groups, m, c)
            mixed = attend(q_in, kv_in, kv_in, mask, p, scale=1.0 / math.sqrt(hd))
            mixed = mixed.view(b, h, n, c)
            w_v = self.value.weight.view(h, vd, c)
            out = torch.einsum("bhnc,hdc->bhnd", mixed, w_v.to(mixed.dtype))
            out = out + self.value.bias.view(1, h, 1, vd).to(out.dtype)
        else:
            attention = None
            weight = torch.cat([self.key.weight, self.value.weight])
            bias = torch.cat([torch.zeros(self.qk_dim, dtype=self.value.bias.dtype, device=self.value.bias.device),
                              self.value.bias])
            key, value = F.linear(kv, weight, bias).split([self.qk_dim, self.v_dim], dim=-1)
            out = attend(query, key.view(b, m, h, hd).transpose(1, 2), value.view(b, m, h, vd).transpose(1, 2),
                         mask, p)
        out = out.transpose(1, 2).reshape(b, n, self.v_dim)
        return self.out(out), attention


class MLP(nn.Module):
    """Two-layer GELU MLP ``dim -> hidden -> dim`` with dropout on its output."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class Block(nn.Module):
    """gperc's attention block: pre-norm attention of ``q`` over ``kv``, then a residual MLP.

    ``add_residual`` adds ``q`` to the attention output (needs ``q`` of width ``q_dim``). With
    ``self_attention=True`` the block reads one array (``kv`` is ignored and ``q`` attends to itself)
    and owns a single input norm. ``qk_dim`` and ``v_dim`` set the query/key and value widths of the
    attention (default ``q_dim``; imported models use others). ``forward(kv, q, attn_mask=None)`` returns ``(out, attention)``;
    ``attention`` is ``[b, heads, n, m]`` when ``return_attention=True`` and ``None`` otherwise.
    """

    def __init__(self, kv_dim: int, q_dim: int, num_heads: int, ffw_dim: int, dropout: float = 0.0,
                 add_residual: bool = False, self_attention: bool = False, qk_dim: int | None = None,
                 v_dim: int | None = None) -> None:
        super().__init__()
        self.kv_dim, self.q_dim, self.num_heads, self.ffw_dim = kv_dim, q_dim, num_heads, ffw_dim
        self.add_residual, self.self_attention = add_residual, self_attention
        self.norm_q = nn.LayerNorm(q_dim)
        self.norm_kv = None if self_attention else nn.LayerNorm(kv_dim)
        self.attention = MultiHeadAttention(q_dim, q_dim if self_attention else kv_dim, num_heads, dropout,
                                            qk_dim=qk_dim, v_dim=v_dim)
        self.drop = nn.Dropout(dropout)
        self.norm_mlp = nn.LayerNorm(q_dim)
        self.mlp = MLP(q_dim, ffw_dim, dropout)

    def forward(self, kv: torch.Tensor | None, q: torch.Tensor, attn_mask: torch.Tensor | None = None,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        q_norm = self.norm_q(q)
        kv_norm = q_norm if self.self_attention else self.norm_kv(kv)
        attended, attention = self.attention(q_norm, kv_norm, attn_mask, need_weights=return_attention)
        attended = self.drop(attended)
        x = q + attended if self.add_residual else attended
        x = x + self.mlp(self.norm_mlp(x))
        return x, attention
