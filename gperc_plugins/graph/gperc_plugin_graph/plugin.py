"""The graph plugin's hook implementations (entry point ``graph = "gperc_plugin_graph.plugin"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gperc_core import DatasetSpec, InputArray, InputError, ModalitySpec, hookimpl, packaged_task_cards

from . import PLUGIN_NAME
from .datasets import GRAKEL_HINT, KARATE_SPLITS, load_karate, load_mutag, load_tu_folder
from .tokens import declared_options

MODALITY = "graph"
_READERS = {".graphml": "read_graphml", ".gml": "read_gml", ".edgelist": "read_edgelist",
            ".adjlist": "read_adjlist"}


def read_file(path: str) -> Any:
    """Read one graph file (for ``gperc predict``) into a networkx graph: GraphML, GML, edge list,
    adjacency list, or node-link JSON (``.json``)."""
    import networkx as nx

    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        import json

        return nx.node_link_graph(json.loads(Path(path).read_text()), edges="links")
    reader = _READERS.get(suffix)
    if reader is None:
        raise InputError(f"{PLUGIN_NAME} plugin: path: expected a graph file ending in "
                         f"{', '.join([*_READERS, '.json'])}, got {str(path)!r}")
    if suffix in (".edgelist", ".adjlist"):
        return getattr(nx, reader)(path, nodetype=int)
    return getattr(nx, reader)(path)


@hookimpl
def gperc_register_modalities() -> list[ModalitySpec]:
    """Register the ``graph`` modality (raw float token arrays)."""
    return [ModalitySpec(name=MODALITY, input_type="raw", options=declared_options(), read_file=read_file,
                         description="nodes (and optionally edges) as tokens with Laplacian / random-walk "
                                     "position encodings")]


@hookimpl
def gperc_register_datasets() -> list[DatasetSpec]:
    """Register ``mutag``, ``karate`` and ``tu-folder``."""
    return [
        DatasetSpec(name="mutag", modalities=[MODALITY], load=load_mutag, num_classes=2,
                    description="MUTAG: 188 molecules, mutagenic or not (TU files in the grakel wheel)",
                    install_hint=GRAKEL_HINT),
        DatasetSpec(name="karate", modalities=[MODALITY], load=load_karate, num_classes=2, splits=KARATE_SPLITS,
                    description="Zachary's karate club: node classification of the 34 members' clubs",
                    install_hint="pip install networkx==3.6.1"),
        DatasetSpec(name="tu-folder", volatile=True, modalities=[MODALITY], load=load_tu_folder,
                    description="any TU-format graph classification folder (options: root, name)",
                    install_hint="set options root = '<folder with DS_A.txt, DS_graph_indicator.txt, "
                                 "DS_graph_labels.txt>'"),
    ]


@hookimpl
def gperc_register_tasks() -> list[dict[str, Any]]:
    """The graph task cards shipped in ``gperc_plugin_graph/tasks/*.toml``."""
    return packaged_task_cards("gperc_plugin_graph")


@hookimpl
def gperc_input_array(modality: str, sample: Any, options: dict[str, Any]) -> InputArray | None:
    """Turn one graph (networkx, PyG-style, dict or `Graph`) into its token array (and node queries)."""
    if modality != MODALITY:
        return None
    from .graph import to_graph
    from .tokens import GraphOptions, graph_input_array

    opts = GraphOptions.from_dict(options)
    return graph_input_array(to_graph(sample, opts.label_key), opts)


@hookimpl
def gperc_transform(modality: str, array: InputArray, options: dict[str, Any],
                    generator: torch.Generator) -> InputArray | None:
    """Training-time token dropping (``options['drop_tokens']``), fresh every epoch; ``None`` when off."""
    if modality != MODALITY:
        return None
    from .augment import augment_array

    return augment_array(array, options, generator)


__all__ = ["gperc_register_modalities", "gperc_register_datasets", "gperc_register_tasks", "gperc_input_array",
           "gperc_transform", "read_file"]
