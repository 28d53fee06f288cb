"""Read a graph dataset in the TU format (https://chrsmrrs.github.io/datasets/docs/format/).

Files in ``<folder>`` for dataset ``DS`` (ids are 1-based):
``DS_A.txt`` (required; ``i, j`` per line, one line per directed edge), ``DS_graph_indicator.txt``
(required; the graph id of each node), ``DS_graph_labels.txt`` (a label per graph),
``DS_node_labels.txt``, ``DS_edge_labels.txt`` (aligned with ``DS_A.txt``),
``DS_node_attributes.txt`` / ``DS_edge_attributes.txt`` (comma-separated floats).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gperc_core import TaskError

from . import PLUGIN_NAME
from .graph import Graph, make_graph


@dataclass
class TUDataset:
    """The graphs of a TU folder, their class indices and the original label of each class."""

    graphs: list[Graph]
    targets: torch.Tensor
    classes: list[str]


def _read(path: Path, dtype: torch.dtype) -> torch.Tensor:
    import numpy as np

    try:
        data = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise TaskError(f"{PLUGIN_NAME} plugin: TU file {str(path)!r}: expected comma-separated numbers, got "
                        f"unreadable content ({exc})") from exc
    out = torch.from_numpy(data)
    return out.to(dtype)


def read_tu(folder: str | Path, name: str | None = None) -> TUDataset:
    """Read TU dataset ``name`` (default: the folder's name) from ``folder``.

    Returns a `TUDataset`; graph labels are mapped to class indices ``0..C-1`` in sorted order of
    the original labels (MUTAG: -1 -> 0, 1 -> 1). Raises `TaskError` naming a missing file.
    """
    folder = Path(folder)
    name = name or folder.name
    files = {key: folder / f"{name}_{key}.txt" for key in
             ("A", "graph_indicator", "graph_labels", "node_labels", "edge_labels", "node_attributes",
              "edge_attributes")}
    for key in ("A", "graph_indicator", "graph_labels"):
        if not files[key].is_file():
            raise TaskError(f"{PLUGIN_NAME} plugin: TU dataset {name!r}: expected {files[key].name} in "
                            f"{str(folder)!r}, found none (the TU format needs DS_A.txt, DS_graph_indicator.txt "
                            f"and DS_graph_labels.txt)")
    edges = _read(files["A"], torch.long) - 1  # [E, 2], 0-based global node ids
    indicator = _read(files["graph_indicator"], torch.long)[:, 0] - 1  # [N]
    raw_labels = _read(files["graph_labels"], torch.long)[:, 0]  # [G]
    node_labels = _read(files["node_labels"], torch.long)[:, 0] if files["node_labels"].is_file() else None
    edge_labels = _read(files["edge_labels"], torch.long)[:, 0] if files["edge_labels"].is_file() else None
    node_attr = _read(files["node_attributes"], torch.float32) if files["node_attributes"].is_file() else None
    edge_attr = _read(files["edge_attributes"], torch.float32) if files["edge_attributes"].is_file() else None
    num_graphs = int(raw_labels.shape[0])
    if edges.shape[1] != 2 or int(indicator.max()) + 1 != num_graphs:
        raise TaskError(f"{PLUGIN_NAME} plugin: TU dataset {name!r}: expected [E, 2] edges and graph ids 1.."
                        f"{num_graphs}, got edges {tuple(edges.shape)} and graph ids up to {int(indicator.max()) + 1}")
    if bool((indicator[1:] < indicator[:-1]).any()):
        raise TaskError(f"{PLUGIN_NAME} plugin: TU dataset {name!r}: expected nodes ordered by graph id in "
                        f"{files['graph_indicator'].name}, got them unordered")
    if int(edges.min()) < 0 or int(edges.max()) >= indicator.shape[0]:
        raise TaskError(f"{PLUGIN_NAME} plugin: TU dataset {name!r}: expected node ids in 1..{indicator.shape[0]} "
                        f"in {files['A'].name}, got {int(edges.min()) + 1}..{int(edges.max()) + 1}")
    edge_graph = indicator[edges[:, 0]]
    if bool((edge_graph != indicator[edges[:, 1]]).any()):
        raise TaskError(f"{PLUGIN_NAME} plugin: TU dataset {name!r}: expected every edge inside one graph, got "
                        f"edges between graphs")
    node_counts = torch.bincount(indicator, minlength=num_graphs)
    offsets = torch.cumsum(node_counts, 0) - node_counts
    order = torch.argsort(edge_graph, stable=True)
    edge_counts = torch.bincount(edge_graph, minlength=num_graphs).tolist()
    local = (edges - offsets[edge_graph][:, None])[order]
    pieces = {"edges": local.split(edge_counts)}
    if edge_labels is not None:
        pieces["edge_labels"] = edge_labels[order].split(edge_counts)
    if edge_attr is not None:
        pieces["edge_features"] = edge_attr[order].split(edge_counts)
    counts = node_counts.tolist()
    if node_labels is not None:
        pieces["node_labels"] = node_labels.split(counts)
    if node_attr is not None:
        pieces["node_features"] = node_attr.split(counts)
    graphs = []
    for g in range(num_graphs):
        if counts[g] == 0:
            raise TaskError(f"{PLUGIN_NAME} plugin: TU dataset {name!r}: expected every graph to have nodes, "
                            f"graph {g + 1} has none")
        graphs.append(make_graph(counts[g], **{key: parts[g] for key, parts in pieces.items()}))
    classes, targets = torch.unique(raw_labels, return_inverse=True)
    return TUDataset(graphs=graphs, targets=targets, classes=[str(int(c)) for c in classes])
