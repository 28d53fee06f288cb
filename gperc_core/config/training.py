"""Trainer settings: the ``[training]`` table of a task card, validated field by field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from gperc_core.errors import ConfigError, TaskError

INIT_HEADS = ("keep", "new")
"""The values of ``training.init_head``: load the head's weights too ("keep"), or start it afresh ("new")."""


@dataclass
class TrainingConfig:
    """Trainer settings; a task card's ``[training]`` table and ``--set training.<name>=`` set them.

    ``warmup_fraction`` of the total steps warms the learning rate up linearly, then it decays with a
    cosine to ``lr * min_lr_ratio``; the total is ``epochs`` x steps per epoch (``max_steps`` only
    stops early, so a stopped run resumes on the same schedule). ``bf16=None`` turns bf16 autocast on
    where it pays (`auto_bf16`); ``True`` forces it wherever the device runs bf16.
    ``max_train_samples`` / ``max_eval_samples`` cut the splits to a fixed random subset (quick runs). ``checkpoint_every`` also checkpoints every N steps (besides
    every epoch and the end). ``log_every`` is the step interval of training-loss lines. ``init`` is a gperc
    model folder (e.g. written by ``gperc convert``) whose weights a new run starts from; ``init_head``
    "keep" (default) loads all of them, "new" all but the head's (the decoder and its output queries), which
    start afresh: fine-tuning on another objective (`gperc_core.api.convert`).
    ``tensorboard`` also writes the metrics and the run's config to ``RUN/tensorboard/``
    (`gperc_core.train.tensorboard`; needs the ``tensorboard`` package).
    ``num_workers`` is the DataLoader worker count (``None``: `gperc_core.data.loader.default_num_workers`,
    ``min(2, cpus - 1)`` or ``$GPERC_NUM_WORKERS``); ``length_bucketing`` groups variable-length
    training samples of similar length into batches (less padding).
    ``early_stopping_patience`` (default ``None``: off) stops training after that many evaluations of
    the validation split in a row without a better validation metric than the best so far.
    ``ema_decay`` (default ``None``: off) keeps an exponential moving average of the weights
    (`gperc_core.train.ema`); validation, the best-weights choice, the test figure and the saved model
    then use the averaged weights.
    ``mixup`` (default 0: off) trains a classifier on mixed pairs of samples, the mixing weight drawn
    from ``Beta(mixup, mixup)`` per batch (`gperc_core.train.mixup`; floating-point inputs only).
    ``max_eval_samples`` cuts the validation and the test split alike.
    """

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    max_steps: int | None = None
    bf16: bool | None = None
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 1
    log_every: int = 10
    progress: bool = True
    init: str | None = None
    init_head: str = "keep"
    tensorboard: bool = False
    num_workers: int | None = None
    length_bucketing: bool = True
    early_stopping_patience: int | None = None
    ema_decay: float | None = None
    mixup: float = 0.0

    @classmethod
    def field_types(cls) -> dict[str, tuple[type, ...]]:
        """Return each field's declared Python types (``type(None)`` included for optional ones)."""
        names = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}
        return {f.name: tuple(names[p.strip()] for p in str(f.type).split("|")) for f in dataclasses.fields(cls)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "training",
                     base: "TrainingConfig | None" = None) -> "TrainingConfig":
        """Build a config from ``values`` on top of ``base``; an unknown key or a value of the wrong
        type is a `TaskError` naming ``where``, the key, the expected and the actual value."""
        types = cls.field_types()
        changes = {}
        for key, value in values.items():
            if key not in types:
                raise TaskError(f"{where}.{key}: unknown training setting (expected one of {sorted(types)})")
            declared = types[key]
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if is_int and float in declared and int not in declared:
                value = float(value)
            ok = isinstance(value, declared) and (bool in declared or not isinstance(value, bool))
            if not ok:
                expected = " or ".join("None" if t is type(None) else t.__name__ for t in declared)
                raise TaskError(f"{where}.{key}: expected {expected}, got {type(value).__name__} {value!r}")
            changes[key] = value
        config = dataclasses.replace(base or cls(), **changes)
        config.validate(where)
        return config

    def validate(self, where: str = "training") -> "TrainingConfig":
        """Check value ranges; raise `ConfigError` naming the field."""
        for name in ("epochs", "batch_size", "eval_batch_size", "keep_checkpoints", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{where}.{name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"{where}.num_workers: expected an integer >= 0 or None, got {self.num_workers!r}")
        for name in ("max_steps", "max_train_samples", "max_eval_samples", "checkpoint_every",
                     "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{where}.{name}: expected a positive integer or None, got {value!r}")
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: expected a positive number, got {self.lr!r}")
        for name in ("warmup_fraction", "min_lr_ratio", "label_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{where}.{name}: expected a number in [0, 1], got {getattr(self, name)!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"{where}.ema_decay: expected a number in (0, 1) or None, got {self.ema_decay!r}")
        if self.init_head not in INIT_HEADS:
            raise ConfigError(f"{where}.init_head: expected {' or '.join(map(repr, INIT_HEADS))}, "
                              f"got {self.init_head!r}")
        if self.mixup < 0:
            raise ConfigError(f"{where}.mixup: expected a number >= 0 (0: off), got {self.mixup!r}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError(f"{where}.grad_clip / weight_decay: expected numbers >= 0, got "
                              f"{self.grad_clip!r} / {self.weight_decay!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


__all__ = ["TrainingConfig", "INIT_HEADS"]
