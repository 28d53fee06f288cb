"""Analytic FLOP count of the benchmarked Perceiver (the same count for every implementation).

Only matrix products are counted, at 2 FLOPs per multiply-add; layer norms, softmax, GELU,
biases and residual additions are left out (they are O(elements), not O(elements x width)).
The count is the *standard* Perceiver IO of `shapes.Shape`, i.e. K and V projected to width
``d`` (``2*m*c*d`` each per sample) and attention of width ``d``:

  encoder  (n queries over m keys):   q,out 2*(2*n*d*d) + k,v 2*(2*m*c*d) + scores,AV 2*(2*n*m*d)
                                      + MLP 2*(2*n*d*f)
  processor layer (n over n):         q,k,v,out 4*(2*n*d*d) + scores,AV 2*(2*n*n*d) + MLP 2*(2*n*d*f)
  decoder  (o queries over n keys):   q,out 2*(2*o*d*d) + k,v 2*(2*n*d*d) + scores,AV 2*(2*o*n*d)
                                      + MLP 2*(2*o*d*f) + classifier 2*o*d*classes

with f = widening*d. A training step (forward, backward to inputs and weights) counts as
3x the forward. Implementations that do a different amount of arithmetic for the same function
(gperc computes narrow-input cross-attention in the c-wide input space; lucidrains' MLP is a
GEGLU with a 2f-wide first layer) are still credited with this count, so "achieved GFLOP/s" is
the rate of useful model work, comparable across implementations.
"""

from __future__ import annotations

from .shapes import Shape


def forward_flops_per_sample(s: Shape) -> dict[str, int]:
    """Return forward FLOPs of one sample, split into ``encoder``, ``processor``, ``decoder``."""
    n, m, c, d, f, o = s.n, s.m, s.c, s.d, s.ffw, s.outputs
    encoder = 2 * (2 * n * d * d) + 2 * (2 * m * c * d) + 2 * (2 * n * m * d) + 2 * (2 * n * d * f)
    layer = 4 * (2 * n * d * d) + 2 * (2 * n * n * d) + 2 * (2 * n * d * f)
    decoder = (2 * (2 * o * d * d) + 2 * (2 * n * d * d) + 2 * (2 * o * n * d) + 2 * (2 * o * d * f)
               + 2 * o * d * s.classes)
    return {"encoder": encoder, "processor": s.layers * layer, "decoder": decoder}


def train_step_flops(s: Shape) -> int:
    """Return the FLOPs of one training step on a batch of ``s.b`` samples (3x the forward)."""
    return 3 * s.b * sum(forward_flops_per_sample(s).values())


def counted_step_flops(model, forward, x, y, precision: str = "fp32") -> dict[str, int]:
    """Count the matmul FLOPs one training step actually executes, by op, with
    `torch.utils.flop_counter.FlopCounterMode`.

    The counter has no entry for the CPU flash-attention kernels that
    `scaled_dot_product_attention` dispatches to on CPU, so without one it counts no attention
    products in fp32 but counts them under bf16, where gperc writes small attention out as two
    matmuls (issue 11: "161 GFLOP in bf16 against 139 in fp32" was exactly those 22.7 GFLOP).
    Here the CPU kernels are counted like the other fused attention kernels."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    # the counter hands custom counts the tensors' shapes
    def fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: fwd,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = forward(x)
        F.cross_entropy(logits.float(), y).backward()
    counts = {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return {**counts, "total": int(counter.get_total_flops())}
