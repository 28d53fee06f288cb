"""What every distributed strategy shares: the process group, the layout, rank 0 as the main
process, object broadcast, barriers and failure propagation (see `gperc_core.parallel.distributed`).

The strategy interface itself and the single-process strategy live in `gperc_core.train.strategy`
(the trainer's layer); `gperc_core.parallel.ddp` and `gperc_core.parallel.pipelined` build on this.
"""

from __future__ import annotations

from typing import Any, ContextManager

import torch.distributed as dist

from gperc_core.parallel.distributed import DistContext, ParallelLayout, failure_guard, shutdown
from gperc_core.train.strategy import Strategy

__all__ = ["DistributedStrategy"]


class DistributedStrategy(Strategy):
    """A strategy over an initialised process group: ``ctx`` (this rank) and ``layout`` (pipeline x
    data-parallel groups). Global rank 0 is the main process; batches keep fixed shapes."""

    fixed_shapes = True

    def __init__(self, ctx: DistContext, layout: ParallelLayout) -> None:
        self.ctx, self.layout = ctx, layout
        self.device = ctx.device
        self.is_main = ctx.rank == 0
        self.world_size = ctx.world_size

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()

    def guard(self) -> ContextManager:
        return failure_guard(self.ctx)

    def close(self) -> None:
        shutdown()

    def describe(self) -> str:
        return (f"distributed: {self.ctx.world_size} ranks ({self.ctx.backend}), {self.layout.dp_size} data-parallel "
                f"replica(s) x {self.layout.pp_size} pipeline rank(s), schedule {self.schedule_label}, "
                f"timeout {self.ctx.timeout_s:.0f} s")

    @property
    def schedule_label(self) -> str:
        """The schedule's name for `describe` (``ddp`` without a pipeline)."""
        return "ddp"
