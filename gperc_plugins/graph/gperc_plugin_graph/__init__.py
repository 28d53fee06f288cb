"""gperc-plugin-graph: the graph modality of gperc.

A graph becomes a Perceiver input array with one token per node (its features, e.g. one-hot atom
labels, plus structural position encodings: Laplacian eigenvectors with a canonical sign, or
random-walk landing probabilities) and, optionally, one token per edge (its label and its endpoints'
encodings, with a type flag). Graphs come from networkx, TU-format folders, or any object with
``edge_index`` / ``x`` attributes (``torch_geometric.data.Data``). Datasets: ``mutag`` (from the
grakel wheel), ``karate`` (networkx, node classification) and ``tu-folder``.

Heavy imports (networkx, grakel, numpy file reading) happen inside functions, so importing this package is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

GPERC_CORE_REQUIRES = ">=0.1,<0.2"
"""The gperc-core versions this plugin supports (also its distribution's Requires-Dist)."""

PLUGIN_NAME = "graph"
"""The plugin's entry-point name, used in its error messages."""

from .graph import Graph, to_graph  # noqa: E402

__all__ = ["__version__", "GPERC_CORE_REQUIRES", "PLUGIN_NAME", "Graph", "to_graph"]
