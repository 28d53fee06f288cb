"""Multi-head attention: equal to references, head-correct, padding-proof."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gperc_core.model.attention import Block, MultiHeadAttention


def einsum_reference(att: MultiHeadAttention, q, kv, mask=None):
    """Plain multi-head attention written out with einsum, heads split by transposing."""
    h, hd = att.num_heads, att.head_dim
    Q = torch.einsum("bnd,ed->bne", q, att.query.weight) + att.query.bias
    K = torch.einsum("bmc,ec->bme", kv, att.key.weight)
    V = torch.einsum("bmc,ec->bme", kv, att.value.weight) + att.value.bias
    Q = Q.reshape(*Q.shape[:2], h, hd)
    K = K.reshape(*K.shape[:2], h, hd)
    V = V.reshape(*V.shape[:2], h, hd)
    scores = torch.einsum("bnhd,bmhd->bhnm", Q, K) / math.sqrt(hd)
    if mask is not None:
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    weights = scores.softmax(-1)
    out = torch.einsum("bhnm,bmhd->bnhd", weights, V).reshape(q.shape[0], q.shape[1], h * hd)
    return att.out(out), weights


def _inputs(b=2, n=5, m=11, q_dim=16, kv_dim=6, masked=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, n, q_dim, generator=g, dtype=torch.float64)
    kv = torch.randn(b, m, kv_dim, generator=g, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.ones(b, m, dtype=torch.bool)
        mask[0, m // 2:] = False
    return q, kv, mask


@pytest.mark.parametrize("path", ["projected", "input_space", "weights"])
@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_equals_einsum_reference(path, heads, masked):
    torch.manual_seed(0)
    att = MultiHeadAttention(q_dim=16, kv_dim=6, num_heads=heads).double().eval()
    att._use_input_space = lambda n, m: path == "input_space"  # force the path under test
    q, kv, mask = _inputs(masked=masked)
    out, weights = att(q, kv, mask, need_weights=path == "weights")
    ref, ref_weights = einsum_reference(att, q, kv, mask)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-8)
    if path == "weights":
        torch.testing.assert_close(weights, ref_weights, atol=1e-10, rtol=1e-8)
    else:
        assert weights is None


@pytest.mark.parametrize("heads", [1, 2, 8])
def test_attention_equals_torch_multihead_attention(heads):
    """Same weights in torch.nn.MultiheadAttention (key bias zero: it cannot change attention)."""
    torch.manual_seed(1)
    dim = 32
    ours = MultiHeadAttention(q_dim=dim, kv_dim=dim, num_heads=heads).eval()
    ref = torch.nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.query.weight, ours.key.weight, ours.value.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.query.bias, torch.zeros(dim), ours.value.bias]))
        ref.out_proj.weight.copy_(ours.out.weight)
        ref.out_proj.bias.copy_(ours.out.bias)
    q = torch.randn(3, 7, dim)
    kv = torch.randn(3, 13, dim)
    keep = torch.rand(3, 13) > 0.3
    keep[:, 0] = True
    out, weights = ours(q, kv, keep, need_weights=True)
    ref_out, ref_weights = ref(q, kv, kv, key_padding_mask=~keep, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)
    fused, _ = ours(q, kv, keep)
    torch.testing.assert_close(fused, ref_out, atol=1e-5, rtol=1e-5)


def test_key_bias_cannot_change_attention():
    """The justification for a bias-free key projection: a key bias is a per-row constant."""
    torch.manual_seed(2)
    att = MultiHeadAttention(q_dim=8, kv_dim=8, num_heads=2).double()
    q, kv, mask = _inputs(q_dim=8, kv_dim=8)
    out, _ = att(q, kv, mask)
    with_bias = torch.nn.Linear(8, 8).double()
    with torch.no_grad():
        with_bias.weight.copy_(att.key.weight)
    att.key = with_bias
    out_bias, _ = att(q, kv, mask)
    torch.testing.assert_close(out, out_bias)


@settings(max_examples=25, deadline=None)
@given(heads=st.sampled_from([1, 2, 4]), m=st.integers(2, 24), n=st.integers(1, 6),
       input_space=st.booleans(), fill=st.floats(-1e3, 1e3), data=st.data())
def test_padded_keys_cannot_change_any_output(heads, m, n, input_space, fill, data):
    att = MultiHeadAttention(q_dim=8, kv_dim=3, num_heads=heads).double().eval()
    att._use_input_space = lambda n_, m_: input_space
    valid = data.draw(st.integers(1, m))
    q, kv, _ = _inputs(b=2, n=n, m=m, q_dim=8, kv_dim=3, masked=False)
    mask = torch.zeros(2, m, dtype=torch.bool)
    mask[:, :valid] = True
    out, _ = att(q, kv, mask)
    kv2 = kv.clone()
    kv2[:, valid:] = fill
    out2, _ = att(q, kv2, mask)
    torch.testing.assert_close(out, out2, atol=1e-9, rtol=1e-9)
    # and equal to attending to the unpadded prefix only
    out3, _ = att(q, kv[:, :valid], None)
    torch.testing.assert_close(out, out3, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("heads", [1, 2, 4, 8])
@pytest.mark.parametrize("input_space", [False, True])
def test_every_query_depends_on_every_unmasked_key_for_every_head_count(heads, input_space):
    """gperc split heads with a bare view, so a head saw a slice of the sequence; here every query
    output depends on every unmasked key position, and on no masked one."""
    torch.manual_seed(3)
    att = MultiHeadAttention(q_dim=16, kv_dim=4, num_heads=heads).double()
    att._use_input_space = lambda n, m: input_space
    m, n = 12, 4
    q, kv, _ = _inputs(b=1, n=n, m=m, q_dim=16, kv_dim=4, masked=False)
    kv.requires_grad_(True)
    mask = torch.ones(1, m, dtype=torch.bool)
    mask[0, 9:] = False
    out, _ = att(q, kv, mask)
    for j in range(n):
        (grad,) = torch.autograd.grad(out[0, j].sum(), kv, retain_graph=True)
        per_position = grad[0].abs().sum(-1)
        assert (per_position[:9] > 0).all(), f"query {j} ignores unmasked keys {per_position[:9]}"
        assert (per_position[9:] == 0).all(), f"query {j} depends on masked keys"


def test_heads_are_independent():
    """Changing the query weights of one head changes only that head's slice of the attended values."""
    torch.manual_seed(4)
    att = MultiHeadAttention(q_dim=12, kv_dim=12, num_heads=3).double()
    att.out = torch.nn.Identity()  # look at the per-head outputs before mixing
    q, kv, mask = _inputs(q_dim=12, kv_dim=12)
    before, _ = att(q, kv, mask)
    with torch.no_grad():
        att.query.weight[4:8] += torch.randn(4, 12, dtype=torch.float64)  # head 1 only
    after, _ = att(q, kv, mask)
    changed = (after - before).abs().amax(dim=(0, 1))
    assert (changed[4:8] > 1e-6).all()
    assert (changed[:4] == 0).all() and (changed[8:] == 0).all()


def test_scaling_uses_head_width_not_model_width():
    torch.manual_seed(5)
    att = MultiHeadAttention(q_dim=64, kv_dim=64, num_heads=8).double()
    q, kv, _ = _inputs(q_dim=64, kv_dim=64, masked=False)
    _, weights = att(q, kv, need_weights=True)
    Q = att.query(q).view(2, 5, 8, 8).transpose(1, 2)
    K = att.key(kv).view(2, 11, 8, 8).transpose(1, 2)
    expected = (Q @ K.transpose(-1, -2) / math.sqrt(8)).softmax(-1)
    torch.testing.assert_close(weights, expected)


def test_integer_and_bool_masks_agree():
    att = MultiHeadAttention(q_dim=8, kv_dim=8, num_heads=2).eval()
    q, kv, mask = _inputs(q_dim=8, kv_dim=8)
    q, kv = q.float(), kv.float()
    a, _ = att(q, kv, mask)
    b, _ = att(q, kv, mask.long())
    c, _ = att(q, kv, mask.float())
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_block_residual_and_shapes():
    blk = Block(kv_dim=6, q_dim=16, num_heads=4, ffw_dim=32, add_residual=True).eval()
    q, kv, mask = _inputs()
    out, att = blk.double()(kv, q, attn_mask=mask)
    assert out.shape == q.shape and att is None
    out2, att2 = blk(kv, q, attn_mask=mask, return_attention=True)
    torch.testing.assert_close(out, out2)
    assert att2.shape == (2, 4, 5, 11)
    torch.testing.assert_close(att2.sum(-1), torch.ones(2, 4, 5, dtype=torch.float64))
    assert (att2[0, :, :, 11 // 2:] == 0).all()


@pytest.mark.parametrize("heads", [1, 4])
def test_fused_self_attention_equals_reference(heads):
    """Self-attention (the same tensor as queries and keys) takes the one-GEMM QKV path."""
    torch.manual_seed(6)
    att = MultiHeadAttention(q_dim=16, kv_dim=16, num_heads=heads).double().eval()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 4:] = False
    out, _ = att(x, x, mask)
    ref, _ = einsum_reference(att, x, x, mask)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-8)
    with_weights, _ = att(x, x, mask, need_weights=True)
    torch.testing.assert_close(with_weights, ref, atol=1e-10, rtol=1e-8)


def test_half_precision_cpu_path_matches_fused_kernel():
    from gperc_core.model.attention import attend

    torch.manual_seed(7)
    q, k, v = (torch.randn(2, 4, 16, 8).bfloat16() for _ in range(3))
    mask = torch.ones(2, 1, 1, 16, dtype=torch.bool)
    mask[0, ..., 10:] = False
    explicit = attend(q, k, v, mask)  # small scores in bf16 on CPU: written-out matmuls
    fused = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    torch.testing.assert_close(explicit.float(), fused, atol=3e-2, rtol=3e-2)


def test_input_space_row_groups_equal_reference():
    """With fewer batch rows than threads the input-space path splits query rows into groups."""
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        att = MultiHeadAttention(q_dim=16, kv_dim=3, num_heads=4).double()
        att._use_input_space = lambda n, m: True
        q, kv, mask = _inputs(b=1, n=6, m=30, q_dim=16, kv_dim=3)
        kv.requires_grad_(True)
        out, _ = att(q, kv, mask)
        ref, _ = einsum_reference(att, q, kv, mask)
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-8)
        (g1,) = torch.autograd.grad(out.sum(), kv)
        (g2,) = torch.autograd.grad(ref.sum(), kv)
        torch.testing.assert_close(g1, g2, atol=1e-10, rtol=1e-8)
    finally:
        torch.set_num_threads(threads)


def test_encoder_path_choice_under_cpu_half_precision():
    """The cifar-shaped encoder (C=64 over 1024 inputs, 8 heads of 32) attends in the input space
    when its matmuls run in bf16 on CPU (head-wide bf16 products are slow there, issue 11) and
    projects K/V in fp32, where projecting costs fewer FLOPs; a narrow input (C=32, "long") takes
    the input space in both."""
    cifar = MultiHeadAttention(q_dim=256, kv_dim=64, num_heads=8)
    assert not cifar._use_input_space(128, 1024)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cifar._use_input_space(128, 1024)
    assert MultiHeadAttention(q_dim=256, kv_dim=64, num_heads=8).bfloat16()._use_input_space(128, 1024)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert not cifar._use_input_space(128, 1024)
    narrow = MultiHeadAttention(q_dim=512, kv_dim=32, num_heads=8)
    assert narrow._use_input_space(256, 65536)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert narrow._use_input_space(256, 65536)


@pytest.mark.parametrize("masked", [False, True])
def test_bf16_autocast_paths_match_fp32(masked):
    """Under bf16 autocast the encoder's input-space path and the latent self-attention's explicit
    path give the fp32 result (and gradients) within bf16 tolerance."""
    torch.manual_seed(3)
    enc = Block(kv_dim=64, q_dim=64, num_heads=4, ffw_dim=128)
    proc = Block(kv_dim=64, q_dim=64, num_heads=4, ffw_dim=128, self_attention=True)
    kv = torch.randn(2, 96, 64, requires_grad=True)
    q = torch.randn(2, 16, 64)
    mask = torch.ones(2, 96, dtype=torch.bool)
    if masked:
        mask[1, 50:] = False
    enc.attention._use_input_space = lambda n, m: False  # fp32 reference: projected K/V, fused kernel
    ref = proc(None, enc(kv, q, mask)[0])[0]
    (ref_grad,) = torch.autograd.grad(ref.square().mean(), kv)
    del enc.attention._use_input_space  # the class's choice: input space under bf16 autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert enc.attention._use_input_space(16, 96)
        out = proc(None, enc(kv, q, mask)[0])[0]
    (grad,) = torch.autograd.grad(out.float().square().mean(), kv)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(grad, ref_grad, atol=2e-3, rtol=1e-1)
