"""gperc: a plugin-based multimodal framework around the Perceiver / Perceiver IO.

The public API lives here. Every name loads on first use, so ``import gperc_core`` (and importing
the plugin contract through it) costs no torch import; submodules are implementation detail
unless documented.

Layers, bottom up (each imports only from the layers before it; ``tests/test_layers.py`` checks):
``errors`` → ``config`` → ``plugins`` (the contract) → ``io`` → ``model`` → ``data`` → ``train``
→ ``parallel`` → ``api`` → ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gperc_core._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "GpercError": "gperc_core.errors", "ConfigError": "gperc_core.errors", "InputError": "gperc_core.errors",
    "PluginError": "gperc_core.errors", "PluginHookError": "gperc_core.errors", "TaskError": "gperc_core.errors",
    "CheckpointError": "gperc_core.errors", "RunLockedError": "gperc_core.errors",
    # config
    "PerceiverConfig": "gperc_core.config.perceiver",
    "TrainingConfig": "gperc_core.config.training",
    # plugin contract
    "hookimpl": "gperc_core.plugins.hookspecs", "hookspec": "gperc_core.plugins.hookspecs",
    "DatasetSpec": "gperc_core.plugins.specs", "InputArray": "gperc_core.plugins.specs",
    "ModalitySpec": "gperc_core.plugins.specs", "Tokenizer": "gperc_core.plugins.specs",
    "Option": "gperc_core.plugins.specs", "PositionGrid": "gperc_core.plugins.specs",
    "packaged_task_cards": "gperc_core.plugins.cards",
    "get_plugin_manager": "gperc_core.plugins.manager", "PluginManager": "gperc_core.plugins.manager",
    # model (the seed API)
    "Block": "gperc_core.models", "Embeddings": "gperc_core.models", "EncoderBlock": "gperc_core.models",
    "ProcessorBlock": "gperc_core.models", "DecoderBlock": "gperc_core.models", "Perceiver": "gperc_core.models",
    "build_position_encoding": "gperc_core.models", "get_distributed_model": "gperc_core.models",
    "fourier_features": "gperc_core.model.position",
    "ModalityFusion": "gperc_core.model.fusion", "model_for_config": "gperc_core.model.build",
    "load_any_model": "gperc_core.model.build", "Ensemble": "gperc_core.model.ensemble",
    # interop
    "from_transformers": "gperc_core.interop.transformers", "image_to_gperc": "gperc_core.interop.transformers",
    "MASK_SENTINEL": "gperc_core.model.sentinels", "OUTPUT_SENTINEL": "gperc_core.model.sentinels",
    "mask_sentinel": "gperc_core.model.sentinels", "output_sentinel": "gperc_core.model.sentinels",
    "is_mask_sentinel": "gperc_core.model.sentinels", "is_output_sentinel": "gperc_core.model.sentinels",
    "resolve_mask": "gperc_core.model.sentinels", "resolve_output_array": "gperc_core.model.sentinels",
    "IGNORE_INDEX": "gperc_core.model.sentinels",
    # data
    "Collator": "gperc_core.data.collate", "collate": "gperc_core.data.collate",
    "TaskCard": "gperc_core.data.registry", "load_registry": "gperc_core.data.registry",
    "create_task": "gperc_core.data.tasks", "list_tasks": "gperc_core.data.tasks", "Task": "gperc_core.data.tasks",
    "UserData": "gperc_core.data.userdata", "UserSamples": "gperc_core.data.userdata",
    "UserDataWarning": "gperc_core.data.userdata", "USER_DATA_OPTIONS": "gperc_core.data.userdata",
    # train
    "Trainer": "gperc_core.train.trainer",
    # parallel
    "build_pipeline": "gperc_core.parallel.pipeline", "PipelinePlan": "gperc_core.parallel.pipeline",
    "plan_stages": "gperc_core.parallel.pipeline",
    "ParallelOptions": "gperc_core.parallel.options", "make_strategy": "gperc_core.parallel",
    # interop: export
    "export_model": "gperc_core.interop.onnx", "ExportedModel": "gperc_core.interop.onnx",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gperc_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # static analysers and docs tools see the eager imports
    from gperc_core.config.perceiver import PerceiverConfig
    from gperc_core.config.training import TrainingConfig
    from gperc_core.data.collate import Collator, collate
    from gperc_core.data.registry import TaskCard, load_registry
    from gperc_core.data.tasks import Task, create_task, list_tasks
    from gperc_core.data.userdata import USER_DATA_OPTIONS, UserData, UserDataWarning, UserSamples
    from gperc_core.errors import (CheckpointError, ConfigError, GpercError, InputError, PluginError, PluginHookError,
                                   RunLockedError, TaskError)
    from gperc_core.model.build import load_any_model, model_for_config
    from gperc_core.model.ensemble import Ensemble
    from gperc_core.model.fusion import ModalityFusion
    from gperc_core.model.position import fourier_features
    from gperc_core.model.sentinels import (IGNORE_INDEX, MASK_SENTINEL, OUTPUT_SENTINEL, is_mask_sentinel, is_output_sentinel,
                                            mask_sentinel, output_sentinel, resolve_mask, resolve_output_array)
    from gperc_core.models import (Block, DecoderBlock, Embeddings, EncoderBlock, Perceiver, ProcessorBlock,
                                   build_position_encoding, get_distributed_model)
    from gperc_core.parallel.pipeline import PipelinePlan, build_pipeline, plan_stages
    from gperc_core.parallel import make_strategy
    from gperc_core.parallel.options import ParallelOptions
    from gperc_core.plugins.hookspecs import hookimpl, hookspec
    from gperc_core.plugins.manager import PluginManager, get_plugin_manager
    from gperc_core.plugins.cards import packaged_task_cards
    from gperc_core.plugins.specs import DatasetSpec, InputArray, ModalitySpec, Option, PositionGrid, Tokenizer
    from gperc_core.train.trainer import Trainer

__all__ = ["__version__", *_EXPORTS]
