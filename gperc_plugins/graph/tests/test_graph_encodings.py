"""Structural encodings: Laplacian eigenvectors with canonical signs, random-walk landing probabilities."""

import networkx as nx
import pytest
import torch

from gperc_plugin_graph import to_graph
from gperc_plugin_graph.encodings import canonical_sign, label_neighbourhood, laplacian_pe, random_walk_pe


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


def test_label_neighbourhood_of_a_labelled_path():
    # path 0 - 1 - 2 - 3 (+ isolated 4) with atom labels [0, 1, 1, 0] (and 1) and bond labels [0, 1, 0]
    g = to_graph({"edges": [[0, 1], [1, 2], [2, 3]], "num_nodes": 5, "node_labels": [0, 1, 1, 0, 1],
                  "edge_labels": [0, 1, 0]})
    nodes = torch.nn.functional.one_hot(g.node_labels, 2).float()
    bonds = torch.nn.functional.one_hot(g.edge_labels, 2).float()
    hood = label_neighbourhood(g, 2, nodes, bonds)
    assert tuple(hood.shape) == (5, 2 * 2 + 2)
    assert hood[0, :2].tolist() == [0.0, 1.0]  # one step from an end: its one neighbour, label 1
    assert hood[1, :2].tolist() == [0.5, 0.5]  # one step from node 1: nodes 0 and 2
    assert hood[0, 2:4].tolist() == pytest.approx([0.5, 0.5])  # two steps from node 0: back to 0, or on to 2
    assert hood[1, 4:].tolist() == [0.5, 0.5] and hood[0, 4:].tolist() == [1.0, 0.0]  # its bonds' labels
    assert hood[4].tolist() == [0.0] * 6  # an isolated node has no neighbourhood
    assert label_neighbourhood(g, 0, nodes, bonds).shape == (5, 0)


def test_label_neighbourhood_is_node_order_equivariant():
    g = nx.Graph()
    g.add_nodes_from((i, {"label": i % 3}) for i in range(8))
    g.add_edges_from((u, v, {"label": (u + v) % 2}) for u, v in ASYMMETRIC)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))  # node i becomes perm[i]
    h = nx.Graph()
    h.add_nodes_from(sorted((int(perm[i]), {"label": i % 3}) for i in range(8)))  # read in G.nodes order
    h.add_edges_from((int(perm[u]), int(perm[v]), {"label": (u + v) % 2}) for u, v in ASYMMETRIC)

    def hood(graph):
        graph = to_graph(graph)
        return label_neighbourhood(graph, 3, torch.nn.functional.one_hot(graph.node_labels, 3).float(),
                                   torch.nn.functional.one_hot(graph.edge_labels, 2).float())

    assert torch.allclose(hood(h)[perm], hood(g), atol=1e-6)
