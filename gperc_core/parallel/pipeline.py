"""Pipeline-parallel Perceiver on `torch.distributed.pipelining`, with hand-built stages.

The model is the sequence of blocks ``[encoder, processor 0 .. processor L-1, decoder]``.
`plan_stages` cuts it into S contiguous stages balanced by a cost model (or by measured per-block
times), the encoder pinned to the first stage and the decoder to the last. `cut_stage` makes a
stage as torchtitan does: a deep copy of the model with every unit it does not own set to ``None``
(the model's ``forward`` passes through absent blocks), so its state-dict keys are exactly the
single-process model's keys for its blocks and checkpoints move freely between single-process,
data-parallel and pipeline runs. `build_pipeline` builds the model with only this rank's units
materialised (the rest on the meta device), each unit seeded on its own so that its weights
equal the single-process model's. Only latents ``[b, n, d]`` cross
stage boundaries; the input array and attention mask go to the encoder's rank, the output array
(and the mask, for ``decoder_reduction='eot'``) to the decoder's rank, as keyword inputs the
schedule splits into microbatches (sentinel tensors included).

`build_pipeline` returns a `PipelineHandle`: ``step(input_array, target, attention_mask=None,
output_array=None)`` runs one forward/backward over all microbatches with the chosen schedule
(GPipe, 1F1B, interleaved 1F1B) and returns the batch loss on every rank. Every rank of a
pipeline is given the same batch; shapes and values are checked on every rank before any
communication, so a bad batch fails everywhere at once instead of hanging a peer.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import ConfigError, InputError, describe
from gperc_core.model.perceiver import INPUT_UNITS, Perceiver, validate_inputs
from gperc_core.model.sentinels import resolve_mask, resolve_output_array
from gperc_core.train.device import to_device
from gperc_core.train.loss import MaskedCrossEntropy

__all__ = ["PipelinePlan", "plan_stages", "block_costs", "measure_block_times", "stage_units", "cut_stage",
           "PipelineHandle", "build_pipeline", "check_single_model", "SCHEDULES", "REFUSED_SCHEDULES"]

SCHEDULES: dict[str, str] = {"gpipe": "ScheduleGPipe", "1f1b": "Schedule1F1B",
                             "interleaved": "ScheduleInterleaved1F1B"}
"""Schedules gperc runs, by name (``interleaved`` is interleaved 1F1B with several stages per rank)."""

_ALIASES = {"interleaved1f1b": "interleaved", "interleaved-1f1b": "interleaved", "interleaved_1f1b": "interleaved"}

REFUSED_SCHEDULES: dict[str, str] = {
    name: ("zero-bubble schedules split each backward into an input-gradient pass and a deferred "
           "weight-gradient pass that re-walks the autograd graph; gperc does not run them because "
           "their gradients are not covered by its equal-to-single-process tests. Use '1f1b' or 'interleaved'")
    for name in ("zbv", "zbvzerobubble", "zero-bubble", "zerobubble", "interleavedzerobubble",
                 "interleaved-zero-bubble", "zb1p")
}
REFUSED_SCHEDULES.update({
    name: ("DualPipeV needs a V-shaped placement (first and last stage on one rank) and overlaps the "
           "forward of one microbatch with the split backward of another; gperc does not run it because "
           "its gradients are not covered by its equal-to-single-process tests. Use '1f1b' or 'interleaved'")
    for name in ("dualpipev", "dualpipe", "dual-pipe-v")
})


# ============================================================================================ planner
def _block_names(config: PerceiverConfig) -> tuple[str, ...]:
    return ("encoder", *(f"processor.{i}" for i in range(config.num_layers)), "decoder")


def block_costs(config: PerceiverConfig, input_len: int | None = None, output_len: int | None = None) -> list[float]:
    """Return the modelled cost of each block ``[encoder, processor..., decoder]`` in multiply-adds per sample.

    Encoder ∝ m·n·d (cross-attention) plus its projections and MLP, each processor ∝ n²·d plus
    ``4·n·d²`` projections and its MLP, decoder ∝ o·n·e plus its projections, MLP and classifier.
    ``input_len``/``output_len`` default to the config's (the longest inputs and outputs).
    """
    m = int(input_len or config.input_len)
    if config.input_stem:  # the encoder reads the stem's grid; the convolutions are not modelled
        m = max(1, round(m * config.encoded_len / config.input_len))
    o = int(output_len or config.output_len)
    n, d, e, c = int(config.latent_len), int(config.latent_dim), int(config.output_dim), int(config.input_embed_dim)
    encoder = 2 * m * n * d + 2 * m * c * d + 2 * n * d * d + 2 * n * d * config.encoder_ffw
    processor = 2 * n * n * d + 4 * n * d * d + 2 * n * d * config.processor_ffw
    decoder = 2 * o * n * e + 2 * n * d * e + 2 * o * e * e + 2 * o * e * config.decoder_ffw + o * e * config.num_classes
    return [float(encoder), *([float(processor)] * config.num_layers), float(decoder)]


@dataclass(frozen=True)
class PipelinePlan:
    """Where the blocks ``[encoder, processor..., decoder]`` go: ``bounds[s] = (start, stop)`` is the
    half-open range of block indices of stage ``s``; ``costs`` are the per-block costs the cut balanced
    (``source`` says whether they were modelled or measured)."""

    num_stages: int
    blocks: tuple[str, ...]
    costs: tuple[float, ...]
    bounds: tuple[tuple[int, int], ...]
    source: str

    def stage_blocks(self, stage: int) -> tuple[str, ...]:
        """Return the names of the blocks of ``stage``."""
        start, stop = self.bounds[stage]
        return self.blocks[start:stop]

    @property
    def stage_costs(self) -> tuple[float, ...]:
        """Sum of the block costs of each stage."""
        return tuple(sum(self.costs[a:b]) for a, b in self.bounds)

    @property
    def imbalance(self) -> float:
        """Largest stage cost over the mean stage cost (1.0 is perfectly balanced)."""
        costs = self.stage_costs
        return max(costs) / (sum(costs) / len(costs))

    def describe(self) -> str:
        """One line per stage: its blocks and its share of the total cost."""
        total = sum(self.costs)
        lines = [f"pipeline plan ({self.source} costs, imbalance {self.imbalance:.2f}):"]
        for s, cost in enumerate(self.stage_costs):
            names = self.stage_blocks(s)
            label = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
            lines.append(f"  stage {s}: {label} ({len(names)} blocks, {100 * cost / total:.1f}% of the cost)")
        return "\n".join(lines)


def _units(config: PerceiverConfig) -> list[tuple[int, int]]:
    """Indivisible runs of blocks: every block alone, except that shared processor weights form one run."""
    last = config.num_layers + 1
    if (config.share_weights or config.get("processor_blocks")) and config.num_layers > 0:
        return [(0, 1), (1, last), (last, last + 1)]
    return [(i, i + 1) for i in range(last + 1)]


def _linear_partition(weights: Sequence[float], parts: int) -> list[int]:
    """Cut ``weights`` into ``parts`` contiguous non-empty runs minimising the largest run sum; returns
    the start index of each run."""
    count = len(weights)
    prefix = [0.0]
    for w in weights:
        prefix.append(prefix[-1] + w)
    inf = float("inf")
    best = [[inf] * (count + 1) for _ in range(parts + 1)]
    cut = [[0] * (count + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for k in range(1, parts + 1):
        for i in range(k, count - (parts - k) + 1):
            for j in range(k - 1, i):
                value = max(best[k - 1][j], prefix[i] - prefix[j])
                if value < best[k][i]:
                    best[k][i], cut[k][i] = value, j
    starts, i = [], count
    for k in range(parts, 0, -1):
        i = cut[k][i]
        starts.append(i)
    return starts[::-1]


def plan_stages(config: PerceiverConfig, num_stages: int, *, costs: Sequence[float] | None = None,
                input_len: int | None = None, output_len: int | None = None) -> PipelinePlan:
    """Cut ``[encoder, processor..., decoder]`` into ``num_stages`` contiguous stages of balanced cost.

    ``costs`` are measured per-block times (see `measure_block_times`), one per block; without them
    the cost model of `block_costs` is used. The encoder is always in stage 0 and the decoder in the
    last stage. With ``share_weights`` the processor layers run one shared block and stay in one
    stage. Raises `ConfigError` when the stages cannot be formed.
    """
    if not isinstance(config, PerceiverConfig):
        raise ConfigError(f"config: expected a PerceiverConfig, got {type(config).__name__}")
    names = _block_names(config)
    units = _units(config)
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
        raise ConfigError(f"num_stages: expected a positive integer, got {num_stages!r}")
    if num_stages > 1 and (config.get("tie_output_embedding") or config.get("encoder_only")):
        field = "tie_output_embedding" if config.get("tie_output_embedding") else "encoder_only"
        raise ConfigError(f"num_stages: expected 1 for a model with {field}=True (the pipeline stages need an "
                          f"encoder stage and a decoder stage of their own), got {num_stages}")
    if num_stages > len(units):
        if config.share_weights:
            raise ConfigError(f"num_stages: share_weights=True runs one shared processor block for all "
                              f"{config.num_layers} layers, which cannot be split across pipeline stages, so at "
                              f"most {len(units)} stages are possible, got {num_stages} (set share_weights=False)")
        raise ConfigError(f"num_stages: expected at most {len(units)} (encoder + {config.num_layers} processor "
                          f"layers + decoder), got {num_stages}")
    if costs is None:
        weights, source = block_costs(config, input_len, output_len), "modelled"
    else:
        weights, source = [float(c) for c in costs], "measured"
        if len(weights) != len(names) or not all(w > 0 for w in weights):
            raise ConfigError(f"costs: expected {len(names)} positive per-block costs (encoder, "
                              f"{config.num_layers} processors, decoder), got {list(costs)!r}")
    unit_weights = [sum(weights[a:b]) for a, b in units]
    starts = _linear_partition(unit_weights, num_stages)
    ends = starts[1:] + [len(units)]
    bounds = tuple((units[s][0], units[e - 1][1]) for s, e in zip(starts, ends))
    return PipelinePlan(num_stages=num_stages, blocks=names, costs=tuple(weights), bounds=bounds, source=source)


def measure_block_times(model: nn.Module, input_array: Any, attention_mask: Any = None,
                        output_array: torch.Tensor | None = None, repeats: int = 3) -> list[float]:
    """Time forward + backward of each block ``[encoder, processor..., decoder]`` on ``model``'s device.

    ``model`` is a `Perceiver` or a multimodal `ModalityFusion` (its inputs are fused first, untimed).
    Returns the median seconds per block over ``repeats`` runs (after one warm-up), for
    ``plan_stages(config, S, costs=...)``; leaves no gradients behind.
    """
    if not isinstance(model, Perceiver) and hasattr(model, "fuse"):
        with torch.no_grad():
            input_array, attention_mask = model.fuse(input_array, attention_mask)
        model = model.perceiver
    attention_mask, output_array = validate_inputs(model.config, input_array, attention_mask, output_array)
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
        sync()
        start = time.perf_counter()
        out = fn()
        out.float().sum().backward()
        sync()
        return time.perf_counter() - start, out.detach()

    samples: list[list[float]] = []
    for _ in range(repeats + 1):
        row = []
        seconds, latents = timed(lambda: model.encode(input_array, attention_mask)[0])
        row.append(seconds)
        for layer in range(model.config.num_layers):
            x = latents.requires_grad_(True)
            seconds, latents = timed(lambda: model.processor_at(layer)(x)[0])
            row.append(seconds)
        x = latents.requires_grad_(True)
        seconds, _ = timed(lambda: model.decode(x, output_array, attention_mask)[0])
        row.append(seconds)
        samples.append(row)
    model.zero_grad(set_to_none=True)
    rows = samples[1:]
    return [sorted(col)[len(col) // 2] for col in zip(*rows)]


# ============================================================================================ stages
def stage_units(config: PerceiverConfig, start: int, stop: int) -> set[str]:
    """The names of the units (see `gperc_core.model.perceiver.build_unit`) that the stage owning blocks
    ``[start, stop)`` of ``[encoder, processor..., decoder]`` holds, under the single-process module
    paths: the encoder with the input side of the embeddings (and, fused, the modality projections)
    in the first stage, the decoder with the output queries in the last."""
    last_block = config.num_layers + 1
    if not 0 <= start < stop <= last_block + 1:
        raise ConfigError(f"stage blocks: expected 0 <= start < stop <= {last_block + 1}, got [{start}, {stop})")
    fused = bool(config.get("fusion"))
    prefix = "perceiver." if fused else ""
    units: set[str] = set()
    if start == 0:
        units |= {f"{prefix}embeddings.{name}" for name in INPUT_UNITS} | {f"{prefix}encoder"}
        if fused:
            units |= {"projections", "modality_embedding"}
    layers = [layer for layer in range(config.num_layers) if start <= layer + 1 < stop]
    if config.share_weights or config.get("processor_blocks"):
        if layers and len(layers) != config.num_layers:
            raise ConfigError("stage blocks: shared processor blocks (share_weights / processor_blocks) keep all "
                              f"processor layers in one stage, got layers {layers} of {config.num_layers}")
        if layers:
            units |= {f"{prefix}processors.{i}" for i in range(config.n_processor_blocks)}
    else:
        units |= {f"{prefix}processors.{layer}" for layer in layers}
    if stop == last_block + 1:
        units |= {f"{prefix}decoder", f"{prefix}embeddings.output_query"}
    return units


def _delete(root: nn.Module, name: str) -> None:
    """Set the module, parameter or buffer at the dotted path ``name`` of ``root`` to ``None`` (absent ones pass)."""
    path, _, leaf = name.rpartition(".")
    try:
        parent = root.get_submodule(path) if path else root
    except AttributeError:
        return
    if parent is None:
        return
    if leaf in parent._modules or leaf in parent._parameters or leaf in parent._buffers:
        setattr(parent, leaf, None)


def cut_stage(model: nn.Module, start: int, stop: int) -> nn.Module:
    """Return the pipeline stage of ``model`` (a `Perceiver` or a multimodal `ModalityFusion`) that owns
    blocks ``[start, stop)``: a deep copy with every other unit set to ``None`` (as torchtitan cuts its
    stages), so its state-dict keys are the single-process keys of its blocks and its ``forward`` passes
    through the absent ones (see `Perceiver.forward`). Units ``model`` built on the meta device are
    copied for free; the stage must not hold any (a `ConfigError` names them)."""
    config = model.config
    keep = stage_units(config, start, stop)
    stage = copy.deepcopy(model)
    for name in stage_units(config, 0, config.num_layers + 2) - keep:
        _delete(stage, name)
    perceiver = stage.perceiver if config.get("fusion") else stage
    if config.get("fusion"):
        stage.ensemble = False  # a stage runs one pass; the handle's predict runs the modality ensemble
    embeddings = perceiver.embeddings
    if not any(True for _ in embeddings.parameters()) and not any(True for _ in embeddings.buffers()):
        perceiver.embeddings = None
    meta = [k for k, v in [*stage.named_parameters(), *stage.named_buffers()] if v.is_meta]
    if meta:
        raise ConfigError(f"stage [{start}, {stop}): expected its units built with weights, got {meta[:5]} "
                          "on the meta device (build the model with materialise covering the stage's units)")
    return stage


def merge_dicts(local: Mapping[str, Any], group: Any, *, everywhere: bool = True) -> dict[str, Any]:
    """The union of every rank's ``local`` dict over ``group`` (a collective): on every rank, or with
    ``everywhere=False`` only on the group's first rank (the others get ``local`` back)."""
    size = dist.get_world_size(group)
    if size == 1:
        return dict(local)
    if everywhere:
        parts: list[Any] | None = [None] * size
        dist.all_gather_object(parts, dict(local), group=group)
    else:
        first = dist.get_rank(group) == 0
        parts = [None] * size if first else None
        dist.gather_object(dict(local), parts, group=group, group_dst=0)
        if not first:
            return dict(local)
    return {k: v for part in parts for k, v in part.items()}


class _StageRunner(nn.Module):
    """What the schedule calls for one stage: the stage with the inputs it uses. A rank that holds
    several stages (interleaved) is given the first stage's and the last stage's keyword inputs for
    all of them; a later stage takes the latents of the previous one instead of ``input_array``."""

    def __init__(self, stage: nn.Module, first: bool) -> None:
        super().__init__()
        self.stage, self.first = stage, first

    def forward(self, *latents: torch.Tensor, input_array: Any = None, attention_mask: Any = None,
                output_array: Any = None) -> torch.Tensor:
        if self.first:
            return self.stage(input_array, attention_mask, output_array)
        return self.stage(latents[0], attention_mask, output_array)


# ============================================================================================ the handle
def _schedule_class(name: str) -> type:
    import torch.distributed.pipelining as pipelining

    return getattr(pipelining, SCHEDULES[name])


def normalise_schedule(name: Any) -> str:
    """Return the canonical schedule name for ``name``; raise `ConfigError` for refused or unknown ones."""
    if not isinstance(name, str):
        raise ConfigError(f"schedule: expected one of {sorted(SCHEDULES)}, got {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in REFUSED_SCHEDULES:
        raise ConfigError(f"schedule: {name!r} is refused: {REFUSED_SCHEDULES[key]}")
    if key not in SCHEDULES:
        raise ConfigError(f"schedule: expected one of {sorted(SCHEDULES)}, got {name!r}")
    return key


class PipelineHandle:
    """A pipeline-parallel Perceiver on this rank: its stage modules, the schedule, and the step.

    Every rank of a pipeline calls the same methods with the same batch. ``step`` returns the batch
    loss on every rank (and accumulates this rank's parameter gradients); the optimizer is built on
    `parameters` and stepped by the caller. `state_dict` holds this rank's keys, `full_state_dict`
    every key, both in the single-process layout.
    """

    def __init__(self, config: PerceiverConfig, plan: PipelinePlan, stages: list[nn.Module], stage_ids: list[int],
                 schedule: str, microbatches: int, group: Any, dp_group: Any, device: torch.device,
                 loss: str | MaskedCrossEntropy | Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 allow_reshape: bool,
                 label_smoothing: float = 0.0, find_unused_parameters: bool | None = None) -> None:
        self.config = config
        self.plan = plan
        self.schedule_name = schedule
        self.microbatches = microbatches
        self.group = group
        self.dp_group = dp_group
        self.device = device
        self.allow_reshape = allow_reshape
        self.stage_ids = stage_ids
        self.modules = stages
        self.pp_size = dist.get_world_size(group)
        self.pp_rank = dist.get_rank(group)
        self.dp_size = dist.get_world_size(dp_group) if dp_group is not None else 1
        self.num_stages = plan.num_stages
        self.last_rank = (self.num_stages - 1) % self.pp_size
        self.is_first = 0 in stage_ids
        self.is_last = (self.num_stages - 1) in stage_ids
        self.runners: list[nn.Module] = [_StageRunner(m, sid == 0) for m, sid in zip(stages, stage_ids)]
        if dp_group is not None:
            from gperc_core.parallel.distributed import wrap_ddp

            # the decoder stage's learned output queries go unused in batches that bring an output array
            last = self.num_stages - 1
            self.runners = [wrap_ddp(runner, group=dp_group, device=device,
                                     find_unused_parameters=(sid == last) if find_unused_parameters is None
                                     else bool(find_unused_parameters))
                            for runner, sid in zip(self.runners, stage_ids)]
        if isinstance(loss, MaskedCrossEntropy):
            self._loss: Callable[..., torch.Tensor] = loss
            self._builtin_loss = True
        elif callable(loss):
            self._loss = loss
            self._builtin_loss = False
        else:
            if loss != "cross_entropy":
                raise ConfigError(f"loss: expected 'cross_entropy', a MaskedCrossEntropy or a callable, got {loss!r}")
            self._loss = MaskedCrossEntropy(label_smoothing)
            self._builtin_loss = True
        self._train_schedule: Any = None
        self._eval_schedule: Any = None
        self._signature: tuple | None = None
        self._eval_signature: tuple | None = None
        self.last_outputs: torch.Tensor | None = None
        self.fusion: Any = None
        if config.get("fusion"):
            from types import SimpleNamespace

            from gperc_core.model.fusion import fusion_spec

            spec = fusion_spec(config)
            self.fusion = SimpleNamespace(spec=spec, modalities=list(spec))

    # ------------------------------------------------------------------ parameters and state
    def parameters(self) -> Iterator[nn.Parameter]:
        """This rank's parameters (those of its stages), for the optimizer."""
        for module in self.modules:
            yield from module.parameters()

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """This rank's parameters under their single-process names."""
        for module in self.modules:
            yield from module.named_parameters()

    def train(self, mode: bool = True) -> "PipelineHandle":
        """Set the stage modules to training (or evaluation) mode; returns the handle."""
        for module in self.modules:
            module.train(mode)
        return self

    def eval(self) -> "PipelineHandle":
        """Set the stage modules to evaluation mode; returns the handle."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear this rank's gradients."""
        for module in self.modules:
            module.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """This rank's persistent state under single-process keys."""
        state: dict[str, torch.Tensor] = {}
        for module in self.modules:
            state.update(module.state_dict())
        return state

    def full_state_dict(self, everywhere: bool = True) -> dict[str, torch.Tensor]:
        """Every key of the model (gathered from the pipeline's ranks, on CPU), in the single-process layout;
        with ``everywhere=False`` only on the pipeline's first rank (the others get their own keys).

        A collective over the pipeline group: every rank of the pipeline must call it.
        """
        local = {k: v.detach().to("cpu") for k, v in self.state_dict().items()}
        return merge_dicts(local, self.group, everywhere=everywhere)

    def load_state_dict(self, state: Mapping[str, torch.Tensor], source: str = "state") -> None:
        """Load this rank's keys from a full single-process ``state``; a missing or mis-shaped key is a
        `CheckpointError` naming it. Keys of other stages are ignored."""
        from gperc_core.io.checkpoint import load_state_checked

        for module in self.modules:
            own = module.state_dict()
            part = {k: state[k] for k in own if k in state}
            load_state_checked(module, part, source)

    def save(self, directory: Any) -> Any:
        """Write a single-process checkpoint (``config.json`` + ``model.safetensors``) from global rank 0
        of the pipeline; a collective over the pipeline group. Returns the folder."""
        from gperc_core.io.checkpoint import save_model
        from gperc_core.train.strategy import StateView

        state = self.full_state_dict()
        if self.pp_rank == 0 and (self.dp_group is None or dist.get_rank(self.dp_group) == 0):
            save_model(StateView(self.config, state), directory)
        return directory

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip the gradients of the whole pipeline to a total 2-norm of ``max_norm``; returns the norm
        before clipping (the same on every rank). A collective over the pipeline group."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        local = torch.zeros((), device=self.device, dtype=torch.float32)
        for g in grads:
            local += g.detach().float().pow(2).sum()
        if self.pp_size > 1:
            dist.all_reduce(local, group=self.group)
        norm = local.sqrt()
        scale = (float(max_norm) / (norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.to(g.dtype))
        return norm

    # ------------------------------------------------------------------ validation
    def _logits_shape(self, batch: int, output_array: torch.Tensor | None) -> tuple[int, ...]:
        c = self.config
        if c.decoder_reduction is not None:
            return (batch, c.num_classes)
        o = output_array.shape[1] if output_array is not None else c.output_len
        return (batch, o, c.num_classes)

    def _check_batch(self, input_array: Any, attention_mask: Any, output_array: Any) -> tuple[int, tuple[int, ...]]:
        if self.fusion is not None:
            from gperc_core.model.fusion import ModalityFusion

            ModalityFusion._check(self.fusion, input_array, attention_mask)
            batch = int(next(iter(input_array.values())).shape[0])
            output_array = resolve_output_array(output_array)
            if output_array is not None and (
                    not isinstance(output_array, torch.Tensor) or output_array.dim() != 3
                    or output_array.shape[0] != batch or output_array.shape[2] != self.config.output_dim):
                raise InputError(f"output_array: expected a float tensor [{batch}, o, {self.config.output_dim}] "
                                 f"(or the [{batch}] sentinel), got {describe(output_array)}")
        else:
            validate_inputs(self.config, input_array, attention_mask, output_array)
            batch = int(input_array.shape[0])
        if batch % self.microbatches:
            raise InputError(f"input_array: expected a batch size divisible by microbatches={self.microbatches}, "
                             f"got {batch}")
        return batch, self._logits_shape(batch, resolve_output_array(output_array))

    def _check_target(self, target: Any, logits_shape: tuple[int, ...]) -> None:
        if not isinstance(target, torch.Tensor):
            raise InputError(f"target: expected a tensor, got {describe(target)}")
        if self._builtin_loss:
            expected = logits_shape[:-1]
            soft = target.dtype.is_floating_point and tuple(target.shape) == logits_shape and len(logits_shape) == 2
            if not soft and (tuple(target.shape) != expected or target.dtype.is_floating_point):
                raise InputError(f"target: expected integer class ids of shape {list(expected)} (or class "
                                 f"probabilities of shape {list(logits_shape)}), got {describe(target)}")
        elif target.shape[0] != logits_shape[0]:
            raise InputError(f"target: expected {logits_shape[0]} rows (the batch size), got {describe(target)}")

    def _stage_kwargs(self, input_array: Any, attention_mask: Any, output_array: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.is_first:
            kwargs["input_array"] = input_array
        mask_needed = self.is_first or (self.is_last and self.config.decoder_reduction == "eot")
        if self.fusion is not None and isinstance(attention_mask, torch.Tensor):
            attention_mask = resolve_mask(attention_mask)  # a fused model takes a dict of masks or None
        if mask_needed and attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if self.is_last and isinstance(output_array, torch.Tensor):
            kwargs["output_array"] = output_array
        return to_device(kwargs, self.device)

    def _new_schedule(self, training: bool) -> Any:
        from torch.distributed.pipelining import PipelineStage

        cls = _schedule_class(self.schedule_name)
        stages = [PipelineStage(runner, stage_index=sid, num_stages=self.num_stages, device=self.device,
                                group=self.group) for runner, sid in zip(self.runners, self.stage_ids)]
        loss_fn = self._loss if training else None
        scale = not self._builtin_loss
        if self.schedule_name == "interleaved":
            return cls(stages, n_microbatches=self.microbatches, loss_fn=loss_fn, scale_grads=scale)
        return cls(stages[0], n_microbatches=self.microbatches, loss_fn=loss_fn, scale_grads=scale)

    def _schedule_for(self, signature: tuple, training: bool) -> Any:
        attr_sched, attr_sig = ("_train_schedule", "_signature") if training else ("_eval_schedule", "_eval_signature")
        current = getattr(self, attr_sig)
        if current is not None and current != signature:
            if not self.allow_reshape:
                raise InputError(f"input shapes: the pipeline was set up for batch {current[0]} with logits "
                                 f"{list(current[1])}, got batch {signature[0]} with logits {list(signature[1])}; "
                                 "keep batch and output shapes fixed (drop the last partial batch) or build the "
                                 "pipeline with allow_reshape=True")
            setattr(self, attr_sched, None)
        if getattr(self, attr_sched) is None:
            setattr(self, attr_sched, self._new_schedule(training))
            setattr(self, attr_sig, signature)
        return getattr(self, attr_sched)

    # ------------------------------------------------------------------ running
    def step(self, input_array: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor | None = None,
             output_array: torch.Tensor | None = None) -> torch.Tensor:
        """Run forward and backward of one batch over all microbatches; return the batch loss (a detached
        scalar, the same on every rank; averaged over data-parallel replicas).

        Gradients accumulate into this rank's parameters (summed over microbatches to exactly the
        single-process batch gradient). Every check runs before any communication.
        """
        batch, logits_shape = self._check_batch(input_array, attention_mask, output_array)
        self._check_target(target, logits_shape)
        schedule = self._schedule_for((batch, logits_shape), training=True)
        if self._builtin_loss:
            count = torch.tensor(self._loss.count(target), dtype=torch.float64)
            if self.dp_group is not None:
                count = count.to(self.device)
                dist.all_reduce(count, group=self.dp_group)
                count = count / self.dp_size
            self._loss.normaliser = max(float(count), 1.0)
        kwargs = self._stage_kwargs(input_array, attention_mask, output_array)
        losses: list[torch.Tensor] = []
        if self.is_last:
            outputs = schedule.step(target=target.to(self.device), losses=losses, **kwargs)
            self.last_outputs = outputs.detach() if isinstance(outputs, torch.Tensor) else None
            total = torch.stack([loss.detach().float() for loss in losses]).sum()
            if not self._builtin_loss:
                total = total / len(losses)
        else:
            schedule.step(**kwargs)
            self.last_outputs = None
            total = torch.zeros((), dtype=torch.float32, device=self.device)
        total = total.to(self.device)
        if self.pp_size > 1:
            dist.broadcast(total, group=self.group, group_src=self.last_rank)
        if self.dp_group is not None:
            dist.all_reduce(total, group=self.dp_group)
            total = total / self.dp_size
        return total

    @torch.no_grad()
    def predict(self, input_array: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_array: torch.Tensor | None = None) -> torch.Tensor:
        """Forward only over all microbatches; return the logits on every rank of the pipeline (with
        ``modality_ensemble``, what the single-process model returns in evaluation: the mean
        log-probabilities of the passes given every modality and each alone, one pipeline pass each)."""
        if self.fusion is None or not self.config.get("modality_ensemble", False):
            return self._predict_once(input_array, attention_mask, output_array)
        from gperc_core.model.fusion import mean_log_probs, subset_masks

        self._check_batch(input_array, attention_mask, output_array)
        return mean_log_probs([self._predict_once(input_array, subset_masks(self.fusion.modalities, input_array,
                                                                          attention_mask, only), output_array)
                               for only in (None, *self.fusion.modalities)])

    def _predict_once(self, input_array: Any, attention_mask: Any, output_array: Any) -> torch.Tensor:
        """One forward pass over all microbatches; the logits on every rank of the pipeline."""
        batch, logits_shape = self._check_batch(input_array, attention_mask, output_array)
        schedule = self._schedule_for((batch, logits_shape), training=False)
        kwargs = self._stage_kwargs(input_array, attention_mask, output_array)
        out = schedule.step(**kwargs)
        if self.is_last:
            logits = out.detach().float().contiguous()
        else:
            logits = torch.empty(logits_shape, dtype=torch.float32, device=self.device)
        if self.pp_size > 1:
            dist.broadcast(logits, group=self.group, group_src=self.last_rank)
        return logits


# ============================================================================================ building
def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return value


def check_single_model(config: PerceiverConfig) -> None:
    """Raise `ConfigError` when ``config`` describes a deep ensemble (``ensemble_size`` > 1): pipeline stages
    split one model's layers."""
    if config.ensemble_size > 1:
        raise ConfigError(f"ensemble_size: expected 1 for a pipeline-parallel model (stages split one model's "
                          f"layers; train an ensemble in one process or with DDP), got {config.ensemble_size}")


def build_pipeline(config: PerceiverConfig, *, num_stages: int | None = None, schedule: str = "1f1b",
                   microbatches: int | None = None, group: Any = None, dp_group: Any = None,
                   device: str | torch.device | None = None,
                   loss: str | MaskedCrossEntropy | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "cross_entropy",
                   costs: Sequence[float] | None = None, model: Perceiver | None = None,
                   allow_reshape: bool = False, input_len: int | None = None,
                   output_len: int | None = None, label_smoothing: float = 0.0,
                   find_unused_parameters: bool | None = None) -> PipelineHandle:
    """Build this rank's part of a pipeline-parallel Perceiver and return its `PipelineHandle`.

    ``group`` is the pipeline's process group (default: the world), ``dp_group`` the data-parallel
    group of this rank's stages (its stage modules are wrapped in DDP over it). ``num_stages``
    defaults to the group size (twice it for ``schedule='interleaved'``; stage ``s`` lives on group
    rank ``s % size``); ``microbatches`` defaults to the number of stages. The weights come from
    ``model`` when given (e.g. a loaded checkpoint), else from ``Perceiver(config)`` with the config
    seed, so they equal the single-process model's; without ``model`` this rank builds only its stages'
    weights (the rest of the model on the meta device). ``loss`` is ``'cross_entropy'`` (`MaskedCrossEntropy`:
    targets of `IGNORE_INDEX` ignored, ``label_smoothing`` applied), a `MaskedCrossEntropy` to share, or a callable ``(logits, target) -> mean loss``
    per microbatch. ``allow_reshape`` lets a batch of another size or output length rebuild the
    schedule (a shape-inference round) instead of raising. ``find_unused_parameters`` is DDP's flag for
    the decoder stage (default True: batches with an output array leave the learned queries unused;
    pass False when no batch brings one). Raises
    `ConfigError` for an impossible layout, before any communication.
    """
    if not isinstance(config, PerceiverConfig):
        raise ConfigError(f"config: expected a PerceiverConfig, got {type(config).__name__}")
    check_single_model(config.validate())
    name = normalise_schedule(schedule)
    if not dist.is_available() or not dist.is_initialized():
        raise ConfigError("build_pipeline: expected an initialised torch.distributed process group, got none "
                          "(call gperc_core.parallel.distributed.init_distributed() or launch with torchrun)")
    size = dist.get_world_size(group)
    rank = dist.get_rank(group)
    if num_stages is None:
        num_stages = 2 * size if name == "interleaved" else size
    _check_positive("num_stages", num_stages)
    if name == "interleaved":
        if num_stages % size:
            raise ConfigError(f"num_stages: interleaved 1F1B places num_stages / ranks stages on each rank, so it "
                              f"expects a multiple of the {size} pipeline ranks, got {num_stages}")
    elif num_stages != size:
        raise ConfigError(f"num_stages: schedule {name!r} runs one stage per rank, so it expects the {size} "
                          f"pipeline ranks, got {num_stages} (use schedule='interleaved' for more)")
    if microbatches is None:
        microbatches = num_stages
    _check_positive("microbatches", microbatches)
    if name == "1f1b" and microbatches < num_stages:
        raise ConfigError(f"microbatches: 1F1B expects at least one microbatch per stage ({num_stages}), "
                          f"got {microbatches}")
    if name == "interleaved":
        rounds = max(1, microbatches // size)
        if microbatches % rounds:
            raise ConfigError(f"microbatches: interleaved 1F1B expects a multiple of {rounds} rounds "
                              f"(microbatches // {size} ranks), got {microbatches}")
    if config.get("fusion") and config.decoder_reduction == "eot":
        raise ConfigError("decoder_reduction: 'eot' of a multimodal (fused) model is not supported in a pipeline, "
                          "got 'eot' with fusion")
    plan = plan_stages(config, num_stages, costs=costs, input_len=input_len, output_len=output_len)
    stage_ids = [s for s in range(num_stages) if s % size == rank]
    owned = set().union(*(stage_units(config, *plan.bounds[s]) for s in stage_ids))
    if model is None:
        from gperc_core.model.build import model_for_config

        model = model_for_config(config, materialise=owned.__contains__)
    elif getattr(model, "config", None) != config or not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a Perceiver (or ModalityFusion) built from the same config, "
                          f"got {type(model).__name__}")
    device = torch.device(device) if device is not None else (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else torch.device("cpu"))
    stages = [cut_stage(model, *plan.bounds[s]).to(device) for s in stage_ids]
    return PipelineHandle(config, plan, stages, stage_ids, name, microbatches, group, dp_group, device, loss,
                          bool(allow_reshape), label_smoothing, find_unused_parameters)
