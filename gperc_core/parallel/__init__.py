"""Parallelism as strategies of the one `gperc_core.train.trainer.Trainer`: process groups
(`distributed`), stage cutting and schedules (`pipeline`), DDP (`ddp`), pipeline and pipeline x DDP
(`pipelined`), and `make_strategy`, which picks one from `ParallelOptions` and the environment."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["make_strategy", "wants_distributed"]


def wants_distributed(options: Any = None) -> bool:
    """True when this process runs under torchrun with several ranks or ``options`` ask for a pipeline."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return world > 1 or int(getattr(options, "pipeline_stages", 1) or 1) > 1


def make_strategy(options: Any = None, device: str | None = "auto") -> Any:
    """Return the `gperc_core.train.strategy.Strategy` for ``options`` (a `ParallelOptions`, ``None``
    for the defaults): one process on ``device`` when not under torchrun and no pipeline is asked for;
    otherwise the process group is initialised (gloo for ``device='cpu'``, NCCL on GPUs) and the
    strategy is DDP (one pipeline stage) or the pipeline (x DDP when the world holds several replicas).
    ``options.device`` overrides ``device``."""
    from gperc_core.parallel.options import ParallelOptions

    options = (options if options is not None else ParallelOptions()).validate()
    device = options.device or device or "auto"
    if not wants_distributed(options):
        from gperc_core.train.device import resolve_device
        from gperc_core.train.strategy import SingleProcess

        return SingleProcess(resolve_device(device))
    from gperc_core.parallel.distributed import build_layout, init_distributed

    ctx = init_distributed(timeout_s=options.timeout_s, device=None if device == "auto" else device)
    layout = build_layout(int(options.pipeline_stages), ctx)
    if layout.pp_size == 1:
        from gperc_core.parallel.ddp import DataParallel

        return DataParallel(ctx, layout)
    from gperc_core.parallel.pipelined import Pipelined

    return Pipelined(ctx, layout, options)
