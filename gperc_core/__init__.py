"""gperc: a plugin-based multimodal framework around the Perceiver / Perceiver IO.

The public API lives here; submodules are implementation detail unless documented.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .config import PerceiverConfig
from .errors import CheckpointError, ConfigError, GpercError, InputError, PluginError, TaskError
from .hookspecs import hookimpl, hookspec
from .models import (Block, DecoderBlock, Embeddings, EncoderBlock, Perceiver, ProcessorBlock,
                     build_position_encoding, get_distributed_model)
from .position import fourier_features
from .sentinels import (MASK_SENTINEL, OUTPUT_SENTINEL, is_mask_sentinel, is_output_sentinel, mask_sentinel,
                        output_sentinel, resolve_mask, resolve_output_array)
from .specs import DatasetSpec, InputArray, ModalitySpec, Tokenizer

# Names whose modules import optional or heavier machinery load on first use.
_LAZY = {
    "get_plugin_manager": "gperc_core.plugins",
    "PluginManager": "gperc_core.plugins",
    "Collator": "gperc_core.collate",
    "collate": "gperc_core.collate",
    "create_task": "gperc_core.tasks",
    "list_tasks": "gperc_core.tasks",
    "Task": "gperc_core.tasks",
    "TaskCard": "gperc_core.registry",
    "load_registry": "gperc_core.registry",
    "ModalityFusion": "gperc_core.fusion",
    "Trainer": "gperc_core.trainer",
    "TrainingConfig": "gperc_core.trainer",
    "build_pipeline": "gperc_core.pipeline",
    "PipelinePlan": "gperc_core.pipeline",
    "plan_stages": "gperc_core.pipeline",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gperc_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "__version__", "PerceiverConfig", "Perceiver", "Block", "Embeddings", "EncoderBlock", "ProcessorBlock",
    "DecoderBlock", "build_position_encoding", "get_distributed_model", "fourier_features", "hookimpl",
    "hookspec", "GpercError", "ConfigError", "InputError", "PluginError", "TaskError", "CheckpointError",
    "MASK_SENTINEL", "OUTPUT_SENTINEL", "mask_sentinel", "output_sentinel", "is_mask_sentinel",
    "is_output_sentinel", "resolve_mask", "resolve_output_array", "ModalitySpec", "DatasetSpec",
    "InputArray", "Tokenizer", *_LAZY,
]
