"""`Graph`: the plugin's one graph type, and `to_graph`, which reads every accepted graph form.

Graphs are undirected: each edge is stored once as ``(u, v)`` with ``u < v``; self loops and
duplicate edges are dropped (the first duplicate's label is kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gperc_core import InputError
from gperc_core.errors import describe

from . import PLUGIN_NAME


@dataclass
class Graph:
    """An undirected graph with optional node / edge labels and float features.

    ``edges`` is long ``[E, 2]`` with ``u < v``; ``node_labels`` long ``[N]``; ``node_features``
    float ``[N, F]``; ``edge_labels`` long ``[E]``; ``edge_features`` float ``[E, F]``.
    """

    num_nodes: int
    edges: torch.Tensor
    node_labels: torch.Tensor | None = None
    node_features: torch.Tensor | None = None
    edge_labels: torch.Tensor | None = None
    edge_features: torch.Tensor | None = None

    @property
    def num_edges(self) -> int:
        """Undirected edges."""
        return int(self.edges.shape[0])

    def degrees(self) -> torch.Tensor:
        """Float ``[N]`` node degrees."""
        deg = torch.zeros(self.num_nodes, dtype=torch.float64)
        if self.num_edges:
            deg.index_add_(0, self.edges.reshape(-1), torch.ones(2 * self.num_edges, dtype=torch.float64))
        return deg

    def adjacency(self) -> torch.Tensor:
        """Dense symmetric float64 ``[N, N]`` adjacency matrix."""
        adj = torch.zeros(self.num_nodes, self.num_nodes, dtype=torch.float64)
        if self.num_edges:
            adj[self.edges[:, 0], self.edges[:, 1]] = 1.0
            adj[self.edges[:, 1], self.edges[:, 0]] = 1.0
        return adj


def _fail(name: str, expected: str, got: Any) -> InputError:
    return InputError(f"{PLUGIN_NAME} plugin: {name}: expected {expected}, got {got}")


def _tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(value))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, (list, tuple)):
        try:
            return torch.tensor(value)
        except (TypeError, ValueError) as exc:
            raise _fail(name, "a numeric array", describe(value)) from exc
    raise _fail(name, "a tensor, numpy array or list", describe(value))


def canonical_edges(edges: torch.Tensor, num_nodes: int, labels: torch.Tensor | None = None,
                    features: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Return ``(edges [E', 2] with u < v, unique, no self loops; their labels; their features)`` from
    any ``[E, 2]`` edge list (directed pairs of an undirected graph collapse to one edge)."""
    if edges.numel() == 0:
        empty = torch.zeros(0, 2, dtype=torch.long)
        return (empty, None if labels is None else labels[:0].long(),
                None if features is None else features[:0].float())
    u = torch.minimum(edges[:, 0], edges[:, 1])
    v = torch.maximum(edges[:, 0], edges[:, 1])
    keep = u != v
    key = (u * num_nodes + v)[keep]
    position = torch.arange(edges.shape[0])[keep]
    unique, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((unique.shape[0],), edges.shape[0], dtype=torch.long)
    first = first.scatter_reduce(0, inverse, position, reduce="amin")
    out = torch.stack([u[first], v[first]], dim=1)
    return (out, None if labels is None else labels[first].long(),
            None if features is None else features[first].float())


def make_graph(num_nodes: Any, edges: Any, node_labels: Any = None, node_features: Any = None,
               edge_labels: Any = None, edge_features: Any = None) -> Graph:
    """Validate the parts of a graph and return a canonical `Graph`.

    ``edges`` is ``[E, 2]`` or ``[2, E]`` (PyG's ``edge_index``) integer node ids in ``[0, num_nodes)``.
    Raises `InputError` naming the plugin, the argument, the expected and the actual value.
    """
    if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 0:
        raise _fail("num_nodes", "a non-negative integer", repr(num_nodes))
    if num_nodes == 0:
        raise _fail("sample", "a graph with at least one node", "a graph with 0 nodes")
    e = _tensor(edges if edges is not None else torch.zeros(0, 2, dtype=torch.long), "edges")
    if e.dtype.is_floating_point or e.dtype == torch.bool:
        raise _fail("edges", "integer node ids", describe(e))
    if e.dim() == 2 and e.shape[0] == 2 and e.shape[1] != 2:
        e = e.t()
    if e.numel() == 0:
        e = e.reshape(0, 2)
    if e.dim() != 2 or e.shape[1] != 2:
        raise _fail("edges", "an [E, 2] (or [2, E] edge_index) tensor of node ids", describe(e))
    e = e.long()
    if e.numel() and (int(e.min()) < 0 or int(e.max()) >= num_nodes):
        raise _fail("edges", f"node ids in [0, {num_nodes})", f"ids in [{int(e.min())}, {int(e.max())}]")
    n_labels = _labels(node_labels, num_nodes, "node_labels")
    n_feats = _features(node_features, num_nodes, "node_features")
    e_labels = _labels(edge_labels, e.shape[0], "edge_labels")
    e_feats = _features(edge_features, e.shape[0], "edge_features")
    e, e_labels, e_feats = canonical_edges(e, num_nodes, e_labels, e_feats)
    return Graph(num_nodes, e, n_labels, n_feats, e_labels, e_feats)


def _labels(value: Any, count: int, name: str) -> torch.Tensor | None:
    if value is None:
        return None
    t = _tensor(value, name)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 1 or t.shape[0] != count or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise _fail(name, f"an integer tensor [{count}]", describe(t))
    if t.numel() and int(t.min()) < 0:
        raise _fail(name, "labels >= 0", f"minimum {int(t.min())}")
    return t.long()


def _features(value: Any, count: int, name: str) -> torch.Tensor | None:
    if value is None:
        return None
    t = _tensor(value, name)
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2 or t.shape[0] != count:
        raise _fail(name, f"a float tensor [{count}, F]", describe(t))
    t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise _fail(name, "finite values", "NaN or inf")
    return t


def _from_networkx(g: Any, label_key: str) -> Graph:
    nodes = list(g.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    edges = [(index[u], index[v]) for u, v in g.edges()]
    node_data = [g.nodes[n].get(label_key) for n in nodes]
    node_labels = node_data if node_data and all(isinstance(x, int) for x in node_data) else None
    edge_data = [d.get(label_key) for _, _, d in g.edges(data=True)]
    edge_labels = edge_data if edge_data and all(isinstance(x, int) for x in edge_data) else None
    return make_graph(len(nodes), torch.tensor(edges, dtype=torch.long).reshape(-1, 2), node_labels=node_labels,
                      edge_labels=edge_labels)


def _split_x(x: Any, name: str) -> tuple[Any, Any]:
    """PyG ``x`` / ``edge_attr``: integer -> labels, float -> features."""
    if x is None:
        return None, None
    t = _tensor(x, name)
    if t.dtype.is_floating_point:
        return None, t
    return t, None


def to_graph(sample: Any, label_key: str = "label") -> Graph:
    """Read any accepted graph form into a `Graph`.

    Accepted: a `Graph`; a networkx graph (nodes in ``G.nodes`` order; integer node / edge attribute
    ``label_key`` become labels); an object with ``edge_index`` (``[2, E]``) and optionally ``x``,
    ``num_nodes``, ``edge_attr`` such as ``torch_geometric.data.Data`` (integer ``x`` = labels, float
    ``x`` = features); a dict with ``edges`` or ``edge_index`` and ``num_nodes`` (plus optional
    ``node_labels``, ``node_features``, ``edge_labels``, ``edge_features``).
    """
    if isinstance(sample, Graph):
        return make_graph(sample.num_nodes, sample.edges, sample.node_labels, sample.node_features,
                          sample.edge_labels, sample.edge_features)
    if hasattr(sample, "nodes") and hasattr(sample, "edges") and hasattr(sample, "is_directed"):
        return _from_networkx(sample, label_key)
    if isinstance(sample, dict):
        if "edges" not in sample and "edge_index" not in sample:
            raise _fail("sample", "a dict with 'edges' (or 'edge_index') and 'num_nodes'", f"keys {sorted(sample)}")
        if "num_nodes" not in sample:
            raise _fail("sample['num_nodes']", "the node count", "no 'num_nodes' key")
        return make_graph(sample["num_nodes"], sample.get("edges", sample.get("edge_index")),
                          sample.get("node_labels"), sample.get("node_features"), sample.get("edge_labels"),
                          sample.get("edge_features"))
    if hasattr(sample, "edge_index"):
        x = getattr(sample, "x", None)
        num_nodes = getattr(sample, "num_nodes", None)
        if num_nodes is None:
            num_nodes = int(x.shape[0]) if x is not None else (int(sample.edge_index.max()) + 1
                                                               if sample.edge_index.numel() else 0)
        node_labels, node_features = _split_x(x, "x")
        edge_labels, edge_features = _split_x(getattr(sample, "edge_attr", None), "edge_attr")
        return make_graph(int(num_nodes), sample.edge_index, node_labels, node_features, edge_labels, edge_features)
    raise _fail("sample", "a networkx graph, a torch_geometric-style object with edge_index, a dict with 'edges' "
                "and 'num_nodes', or a gperc_plugin_graph.Graph", describe(sample))
