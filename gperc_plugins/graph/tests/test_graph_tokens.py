"""Graph tokens: layout and widths, edge tokens with flags, node queries, option and label errors."""

import networkx as nx
import pytest
import torch

from gperc_core import ConfigError, InputError
from gperc_plugin_graph.plugin import gperc_input_array


def molecule():
    g = nx.Graph()
    g.add_nodes_from([(i, {"label": l}) for i, l in enumerate([0, 1, 2, 1, 0])])
    g.add_edges_from([(0, 1, {"label": 0}), (1, 2, {"label": 1}), (2, 3, {"label": 0}), (3, 4, {"label": 1}),
                      (4, 0, {"label": 0})])
    return g


def make(sample, **options):
    return gperc_input_array(modality="graph", sample=sample, options=options)


def test_node_tokens_layout():
    out = make(molecule(), num_node_labels=3, pe_dim=4)
    x = out.array
    assert tuple(x.shape) == (5, 3 + 1 + 4) and x.dtype == torch.float32 and out.output is None
    assert x[:, :3].argmax(1).tolist() == [0, 1, 2, 1, 0]
    assert torch.allclose(x[:, 3], torch.log1p(torch.full((5,), 2.0)))


@pytest.mark.parametrize("position, width", [("laplacian", 4), ("random_walk", 4), ("both", 8), ("none", 0)])
def test_position_widths(position, width):
    assert make(molecule(), position=position, pe_dim=4).array.shape[1] == 1 + width


def test_edge_tokens_carry_labels_endpoint_encodings_and_flag():
    x = make(molecule(), num_node_labels=3, num_edge_labels=2, edge_tokens=True, pe_dim=4).array
    n, e, pe = 5, 5, 4
    assert tuple(x.shape) == (n + e, 3 + 2 + 1 + pe + pe + 1)
    assert x[:n, -1].tolist() == [0.0] * n and x[n:, -1].tolist() == [1.0] * e
    assert bool((x[n:, :3] == 0).all()) and bool((x[:n, 3:5] == 0).all())
    assert sorted(x[n:, 3:5].argmax(1).tolist()) == [0, 0, 0, 1, 1]
    nodes_pe = x[:n, 6:6 + pe]
    first_edge_mean = (nodes_pe[0] + nodes_pe[1]) / 2
    assert torch.allclose(x[n, 6:6 + pe], first_edge_mean, atol=1e-6)
    assert torch.allclose(x[n, 6 + pe:6 + 2 * pe], (nodes_pe[0] - nodes_pe[1]).abs(), atol=1e-6)


def test_label_neighbourhood_block_sits_after_the_node_label():
    plain = make(molecule(), num_node_labels=3, num_edge_labels=2, edge_tokens=True, pe_dim=4).array
    x = make(molecule(), num_node_labels=3, num_edge_labels=2, edge_tokens=True, pe_dim=4, label_hops=2).array
    n, hood = 5, 2 * 3 + 2
    assert x.shape[1] == plain.shape[1] + hood
    assert torch.equal(torch.cat([x[:, :3], x[:, 3 + hood:]], dim=1), plain)  # the other blocks are unchanged
    assert x[0, 3:6].tolist() == [0.5, 0.5, 0.0]  # node 0 (label 0) is bonded to nodes 1 (label 1) and 4 (label 0)
    assert x[0, 9:11].tolist() == [1.0, 0.0]  # both of its bonds have label 0
    assert torch.allclose(x[n, 3:3 + hood], (x[0, 3:3 + hood] + x[1, 3:3 + hood]) / 2)  # edge (0, 1): the mean


def test_graph_size_channels_follow_the_degree_on_every_token():
    plain = make(molecule(), num_node_labels=3, num_edge_labels=2, edge_tokens=True, pe_dim=4).array
    x = make(molecule(), num_node_labels=3, num_edge_labels=2, edge_tokens=True, pe_dim=4, graph_size=True).array
    at = 3 + 2 + 1  # after the node label, the edge label and the log-degree
    assert x.shape[1] == plain.shape[1] + 2
    assert torch.equal(torch.cat([x[:, :at], x[:, at + 2:]], dim=1), plain)  # the other blocks are unchanged
    size = torch.log1p(torch.tensor([5.0, 5.0]))  # 5 nodes, 5 edges
    assert torch.allclose(x[:, at:at + 2], size.expand(10, -1))  # node and edge tokens alike


def test_graph_size_tells_graphs_of_equal_proportions_apart():
    """Two rings of the same label pattern differ only in size: without the option a latent's attention
    read-out (a weighted mean over tokens) cannot tell them apart; with it every token says the size."""
    def ring(repeats):
        g = nx.cycle_graph(4 * repeats)
        nx.set_node_attributes(g, {i: i % 2 for i in g.nodes}, "label")
        return g

    small, large = (make(ring(r), num_node_labels=2, position="none").array for r in (1, 3))
    assert torch.equal(small.mean(0), large.mean(0))
    small, large = (make(ring(r), num_node_labels=2, position="none", graph_size=True).array for r in (1, 3))
    assert not torch.equal(small.mean(0), large.mean(0))
    assert torch.allclose(large[0, -2:], torch.log1p(torch.tensor([12.0, 12.0])))


def test_node_queries_padded_to_output_dim():
    out = make(nx.karate_club_graph(), node_queries=True, output_dim=16, pe_dim=8)
    assert tuple(out.array.shape) == (34, 9) and tuple(out.output.shape) == (34, 16)
    assert torch.equal(out.output[:, :9], out.array) and bool((out.output[:, 9:] == 0).all())
    with pytest.raises(ConfigError, match="output_dim"):
        make(nx.karate_club_graph(), node_queries=True, output_dim=4)


def test_float_node_features_width_is_checked():
    graph = {"edges": [[0, 1]], "num_nodes": 2, "node_features": torch.ones(2, 3)}
    assert make(graph, node_feature_dim=3).array.shape[1] == 3 + 1 + 8
    with pytest.raises(InputError, match="expected 5 float features"):
        make(graph, node_feature_dim=5)


def test_label_outside_the_one_hot_width():
    with pytest.raises(InputError, match="graph plugin: sample node_labels: expected labels in \\[0, 2\\)"):
        make(molecule(), num_node_labels=2)


@pytest.mark.parametrize("options, key", [({"position": "spectral"}, "position"), ({"pe_dim": -1}, "pe_dim"),
                                          ({"edge_tokens": "yes"}, "edge_tokens"), ({"pe_dim": 0}, "pe_dim"),
                                          ({"label_hops": -1}, "label_hops"), ({"label_hops": 2}, "label_hops"),
                                          ({"graph_size": 1}, "graph_size")])
def test_bad_options(options, key):
    with pytest.raises(ConfigError, match=f"graph plugin: options\\['{key}'\\]: expected"):
        make(molecule(), **options)


def test_no_channels_at_all():
    with pytest.raises(ConfigError, match="at least one token channel"):
        make(nx.path_graph(3), position="none", degree=False)
