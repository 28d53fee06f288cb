"""Training-time augmentation of a graph's token array: token dropping (``options["drop_tokens"]``).

Each epoch every node and edge token of a training graph is hidden with probability ``drop_tokens``
(its attention-mask flag set to False, so the model reads the graph without it), at least one real
token staying. A graph is then seen as a slightly different set of atoms and bonds every epoch, as
DropNode / DropEdge do for message-passing networks, so a model cannot memorise a training graph by
its exact token set. Position encodings and label neighbourhoods stay those of the whole graph (they
are computed once, when the graph is converted). Draws come from the hook's generator only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch

from gperc_core import InputArray


def drop_tokens(array: InputArray, rate: float, generator: torch.Generator) -> InputArray:
    """Return ``array`` with each real token's mask flag cleared with probability ``rate`` (at least
    one real token kept); the tokens themselves are unchanged."""
    m = int(array.array.shape[0])
    real = array.mask if array.mask is not None else torch.ones(m, dtype=torch.bool)
    keep = (torch.rand(m, generator=generator) >= rate) & real
    if not bool(keep.any()):
        candidates = real.nonzero().flatten()
        keep[candidates[int(torch.randint(len(candidates), (1,), generator=generator))]] = True
    return dataclasses.replace(array, mask=keep)


def augment_array(array: InputArray, options: Mapping[str, Any], generator: torch.Generator) -> InputArray | None:
    """The augmented copy of one converted training graph, or ``None`` when ``options`` ask for none."""
    from .tokens import GraphOptions

    rate = GraphOptions.from_dict(options).drop_tokens
    return drop_tokens(array, float(rate), generator) if rate > 0 else None
