"""Which model a config describes, built fresh or loaded from a folder: a `Perceiver`, a multimodal
`gperc_core.model.fusion.ModalityFusion`, or a deep `gperc_core.model.ensemble.Ensemble` of either."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.model.ensemble import Ensemble
from gperc_core.model.fusion import single_model_class
from gperc_core.model.perceiver import Materialise, materialising

__all__ = ["model_class", "model_for_config", "load_any_model"]


def model_class(config: PerceiverConfig) -> type[nn.Module]:
    """The class of ``config``'s model: an `Ensemble` when ``ensemble_size`` is more than 1, else a
    `ModalityFusion` when it has a ``fusion`` field, else a `Perceiver`."""
    return Ensemble if config.ensemble_size > 1 else single_model_class(config)


def model_for_config(config: PerceiverConfig, materialise: Materialise | None = None) -> nn.Module:
    """Return a fresh model for ``config``, of `model_class`.

    ``materialise`` (unit name -> bool) builds the units it rejects on the meta device: a pipeline rank
    builds only its stages' weights, equal to the single-process model's."""
    with materialising(materialise):
        return model_class(config)(config)


def load_any_model(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load ``directory``'s model (a `Perceiver`, a `ModalityFusion` or an `Ensemble`, as its config says)."""
    from gperc_core.io.checkpoint import load_model, read_config

    return load_model(directory, map_location=map_location, model_cls=model_class(read_config(directory)))
