"""Reading graphs: networkx, PyG-style objects, dicts, `Graph`; canonical edges; bad input."""

from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import torch

from gperc_core import InputError
from gperc_plugin_graph import Graph, to_graph
from gperc_plugin_graph.plugin import gperc_input_array, read_file


def triangle_with_tail():
    g = nx.Graph()
    g.add_nodes_from([("a", {"label": 0}), ("b", {"label": 1}), ("c", {"label": 2}), ("d", {"label": 1})])
    g.add_edges_from([("a", "b", {"label": 0}), ("b", "c", {"label": 1}), ("c", "a", {"label": 0}),
                      ("c", "d", {"label": 2})])
    return g


def test_networkx_graph_with_labels():
    graph = to_graph(triangle_with_tail())
    assert graph.num_nodes == 4 and graph.num_edges == 4
    assert graph.node_labels.tolist() == [0, 1, 2, 1]
    assert bool((graph.edges[:, 0] < graph.edges[:, 1]).all())
    labels = {tuple(e): int(l) for e, l in zip(graph.edges.tolist(), graph.edge_labels)}
    assert labels == {(0, 1): 0, (1, 2): 1, (0, 2): 0, (2, 3): 2}
    assert graph.degrees().tolist() == [2, 2, 3, 1]


def test_pyg_style_object_both_directions_collapse():
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]])
    data = SimpleNamespace(edge_index=edge_index, x=torch.eye(3), y=torch.tensor([1]),
                           edge_attr=torch.tensor([0, 0, 1, 1, 2, 2]), num_nodes=3)
    graph = to_graph(data)
    assert graph.num_nodes == 3 and graph.num_edges == 3
    assert torch.equal(graph.node_features, torch.eye(3)) and graph.node_labels is None
    assert sorted(graph.edge_labels.tolist()) == [0, 1, 2]
    no_x = to_graph(SimpleNamespace(edge_index=edge_index))
    assert no_x.num_nodes == 3


def test_dict_and_graph_forms_agree():
    d = {"edges": [[0, 1], [1, 2], [1, 0], [2, 2]], "num_nodes": 4, "node_labels": np.array([0, 1, 0, 1])}
    graph = to_graph(d)
    assert graph.edges.tolist() == [[0, 1], [1, 2]]  # duplicate and self loop dropped
    assert graph.num_nodes == 4  # node 3 isolated
    again = to_graph(graph)
    assert torch.equal(again.edges, graph.edges) and torch.equal(again.node_labels, graph.node_labels)


def test_read_file_formats(tmp_path):
    g = triangle_with_tail()
    nx.write_graphml(g, tmp_path / "g.graphml")
    nx.write_edgelist(nx.path_graph(5), tmp_path / "p.edgelist")
    assert to_graph(read_file(str(tmp_path / "g.graphml"))).num_edges == 4
    assert to_graph(read_file(str(tmp_path / "p.edgelist"))).num_nodes == 5
    with pytest.raises(InputError, match="graph plugin: path: expected a graph file"):
        read_file(str(tmp_path / "g.txt"))


@pytest.mark.parametrize("sample, message", [
    (nx.Graph(), "sample: expected a graph with at least one node, got a graph with 0 nodes"),
    ({"edges": [], "num_nodes": 0}, "expected a graph with at least one node"),
    ({"edges": [[0, 5]], "num_nodes": 3}, "edges: expected node ids in \\[0, 3\\)"),
    ({"edges": [[0.5, 1.0]], "num_nodes": 3}, "edges: expected integer node ids"),
    ({"edges": [[0, 1, 2]], "num_nodes": 3}, "edges: expected an \\[E, 2\\]"),
    ({"edges": [[0, 1]]}, "sample\\['num_nodes'\\]: expected the node count"),
    ({"nodes": 3}, "sample: expected a dict with 'edges'"),
    ({"edges": [[0, 1]], "num_nodes": 2, "node_labels": [0]}, "node_labels: expected an integer tensor \\[2\\]"),
    ({"edges": [[0, 1]], "num_nodes": 2, "node_labels": [0, -1]}, "node_labels: expected labels >= 0"),
    ({"edges": [[0, 1]], "num_nodes": 2, "node_features": [[float("nan")], [0.0]]}, "node_features: expected finite"),
    ({"edges": [[0, 1]], "num_nodes": -2}, "num_nodes: expected a non-negative integer"),
    ("C1=CC=CC=C1", "sample: expected a networkx graph"),
])
def test_bad_graphs_are_input_errors_naming_the_plugin(sample, message):
    with pytest.raises(InputError, match=message) as info:
        gperc_input_array(modality="graph", sample=sample, options={})
    assert str(info.value).startswith("graph plugin: ")


def test_foreign_modality_returns_none():
    assert gperc_input_array(modality="audio", sample=nx.path_graph(3), options={}) is None
    assert isinstance(to_graph(nx.path_graph(3)), Graph)
