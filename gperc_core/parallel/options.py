"""How to lay training out over processes: `ParallelOptions`, and its command-line flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from gperc_core.errors import ConfigError

DEFAULT_TIMEOUT_S: float = 300.0
"""Default process-group timeout: a rank waits at most this long for a peer."""

BALANCES = ("model", "measured")

__all__ = ["ParallelOptions", "DEFAULT_TIMEOUT_S", "BALANCES"]


@dataclass
class ParallelOptions:
    """The parallel layout of a training run under ``torchrun`` (ignored in a single process).

    ``pipeline_stages`` ranks per pipeline (the world holds world/S data-parallel replicas; 1 = plain
    DDP); ``microbatches`` per step and replica (default: the number of stages); ``schedule`` 1f1b,
    gpipe or interleaved; ``stages_per_rank`` model stages per rank with the interleaved schedule
    (``None``: 2 with interleaved, else 1); ``balance`` cuts stages by the cost model or by block times
    measured on rank 0; ``timeout_s`` bounds every wait on a peer; ``device`` overrides
    ``training.device`` (``'cpu'`` runs gloo even where GPUs are).
    """

    pipeline_stages: int = 1
    microbatches: int | None = None
    schedule: str = "1f1b"
    stages_per_rank: int | None = None
    balance: str = "model"
    timeout_s: float = DEFAULT_TIMEOUT_S
    device: str | None = None

    def validate(self) -> "ParallelOptions":
        """Check every field; raises `ConfigError` naming the field, the expected and the actual value."""
        for name in ("pipeline_stages", "microbatches", "stages_per_rank"):
            value = getattr(self, name)
            if value is None and name != "pipeline_stages":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        if self.balance not in BALANCES:
            raise ConfigError(f"balance: expected one of {list(BALANCES)}, got {self.balance!r}")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) or not self.timeout_s > 0:
            raise ConfigError(f"timeout_s: expected a number of seconds > 0, got {self.timeout_s!r}")
        return self

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the distributed flags (``--pipeline-stages``, ``--microbatches``, ``--schedule``,
        ``--stages-per-rank``, ``--balance``, ``--dist-timeout``) to ``parser``."""
        group = parser.add_argument_group("distributed (launch with torchrun --nproc-per-node K -m gperc_core train ...)")
        group.add_argument("--pipeline-stages", type=int, default=1, metavar="S",
                           help="ranks per pipeline (K/S data-parallel replicas; 1 = plain DDP)")
        group.add_argument("--microbatches", type=int, default=None, metavar="M",
                           help="microbatches per step and replica (default: the number of stages)")
        group.add_argument("--schedule", default="1f1b", help="pipeline schedule: 1f1b (default), gpipe or interleaved")
        group.add_argument("--stages-per-rank", type=int, default=None, metavar="V",
                           help="model stages per rank with --schedule interleaved (default 2)")
        group.add_argument("--balance", choices=BALANCES, default="model",
                           help="cut the stages by the cost model (default) or by block times measured on rank 0")
        group.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                           help=f"process-group timeout: a failed or hung rank ends every rank within it "
                                f"(default {DEFAULT_TIMEOUT_S:.0f})")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ParallelOptions":
        """The options of parsed command-line ``args`` (``--device`` included)."""
        get: Any = lambda name, default: getattr(args, name, default)  # noqa: E731
        return cls(pipeline_stages=int(get("pipeline_stages", 1) or 1), microbatches=get("microbatches", None),
                   schedule=get("schedule", "1f1b"), stages_per_rank=get("stages_per_rank", None),
                   balance=get("balance", "model"), timeout_s=get("dist_timeout", DEFAULT_TIMEOUT_S),
                   device=get("device", None)).validate()
