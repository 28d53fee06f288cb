"""The public Python API behind the ``gperc`` command line: train, resume, evaluate, predict,
and the listings known_tasks / installed_plugins.

The CLI is a thin shell over these functions; Python users call them directly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "gperc_core.api.training",
    "resume": "gperc_core.api.training",
    "evaluate": "gperc_core.api.evaluation",
    "predict": "gperc_core.api.prediction",
    "export": "gperc_core.api.exporting",
    "known_tasks": "gperc_core.api.catalog",
    "installed_plugins": "gperc_core.api.catalog",
    "load_run_model": "gperc_core.api.runs",
    "open_run": "gperc_core.api.runs",
    "cache_entries": "gperc_core.api.cache",
    "clear_cache": "gperc_core.api.cache",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gperc_core.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = list(_EXPORTS)
