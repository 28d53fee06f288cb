"""The gperc plugin conformance suite run on the installed graph plugin, with and without node queries."""

import networkx as nx

from gperc_core.testing import PluginConformance


class TestGraphConformance(PluginConformance):
    plugin = "graph"

    def make_samples(self, modality):
        return [nx.cycle_graph(5), nx.path_graph(3), nx.star_graph(6)]

    def options(self, modality):
        return {"position": "both", "pe_dim": 4, "edge_tokens": True}


class TestGraphNodeQueriesConformance(TestGraphConformance):
    def options(self, modality):
        return {"position": "laplacian", "pe_dim": 4, "node_queries": True, "output_dim": 8}
