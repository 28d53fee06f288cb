"""Structural encodings: Laplacian eigenvectors with canonical signs, random-walk landing probabilities."""

import networkx as nx
import pytest
import torch

from gperc_plugin_graph import to_graph
from gperc_plugin_graph.encodings import canonical_sign, laplacian_pe, random_walk_pe


def test_laplacian_eigenvectors_are_orthonormal_eigenvectors():
    g = to_graph(nx.path_graph(6))
    pe = laplacian_pe(g, 4).double()
    assert tuple(pe.shape) == (6, 4)
    assert torch.allclose(pe.T @ pe, torch.eye(4, dtype=torch.float64), atol=1e-5)
    adj = g.adjacency()
    d = adj.sum(1).rsqrt()
    lap = torch.eye(6, dtype=torch.float64) - d[:, None] * adj * d[None, :]
    ratios = (lap @ pe) / pe
    finite = ratios[pe.abs() > 1e-3]
    assert finite.numel() > 0


ASYMMETRIC = [(0, 1), (0, 4), (1, 3), (1, 4), (2, 3), (2, 6), (3, 5), (3, 6), (4, 7), (5, 7), (6, 7)]
"""A connected 8-node graph with no automorphism but the identity and distinct Laplacian eigenvalues."""


def test_sign_is_canonical_and_node_order_equivariant():
    g = nx.Graph()
    g.add_nodes_from(range(8))  # networkx graphs are read in G.nodes order
    g.add_edges_from(ASYMMETRIC)
    pe = laplacian_pe(to_graph(g), 5)
    assert torch.allclose(canonical_sign(-pe.double()).float(), pe, atol=1e-6)
    for seed in range(3):
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(seed))  # node i becomes perm[i]
        h = nx.Graph()
        h.add_nodes_from(range(8))
        h.add_edges_from((int(perm[u]), int(perm[v])) for u, v in ASYMMETRIC)
        assert torch.allclose(laplacian_pe(to_graph(h), 5)[perm], pe, atol=1e-5)


def test_small_graph_is_zero_padded():
    pe = laplacian_pe(to_graph(nx.path_graph(3)), 5)
    assert tuple(pe.shape) == (3, 5) and bool((pe[:, 2:] == 0).all()) and bool((pe[:, :2] != 0).any())


def test_random_walk_landing_probabilities_of_a_cycle():
    rw = random_walk_pe(to_graph(nx.cycle_graph(4)), 4)
    assert torch.allclose(rw, torch.tensor([[0.0, 0.5, 0.0, 0.5]] * 4), atol=1e-6)


def test_random_walk_isolated_node_and_star():
    g = nx.star_graph(3)
    g.add_node(4)
    rw = random_walk_pe(to_graph(g), 2)
    assert rw[0].tolist() == pytest.approx([0.0, 1.0])  # the centre: every 2-step walk comes back
    assert rw[1].tolist() == pytest.approx([0.0, 1.0 / 3.0])  # a leaf: back via the centre with 1/3
    assert rw[4].tolist() == [0.0, 0.0]
