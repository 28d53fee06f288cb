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
