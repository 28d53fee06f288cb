"""Error types of gperc: each names the argument, what was expected and what came."""

from __future__ import annotations

from typing import Any


class GpercError(Exception):
    """Base class of every error gperc raises on purpose."""


class ConfigError(GpercError, ValueError):
    """A configuration field has a value gperc cannot use."""


class InputError(GpercError, ValueError):
    """A model or collator input has the wrong shape, dtype or value."""


class PluginError(GpercError, RuntimeError):
    """A plugin failed to load, declared something invalid, or collided with another."""


class PluginHookError(PluginError):
    """Plugin code raised while gperc called one of its hooks during a task; the message names the plugin,
    its distribution and version, the hook, where it was called (split, sample) and the original error,
    which is also the exception's ``__cause__``."""


class TaskError(GpercError, LookupError):
    """A task name, task card or task override is not valid."""


class CheckpointError(GpercError, RuntimeError):
    """A checkpoint folder is missing, corrupted or belongs to another configuration."""


class RunLockedError(CheckpointError):
    """A run folder is being written by another process (it holds the folder's writer lock)."""


def describe(value: Any) -> str:
    """Return a short human description of ``value`` for error messages (shape and dtype for tensors)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__}(shape={tuple(shape)}, dtype={dtype})"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
