"""Distributed training from the command line: DDP, pipeline, and pipeline x DDP.

``torchrun --nproc-per-node K -m gperc_core train TASK --pipeline-stages S [--microbatches M]
[--schedule 1f1b|gpipe|interleaved] [--dist-timeout SECONDS]`` runs K/S data-parallel replicas of
an S-rank pipeline (S=1: plain DDP). `DistributedTrainer` is the single-process `Trainer` with
its step, evaluation and checkpoints made distributed, so progress, ``metrics.jsonl``, the plot
and the checkpoints are the same; only global rank 0 prints and writes. Checkpoints are written
in the single-process layout (full model weights, and the optimizer state re-keyed to the
single-process optimizer), so a pipeline run resumes, evaluates or fine-tunes without a pipeline
and the other way round.

Each step takes the trainer's global batch, gives replica ``r`` its contiguous share, and pads
every share to a multiple of the microbatches with repeated samples whose targets are ignored
(-100). The loss is a sum over labelled targets divided by the global count, so padding, uneven
shares and microbatching leave the loss and the gradients exactly those of the single-process
step.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gperc_core.parallel.distributed import DEFAULT_TIMEOUT_S, DistContext, ParallelLayout, build_layout, failure_guard, init_distributed
from gperc_core.errors import ConfigError
from gperc_core.train.metrics import MetricAccumulator
from gperc_core.train.trainer import Trainer, to_device

IGNORE = -100

__all__ = ["DistributedTrainer", "add_arguments", "wants_distributed", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the distributed flags to the ``train`` parser."""
    group = parser.add_argument_group("distributed (launch with torchrun --nproc-per-node K -m gperc_core train ...)")
    group.add_argument("--pipeline-stages", type=int, default=1, metavar="S",
                       help="ranks per pipeline (K/S data-parallel replicas; 1 = plain DDP)")
    group.add_argument("--microbatches", type=int, default=None, metavar="M",
                       help="microbatches per step and replica (default: the number of stages)")
    group.add_argument("--schedule", default="1f1b", help="pipeline schedule: 1f1b (default), gpipe or interleaved")
    group.add_argument("--stages-per-rank", type=int, default=2, metavar="V",
                       help="model stages per rank with --schedule interleaved (default 2)")
    group.add_argument("--balance", choices=("model", "measured"), default="model",
                       help="cut the stages by the cost model (default) or by block times measured on rank 0")
    group.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help=f"process-group timeout: a failed or hung rank ends every rank within it "
                            f"(default {DEFAULT_TIMEOUT_S:.0f})")


def wants_distributed(args: argparse.Namespace) -> bool:
    """True when the command runs under torchrun with several ranks or asks for a pipeline."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return world > 1 or int(getattr(args, "pipeline_stages", 1) or 1) > 1


def _take(value: Any, idx: torch.Tensor) -> Any:
    """Rows ``idx`` of a batch value (tensors, dicts of tensors, None)."""
    if isinstance(value, torch.Tensor):
        return value[idx]
    if isinstance(value, Mapping):
        return {k: _take(v, idx) for k, v in value.items()}
    return value


def _rows(batch: Mapping[str, Any]) -> int:
    return int(batch["target"].shape[0])


class DistributedTrainer(Trainer):
    """`Trainer` over a data-parallel and/or pipeline-parallel layout (see the module docstring).

    ``layout.pp_size == 1``: the model is wrapped in DDP over the world. Otherwise this rank holds
    its pipeline stages (a `gperc_core.parallel.pipeline.PipelineHandle`, DDP over the replicas when there
    are several) and the optimizer holds only their parameters.
    """

    def __init__(self, task: Any, out_dir: str | Path, ctx: DistContext, layout: ParallelLayout, *,
                 schedule: str = "1f1b", microbatches: int | None = None, stages_per_rank: int = 2,
                 balance: str = "model", training: Any = None) -> None:
        super().__init__(task, out_dir, training=training)
        self.ctx, self.layout = ctx, layout
        self.trim = False  # fixed shapes: the pipeline's buffers are sized once
        if self.cfg.compile:
            raise ConfigError("training.compile: expected False for distributed training, got True")
        self.handle = None
        self.ddp = None
        probe = self.train_data.batch(torch.arange(1), trim=False)
        unused = probe.get("output_array") is not None  # then the learned output queries go unused
        if layout.pp_size > 1:
            from gperc_core.parallel.pipeline import build_pipeline, normalise_schedule

            name = normalise_schedule(schedule)
            stages = layout.pp_size * stages_per_rank if name == "interleaved" else layout.pp_size
            costs = self._measured_costs() if balance == "measured" else None
            if balance not in ("model", "measured"):
                raise ConfigError(f"--balance: expected 'model' or 'measured', got {balance!r}")
            self.handle = build_pipeline(self.model.config, num_stages=stages, schedule=name, costs=costs,
                                         microbatches=microbatches, group=layout.pp_group, dp_group=layout.dp_group,
                                         device=self.device, model=self.model, allow_reshape=True,
                                         label_smoothing=self.cfg.label_smoothing, find_unused_parameters=unused)
            self.microbatches = self.handle.microbatches
            if self.is_main:
                print(self.handle.plan.describe(), flush=True)
            full = self.model
            self.model = nn.ModuleList(self.handle.modules)  # the optimizer sees only this rank's stages
            try:
                self.optimizer = self._build_optimizer()
            finally:
                self.model = full
        else:
            from gperc_core.parallel.distributed import wrap_ddp

            self.microbatches = 1
            self.ddp = wrap_ddp(self.model, device=self.device, find_unused_parameters=unused)

    # ----------------------------------------------------------------- helpers
    def _measured_costs(self) -> list[float]:
        """Per-block forward+backward seconds, timed by rank 0 on one training batch and shared with
        every rank (so every rank cuts the same stages)."""
        from gperc_core.parallel.pipeline import measure_block_times

        box: list[Any] = [None]
        if self.ctx.rank == 0:
            rows = torch.arange(min(len(self.train_data), self.cfg.batch_size))
            batch = to_device(self.train_data.batch(rows, trim=False), self.device)
            box[0] = measure_block_times(self.model, batch["input_array"], batch.get("attention_mask"),
                                         batch.get("output_array"), repeats=2)
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @property
    def is_main(self) -> bool:
        """True on global rank 0, which prints and writes."""
        return self.ctx.rank == 0

    def _share(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """This replica's rows of the global ``batch``, padded to a multiple of the microbatches with
        repeats of the first row whose targets are ignored."""
        n = _rows(batch)
        replicas, r = self.layout.dp_size, self.layout.dp_rank
        per = math.ceil(n / replicas)
        per = math.ceil(per / self.microbatches) * self.microbatches
        start, stop = min(n, r * per), min(n, (r + 1) * per)
        real = stop - start
        idx = torch.cat([torch.arange(start, stop), torch.zeros(per - real, dtype=torch.long)])
        share = {k: _take(v, idx) for k, v in batch.items()}
        if real < per:
            target = share["target"].clone()
            target[real:] = IGNORE
            share["target"] = target
        return share

    def _set_lr(self) -> None:
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # ----------------------------------------------------------------- one step
    def train_step(self, batch: Mapping[str, Any]) -> float:
        """One optimisation step on the global ``batch``; returns its loss (the same on every rank)."""
        share = to_device(self._share(batch), self.device)
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        if self.handle is not None:
            self.handle.train()
            with self.autocast():
                loss = self.handle.step(share["input_array"], share["target"], share.get("attention_mask"),
                                        share.get("output_array"))
            if self.cfg.grad_clip > 0:
                self.handle.clip_grad_norm_(self.cfg.grad_clip)
        else:
            loss = self._ddp_backward(share)
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return float(loss)

    def _ddp_backward(self, share: Mapping[str, Any]) -> torch.Tensor:
        """Forward and backward of this replica's share under DDP; returns the global batch loss."""
        self.model.train()
        target = share["target"]
        count = (target != IGNORE).sum().to(torch.float64)
        dist.all_reduce(count)
        normaliser = max(float(count), 1.0) / self.ctx.world_size  # DDP averages: sum_r (sum_r / N) * R / R
        with self.autocast():
            logits = self.ddp(share["input_array"], share.get("attention_mask"), share.get("output_array"))
        local = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                ignore_index=IGNORE, label_smoothing=self.cfg.label_smoothing,
                                reduction="sum") / normaliser
        local.backward()
        total = local.detach().clone()
        dist.all_reduce(total)
        return total / self.ctx.world_size

    def evaluate(self, data: Any = None) -> dict[str, Any]:
        """Evaluate on ``data`` (default the eval split); through the pipeline when there is one. Every
        rank returns the same metrics."""
        data = self.eval_data if data is None else data
        if self.handle is None:
            return super().evaluate(data)
        self.handle.eval()
        acc = MetricAccumulator()
        n, m = len(data), self.microbatches
        size = math.ceil(self.cfg.eval_batch_size / m) * m
        for start in range(0, n, size):
            idx = torch.arange(start, min(n, start + size))
            real = len(idx)
            padded = torch.cat([idx, idx[:1].repeat(math.ceil(real / m) * m - real)])
            batch = to_device(data.batch(padded, trim=False), self.device)
            with self.autocast():
                logits = self.handle.predict(batch["input_array"], batch.get("attention_mask"),
                                             batch.get("output_array"))
            acc.update(logits[:real], batch["target"][:real])
        return acc.compute()

    # ----------------------------------------------------------------- checkpoints
    def _gather_model(self) -> None:
        """Make ``self.model`` hold the full, current weights on every rank (pipeline mode)."""
        if self.handle is not None:
            state = self.handle.full_state_dict()
            self.model.load_state_dict({k: v.to(self.device) for k, v in state.items()}, strict=True)

    def _full_optimizer(self) -> torch.optim.Optimizer:
        """The single-process optimizer of the full model, holding every rank's optimizer state."""
        if self.handle is None:
            return self.optimizer
        names = {id(p): n for n, p in self.handle.named_parameters()}
        local = {names[id(p)]: {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in st.items()}
                 for p, st in self.optimizer.state.items()}
        parts: list[Any] = [None] * self.layout.pp_size
        dist.all_gather_object(parts, local, group=self.layout.pp_group)
        merged = {k: v for part in parts for k, v in part.items()}
        full = self._build_optimizer()
        for group, own in zip(full.param_groups, self.optimizer.param_groups):
            group["lr"] = own["lr"]
        for name, param in self.model.named_parameters():
            if name in merged:
                full.state[param] = {k: (v.to(param.device) if isinstance(v, torch.Tensor) and v.dim() else v)
                                     for k, v in merged[name].items()}
        return full

    def save_checkpoint(self) -> Path:
        """Write the resumable checkpoint in the single-process layout from rank 0 (a collective).

        When a `KeyboardInterrupt` (Ctrl-C, or torchrun's SIGTERM after a peer failed) is being handled,
        nothing is gathered: peers may be gone; the run resumes from its last checkpoint."""
        from gperc_core.io import runs

        if isinstance(sys.exc_info()[1], KeyboardInterrupt):
            if self.is_main:
                print(f"gperc: distributed run interrupted at step {self.step}; resume from the last checkpoint "
                      f"with --resume {self.out_dir}", file=sys.stderr)
            return runs.latest_checkpoint(self.out_dir) or self.out_dir
        self._gather_model()
        optimizer = self._full_optimizer()
        path = runs.checkpoints_dir(self.out_dir) / f"step-{self.step:08d}"
        if self.is_main:
            path = runs.write_checkpoint(self.out_dir, self.step, self.model, optimizer, self.trainer_state(),
                                         keep=self.cfg.keep_checkpoints)
        dist.barrier()
        return path

    def save_model(self) -> Path:
        """Write the final model (full weights, single-process layout) from rank 0."""
        self._gather_model()
        if self.is_main:
            super().save_model()
        dist.barrier()
        return self.out_dir

    def load_checkpoint(self, path: str | Path | None = None) -> int:
        """Resume from a single-process-layout checkpoint (written by any mode); returns the step."""
        if self.handle is None:
            return super().load_checkpoint(path)
        own = self.optimizer
        self.optimizer = self._build_optimizer()  # the full optimizer the checkpoint was written from
        try:
            step = super().load_checkpoint(path)  # weights go into self.model, shared with the stages
            full = self.optimizer
        finally:
            self.optimizer = own
        for group, loaded in zip(own.param_groups, full.param_groups):
            group["lr"] = loaded["lr"]
        for param in self.handle.parameters():
            if param in full.state:
                own.state[param] = full.state[param]
        return step

    # ----------------------------------------------------------------- output only on rank 0
    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            super().log(record)

    def plot(self) -> Path | None:
        return super().plot() if self.is_main else None

    def _progress(self, stop: int):
        return super()._progress(stop) if self.is_main else None


def run(args: argparse.Namespace) -> int:
    """Run ``gperc train`` on this rank of a torchrun job: set up the process group and the layout,
    then train with `DistributedTrainer` through the ordinary ``train`` command. Returns its exit code."""
    from gperc_core.cli import train as train_cli

    pp = int(args.pipeline_stages or 1)
    device = args.device if getattr(args, "device", None) not in (None, "auto") else None
    ctx = init_distributed(timeout_s=args.dist_timeout, device=device)  # --device cpu: gloo even with GPUs
    with failure_guard(ctx):
        layout = build_layout(pp, ctx)
        if not args.out and not args.resume:  # one run folder for every rank
            chosen = [str(train_cli.default_out(args.task)) if args.task else None]
            dist.broadcast_object_list(chosen, src=0)
            args.out = chosen[0]

        def factory(task: Any, out_dir: Any) -> DistributedTrainer:
            return DistributedTrainer(task, out_dir, ctx, layout, schedule=args.schedule,
                                      microbatches=args.microbatches, stages_per_rank=args.stages_per_rank,
                                      balance=args.balance)

        args.trainer_factory = factory
        if ctx.rank == 0:
            print(f"distributed: {ctx.world_size} ranks ({ctx.backend}), {layout.dp_size} data-parallel "
                  f"replica(s) x {layout.pp_size} pipeline rank(s), schedule {args.schedule if pp > 1 else 'ddp'}, "
                  f"timeout {ctx.timeout_s:.0f} s", flush=True)
            code = train_cli.run(args)
        else:
            with open(os.devnull, "w") as sink:
                stdout, sys.stdout = sys.stdout, sink
                try:
                    code = train_cli.run(args)
                finally:
                    sys.stdout = stdout
    from gperc_core.parallel.distributed import shutdown

    shutdown()
    return code
