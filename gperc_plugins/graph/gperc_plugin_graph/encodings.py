"""Structural position encodings of graph nodes.

- `laplacian_pe`: the eigenvectors of the symmetric normalised Laplacian
  ``L = I - D^-1/2 A D^-1/2`` with the smallest eigenvalues, the first (trivial) one dropped. An
  eigenvector is defined up to its sign, so each is given a canonical sign (`canonical_sign`: the sum
  of its cubed entries made positive, else its largest entry). Graphs with fewer than ``k + 1`` nodes
  get zero columns. (Eigenvectors of repeated eigenvalues are still only defined up to a rotation.)
- `random_walk_pe`: the random-walk landing probabilities ``[P^t]_ii`` for ``t = 1..k`` with
  ``P = D^-1 A``: the chance a walk from node ``i`` is back at ``i`` after ``t`` steps. Invariant to
  node order and sign-free.

- `label_neighbourhood`: what surrounds a node, as labels: for ``t = 1..hops`` the mean one-hot
  node label where a ``t``-step random walk from the node lands (``(D^-1 A)^t Y``), and the mean
  one-hot label of the node's own edges. One round of Weisfeiler-Lehman refinement per hop, as
  features: a node token then says "carbon bonded to a nitrogen and two oxygens", which attention
  over separate tokens must otherwise discover.

All are dense (``O(N^3)``): built for molecules and graphs of up to a few thousand nodes.
"""

from __future__ import annotations

import torch

from gperc_core import InputError

from . import PLUGIN_NAME
from .graph import Graph

MAX_DENSE_NODES = 5000


def _check_size(graph: Graph, what: str) -> None:
    if graph.num_nodes > MAX_DENSE_NODES:
        raise InputError(f"{PLUGIN_NAME} plugin: sample: expected at most {MAX_DENSE_NODES} nodes for {what} "
                         f"(dense O(N^3) encodings), got {graph.num_nodes}; use options position='none'")


def canonical_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each column of ``vectors`` so that the sum of its cubed entries is positive, or, when that
    sum is ~0 (a symmetric column), so that its first largest-magnitude entry is positive.

    The first rule does not depend on node order; the fallback does, which is unavoidable for a
    column an automorphism of the graph maps to its negative."""
    skew = (vectors ** 3).sum(dim=0)
    magnitude = torch.round(vectors.abs() * 1e8)
    index = magnitude.argmax(dim=0)
    signs = torch.where(skew.abs() > 1e-6, torch.sign(skew), torch.sign(vectors[index, torch.arange(vectors.shape[1])]))
    signs[signs == 0] = 1.0
    return vectors * signs


def laplacian_pe(graph: Graph, k: int) -> torch.Tensor:
    """Return float32 ``[N, k]``: the ``k`` non-trivial Laplacian eigenvectors with canonical signs."""
    _check_size(graph, "Laplacian eigenvectors")
    n = graph.num_nodes
    adj = graph.adjacency()
    deg = adj.sum(dim=1)
    inv_sqrt = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    lap = torch.eye(n, dtype=torch.float64) - inv_sqrt[:, None] * adj * inv_sqrt[None, :]
    _, vectors = torch.linalg.eigh(lap)
    vectors = canonical_sign(vectors[:, 1: k + 1])
    out = torch.zeros(n, k, dtype=torch.float32)
    out[:, : vectors.shape[1]] = vectors.float()
    return out


def _walk_step(graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P = D^-1 A [N, N], degrees [N, 1])`` in float64; an isolated node's row of ``P`` is zero."""
    adj = graph.adjacency()
    deg = adj.sum(dim=1, keepdim=True)
    return torch.where(deg > 0, adj / deg.clamp_min(1e-12), torch.zeros_like(adj)), deg


def random_walk_pe(graph: Graph, k: int) -> torch.Tensor:
    """Return float32 ``[N, k]``: landing probabilities ``[P^t]_ii`` for ``t = 1..k`` (isolated nodes: 0)."""
    _check_size(graph, "random-walk features")
    step, _ = _walk_step(graph)
    out = torch.empty(graph.num_nodes, k, dtype=torch.float64)
    power = step
    for t in range(k):
        out[:, t] = torch.diagonal(power)
        power = power @ step
    return out.float()


def label_neighbourhood(graph: Graph, hops: int, node_one_hot: torch.Tensor, edge_one_hot: torch.Tensor
                        ) -> torch.Tensor:
    """Return float32 ``[N, hops * L + M]``: for ``t = 1..hops`` the ``t``-step random-walk mean of
    ``node_one_hot`` (``[N, L]``), then the mean of ``edge_one_hot`` (``[E, M]``) over each node's
    edges (isolated nodes: zeros; ``hops = 0``: no columns)."""
    n = graph.num_nodes
    if hops == 0:
        return torch.zeros(n, 0)
    _check_size(graph, "label neighbourhoods")
    step, deg = _walk_step(graph)
    parts, walk = [], node_one_hot.double()
    for _ in range(hops):
        walk = step @ walk
        parts.append(walk)
    incident = torch.zeros(n, edge_one_hot.shape[1], dtype=torch.float64)
    if graph.num_edges and edge_one_hot.shape[1]:
        ends = graph.edges.reshape(-1)
        incident.index_add_(0, ends, edge_one_hot.double().repeat_interleave(2, dim=0))
        incident = incident / deg.clamp_min(1.0)
    parts.append(incident)
    return torch.cat(parts, dim=1).float()


ENCODINGS = {"laplacian": (laplacian_pe,), "random_walk": (random_walk_pe,), "both": (laplacian_pe, random_walk_pe),
             "none": ()}


def position_encoding(graph: Graph, kind: str, k: int) -> torch.Tensor:
    """Return float32 ``[N, width]`` of the encoding ``kind`` (``laplacian``, ``random_walk``, ``both``,
    ``none``), ``width = k`` per encoding."""
    parts = [fn(graph, k) for fn in ENCODINGS[kind]]
    return torch.cat(parts, dim=1) if parts else torch.zeros(graph.num_nodes, 0)
