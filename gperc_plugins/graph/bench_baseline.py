"""Linear baselines of graph/mutag: what a graph's label proportions, its size and its label counts tell.

A latent's cross-attention read-out is a weighted mean of the tokens, so on its own it sees proportions,
not counts. This script measures how much that costs on MUTAG: logistic regression on the atom and bond
label proportions, on the proportions with the graph's size (log(1 + nodes), log(1 + edges): what
``options.graph.graph_size`` adds to every token), and on the label counts, in the card's stratified
10-fold cross-validation (seed 0).

Run from the repository root: ``python gperc_plugins/graph/bench_baseline.py``. Prints mean ± sample std
of the fold accuracies per feature set.
"""

from __future__ import annotations

import argparse

import numpy as np

FEATURES = ("proportions", "proportions+size", "counts")


def graph_features(graph, kind: str, node_labels: int, edge_labels: int) -> np.ndarray:
    """The ``kind`` feature vector of ``graph``: label proportions (+ log sizes) or label counts."""
    nodes = np.bincount(graph.node_labels.numpy(), minlength=node_labels).astype(float)
    edges = (np.bincount(graph.edge_labels.numpy(), minlength=edge_labels).astype(float) if graph.num_edges
             else np.zeros(edge_labels))
    if kind == "counts":
        return np.concatenate([nodes, edges])
    out = np.concatenate([nodes / nodes.sum(), edges / max(1.0, edges.sum())])
    if kind == "proportions+size":
        out = np.concatenate([out, np.log1p([graph.num_nodes, graph.num_edges])])
    return out


def main() -> None:
    from gperc_core.data.registry import find_card

    card = find_card("graph/mutag")
    widths = card.options["graph"]["num_node_labels"], card.options["graph"]["num_edge_labels"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=card.cross_validation["folds"], help="default: the card's")
    parser.add_argument("--seed", type=int, default=card.cross_validation["seed"],
                        help="seed of the stratified folds (default: the card's)")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gperc_plugin_graph.datasets import mutag_folder, stratified_folds
    from gperc_plugin_graph.tu import read_tu

    data = read_tu(mutag_folder(), "MUTAG")
    y = data.targets.numpy()
    folds = stratified_folds(data.targets, args.folds, args.seed).numpy()
    for kind in FEATURES:
        x = np.stack([graph_features(g, kind, *widths) for g in data.graphs])
        accs = []
        for k in range(args.folds):
            train, test = folds != k, folds == k
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[train], y[train])
            accs.append(model.score(x[test], y[test]))
        print(f"{kind:>17}: {np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f} ({args.folds}-fold CV, seed {args.seed})")


if __name__ == "__main__":
    main()
