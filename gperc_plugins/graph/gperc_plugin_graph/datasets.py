"""The graph plugin's datasets: ``mutag`` (grakel wheel), ``karate`` (networkx) and ``tu-folder``.

Splits are fixed and seeded. Graph datasets use `stratified_folds`: the samples of each class are
shuffled with ``split_seed`` and dealt round-robin into ``num_folds`` folds; ``test`` is fold
``fold`` and ``train`` the rest. The default, 5 folds / fold 0 / seed 0, is a stratified 80/20
split (MUTAG: 150 train, 38 test graphs); ``num_folds=10`` gives the 10-fold protocol's folds.
``num_folds``, ``fold`` and ``split_seed`` are the options through which a card's
``[cross_validation]`` table reaches these datasets (`gperc_core.data.cards.FOLD_OPTIONS`): the cards
say ``cross_validation = { folds = 10, seed = 0 }`` and ``--set cross_validation.fold=3`` picks a fold.

MUTAG's validation split is held out of ``train`` by the core (stratified, `gperc_core.data.cards`).
Karate is one graph, so its validation split is the plugin's: ``validation`` holds
``validation_fraction`` (default 0.2) of each class of the training nodes (seeded by ``split_seed``),
and ``train`` the remaining ones.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from gperc_core import IGNORE_INDEX, TaskError

from . import PLUGIN_NAME
from .graph import Graph, make_graph
from .tu import read_tu

GRAKEL_HINT = "pip install grakel==0.1.11"


@dataclass
class GraphDataset:
    """Graphs with targets (an int per graph, or a long ``[N]`` per-node tensor with -100 = unlabelled)."""

    graphs: list[Graph]
    targets: list[Any]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"index: expected an int, got {type(index).__name__}")
        return {"graph": self.graphs[index], "target": self.targets[index]}


def stratified_folds(labels: torch.Tensor, num_folds: int, seed: int) -> torch.Tensor:
    """Return long ``[n]``: the fold of each sample; every class is spread evenly over the folds."""
    n = int(labels.shape[0])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    ordered = perm[torch.argsort(labels[perm], stable=True)]
    sorted_labels = labels[ordered]
    counts = torch.bincount(sorted_labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[sorted_labels]
    folds = torch.empty(n, dtype=torch.long)
    folds[ordered] = rank % num_folds
    return folds


def _split_options(options: Mapping[str, Any], default_folds: int) -> tuple[int, int, int]:
    num_folds = options.get("num_folds", default_folds)
    fold = options.get("fold", 0)
    seed = options.get("split_seed", 0)
    if not isinstance(num_folds, int) or num_folds < 2:
        raise TaskError(f"{PLUGIN_NAME} plugin: options['num_folds']: expected an integer >= 2, got {num_folds!r}")
    if not isinstance(fold, int) or not 0 <= fold < num_folds:
        raise TaskError(f"{PLUGIN_NAME} plugin: options['fold']: expected an integer in [0, {num_folds}), got {fold!r}")
    if not isinstance(seed, int):
        raise TaskError(f"{PLUGIN_NAME} plugin: options['split_seed']: expected an integer, got {seed!r}")
    return num_folds, fold, seed


def _check_split(split: str, dataset: str, splits: tuple[str, ...] = ("train", "test")) -> None:
    if split not in splits:
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset {dataset!r} split: expected one of {list(splits)}, got {split!r}")


KARATE_SPLITS = ("train", "validation", "test")
DEFAULT_VALIDATION_FRACTION = 0.2


def held_out_nodes(labels: torch.Tensor, candidates: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Return bool ``[n]``: ``round(fraction * n_c)`` (at least 1) of the ``candidates`` (bool ``[n]``) of
    each class ``c`` of ``labels``, drawn by a permutation seeded with ``seed`` (the validation nodes)."""
    n = int(labels.shape[0])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 7919))
    chosen = torch.zeros(n, dtype=torch.bool)
    for c in torch.unique(labels[candidates]).tolist():
        members = order[(labels[order] == c) & candidates[order]]
        k = max(1, int(round(fraction * len(members)))) if len(members) >= 2 else 0
        chosen[members[:k]] = True
    return chosen


def split_graphs(graphs: list[Graph], targets: torch.Tensor, classes: list[str], split: str,
                 options: Mapping[str, Any]) -> GraphDataset:
    """Return the ``split`` part of a graph classification dataset (see the module docstring)."""
    num_folds, fold, seed = _split_options(options, 5)
    folds = stratified_folds(targets, num_folds, seed)
    chosen = (folds == fold) if split == "test" else (folds != fold)
    index = chosen.nonzero().flatten().tolist()
    return GraphDataset([graphs[i] for i in index], [int(targets[i]) for i in index], classes)


def mutag_folder() -> Path:
    """The MUTAG TU folder shipped inside the grakel wheel (``grakel/tests/data/MUTAG``)."""
    spec = importlib.util.find_spec("grakel")
    if spec is None or spec.origin is None:
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'mutag': expected the grakel package (it ships MUTAG), "
                        f"got it not installed; install it with `{GRAKEL_HINT}`")
    folder = Path(spec.origin).parent / "tests" / "data" / "MUTAG"
    if not (folder / "MUTAG_A.txt").is_file():
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'mutag': expected MUTAG in {str(folder)!r}, found none; "
                        f"install the wheel that ships it with `{GRAKEL_HINT}`")
    return folder


def load_mutag(split: str, options: Mapping[str, Any] | None = None) -> GraphDataset:
    """MUTAG: 188 molecules (7 atom labels, 4 bond labels), mutagenic or not. Options: ``root`` (a TU
    folder holding MUTAG_*.txt instead of grakel's), ``num_folds``, ``fold``, ``split_seed``."""
    _check_split(split, "mutag")
    options = dict(options or {})
    folder = Path(options["root"]) if options.get("root") else mutag_folder()
    data = read_tu(folder, "MUTAG")
    return split_graphs(data.graphs, data.targets, data.classes, split, options)


def load_tu_folder(split: str, options: Mapping[str, Any] | None = None) -> GraphDataset:
    """Any TU-format folder: options ``root`` (required), ``name`` (default: the folder name),
    ``num_folds``, ``fold``, ``split_seed``."""
    _check_split(split, "tu-folder")
    options = dict(options or {})
    root = options.get("root")
    if not root or not Path(root).is_dir():
        raise TaskError(f"{PLUGIN_NAME} plugin: dataset 'tu-folder' options['root']: expected a TU-format folder "
                        f"(DS_A.txt, DS_graph_indicator.txt, DS_graph_labels.txt), got {root!r}")
    data = read_tu(root, options.get("name"))
    return split_graphs(data.graphs, data.targets, data.classes, split, options)


def load_karate(split: str, options: Mapping[str, Any] | None = None) -> GraphDataset:
    """Zachary's karate club (networkx) for node classification: one graph of 34 nodes whose target
    is each node's club (Mr. Hi = 0, Officer = 1). Nodes are split by `stratified_folds` (default 2
    folds, fold 0 = test, seed 0); ``validation`` holds ``validation_fraction`` of each class of the
    other folds' nodes (`held_out_nodes`), ``train`` the rest. Each split holds the whole graph with
    the other splits' nodes' targets set to -100 (ignored)."""
    _check_split(split, "karate", KARATE_SPLITS)
    import networkx as nx

    options = dict(options or {})
    num_folds, fold, seed = _split_options(options, 2)
    fraction = options.get("validation_fraction")
    fraction = DEFAULT_VALIDATION_FRACTION if fraction is None else fraction
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0.0 < fraction < 1.0:
        raise TaskError(f"{PLUGIN_NAME} plugin: options['validation_fraction']: expected a number in (0, 1), "
                        f"got {fraction!r}")
    g = nx.karate_club_graph()
    clubs = sorted({g.nodes[n]["club"] for n in g.nodes})
    labels = torch.tensor([clubs.index(g.nodes[n]["club"]) for n in g.nodes], dtype=torch.long)
    graph = make_graph(g.number_of_nodes(), torch.tensor(list(g.edges()), dtype=torch.long))
    folds = stratified_folds(labels, num_folds, seed)
    validation = held_out_nodes(labels, folds != fold, float(fraction), seed)
    in_split = {"test": folds == fold, "validation": validation, "train": (folds != fold) & ~validation}[split]
    target = torch.where(in_split, labels, torch.full_like(labels, IGNORE_INDEX))
    return GraphDataset([graph], [target], clubs)
