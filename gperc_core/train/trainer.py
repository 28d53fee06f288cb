"""The single-process trainer: AdamW with linear warmup and cosine decay, bf16 autocast where the
hardware supports it, optional ``torch.compile``, gradient clipping, evaluation every epoch, a tqdm
bar with loss and samples/s, ``metrics.jsonl``, atomic resumable checkpoints and a PNG of the curves.

The pieces a distributed or pipelined driver reuses are separate methods: `Trainer.train_step`
(one optimisation step on one batch), `Trainer.evaluate`, `Trainer.save_checkpoint` and
`Trainer.load_checkpoint`. Data order is a pure function of ``(seed, epoch)`` and the learning rate
a pure function of the step, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from gperc_core.io import checkpoint as ckpt
from gperc_core.io import runs
from gperc_core.config.training import TrainingConfig
from gperc_core.errors import CheckpointError, ConfigError, TaskError
from gperc_core.train.metrics import MetricAccumulator, append_jsonl, classification_loss


# --------------------------------------------------------------------- hardware
def resolve_device(name: str) -> torch.device:
    """Return the device for ``name`` ("auto" = CUDA when available, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"training.device: expected 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device: expected an available device, got {name!r} (no CUDA here)")
    return device


def bf16_supported(device: torch.device) -> bool:
    """True when bf16 autocast is fast on ``device``: CUDA with bf16, or a CPU with native bf16
    instructions (AVX-512 BF16 / AMX), checked by oneDNN and a tiny bf16 matmul."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        a = torch.ones(4, 4, dtype=torch.bfloat16)
        return bool((a @ a).float().sum() == 64)
    except (AttributeError, RuntimeError):
        return False


CPU_BF16_MIN_WIDTH = 512
"""On CPUs, automatic bf16 needs a latent width of at least this: at the cards' widths (64-128) bf16
autocast measured 15 % to 6x slower than fp32 on the build machine's AVX-512-BF16 CPU (casts and
small oneDNN kernels cost more than the faster matmuls save)."""


def auto_bf16(device: torch.device, config: Any) -> bool:
    """Whether ``training.bf16 = None`` (auto) turns bf16 autocast on: CUDA with bf16 support, or a CPU
    with native bf16 for models of latent width ``CPU_BF16_MIN_WIDTH`` and more."""
    if not bf16_supported(device):
        return False
    return device.type == "cuda" or int(getattr(config, "latent_dim", 0)) >= CPU_BF16_MIN_WIDTH


def to_device(value: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (nested dicts allowed) to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


class _TerminateAsInterrupt:
    """Context manager turning SIGTERM into KeyboardInterrupt so a killed run checkpoints like Ctrl-C."""

    def __enter__(self) -> "_TerminateAsInterrupt":
        self.previous = None
        with contextlib.suppress(ValueError):  # not the main thread
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    @staticmethod
    def _handle(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, data: Any, batch_size: int = 256, device: torch.device | None = None,
                   bf16: bool = False, trim: bool = True) -> dict[str, Any]:
    """Return ``loss``, ``accuracy``, ``perplexity`` and ``samples`` of ``model`` on ``data`` (a task split)."""
    device = device or next(model.parameters()).device
    model.eval()
    acc = MetricAccumulator()
    n = len(data)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    for start in range(0, n, batch_size):
        batch = to_device(data.batch(torch.arange(start, min(n, start + batch_size)), trim=trim), device)
        with autocast:
            logits = model(batch["input_array"], batch.get("attention_mask"), batch.get("output_array"))
        acc.update(logits, batch["target"])
    return acc.compute()


# --------------------------------------------------------------------- the trainer
class Trainer:
    """Trains ``task``'s model and writes the run folder ``out_dir``.

    ``task`` is a `gperc_core.data.tasks.Task` (anything with ``name``, ``card``, ``config``,
    ``training``, ``build_model()``, ``split(name)`` and ``record()``). ``training`` replaces the
    task's `TrainingConfig`; ``model`` replaces ``task.build_model()``.
    """

    def __init__(self, task: Any, out_dir: str | Path, training: TrainingConfig | None = None,
                 model: torch.nn.Module | None = None) -> None:
        self.task = task
        self.cfg = (training or task.training).validate()
        self.out_dir = Path(out_dir)
        self.device = resolve_device(self.cfg.device)
        self.model = (model if model is not None else task.build_model()).to(self.device)
        self.bf16 = auto_bf16(self.device, self.model.config) if self.cfg.bf16 is None else bool(self.cfg.bf16)
        self.forward_model = torch.compile(self.model) if self.cfg.compile else self.model
        self.optimizer = self._build_optimizer()
        self.train_data = task.split(task.card.train_split)
        self.eval_data = task.split(task.card.eval_split)
        self.steps_per_epoch = math.ceil(len(self.train_data) / self.cfg.batch_size)
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        self.step = 0
        self.train_time = 0.0
        self.samples_seen = 0
        self.last_eval: dict[str, Any] = {}
        self.trim = not self.cfg.compile

    # ----------------------------------------------------------------- setup
    def _build_optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for _, param in self.model.named_parameters():
            if param.requires_grad:
                (decay if param.dim() >= 2 else no_decay).append(param)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(0.9, 0.999), foreach=False)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimisation step ``step`` (0-based): linear warmup, then cosine decay."""
        total = max(1, self.total_steps)
        warmup = int(self.cfg.warmup_fraction * total)
        if step < warmup:
            return self.cfg.lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        floor = self.cfg.lr * self.cfg.min_lr_ratio
        return floor + (self.cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of the forward pass (bf16 when enabled, else a no-op)."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # ----------------------------------------------------------------- data
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The shuffled sample order of ``epoch``: a pure function of ``(seed, epoch)``."""
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_data), generator=generator)

    def train_batches(self, start_step: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(step, batch)`` from ``start_step`` to the end of training (batches are tensor slices)."""
        bs = self.cfg.batch_size
        for epoch in range(start_step // self.steps_per_epoch, self.cfg.epochs):
            order = self.epoch_order(epoch)
            first = start_step - epoch * self.steps_per_epoch if epoch == start_step // self.steps_per_epoch else 0
            for i in range(max(0, first), self.steps_per_epoch):
                idx = order[i * bs:(i + 1) * bs]
                yield epoch * self.steps_per_epoch + i, self.train_data.batch(idx, trim=self.trim)

    # ----------------------------------------------------------------- one step
    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Return the model's logits for ``batch`` (on the trainer's device, under autocast)."""
        with self.autocast():
            return self.forward_model(batch["input_array"], batch.get("attention_mask"), batch.get("output_array"))

    def train_step(self, batch: Mapping[str, Any]) -> float:
        """Run one optimisation step on ``batch`` at the current step's learning rate; returns the loss."""
        self.model.train()
        batch = to_device(batch, self.device)
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        logits = self.forward(batch)
        loss = classification_loss(logits, batch["target"], self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def evaluate(self, data: Any = None) -> dict[str, Any]:
        """Evaluate on ``data`` (a task split; default the card's eval split); returns the metrics dict."""
        return evaluate_model(self.forward_model, self.eval_data if data is None else data, self.cfg.eval_batch_size,
                              self.device, self.bf16, trim=self.trim)

    # ----------------------------------------------------------------- checkpoints
    def trainer_state(self) -> dict[str, Any]:
        """The JSON part of a checkpoint: step, counters and the settings it was trained with."""
        return {"step": self.step, "epoch": self.step / max(1, self.steps_per_epoch), "total_steps": self.total_steps,
                "train_time_s": self.train_time, "samples_seen": self.samples_seen, "task": self.task.name,
                "training": self.cfg.to_dict(), "last_eval": self.last_eval}

    def save_checkpoint(self) -> Path:
        """Write a resumable checkpoint of the current step (atomic: all or nothing); returns its folder."""
        return runs.write_checkpoint(self.out_dir, self.step, self.model, self.optimizer, self.trainer_state(),
                                     keep=self.cfg.keep_checkpoints)

    def save_model(self) -> Path:
        """Write the current weights and config as the run's final model (``config.json``, ``model.safetensors``)."""
        return ckpt.save_model(self.model, self.out_dir)

    def load_checkpoint(self, path: str | Path | None = None) -> int:
        """Restore model, optimizer, RNG and counters from ``path`` (default the run's latest checkpoint);
        returns the step. A checkpoint of another config is a `CheckpointError` naming the fields."""
        path = Path(path) if path is not None else runs.latest_checkpoint(self.out_dir)
        if path is None:
            raise CheckpointError(f"{self.out_dir}: expected a run folder with a checkpoint to resume, found none")
        data = runs.read_checkpoint(path, self.device)
        ours, theirs = self.model.config.to_dict(), data["config"].to_dict()
        diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        if diff:
            detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs now {ours.get(k)!r}" for k in diff[:5])
            raise CheckpointError(f"{path}: checkpoint from a different model config ({detail})")
        ckpt.load_state_checked(self.model, data["weights"], str(path / ckpt.WEIGHTS_FILE))
        try:
            self.optimizer.load_state_dict(data["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: optimizer state does not match the model ({exc})") from exc
        runs.set_rng_state(data["rng"])
        state = data["state"]
        self.step = int(state.get("step", 0))
        self.train_time = float(state.get("train_time_s", 0.0))
        self.samples_seen = int(state.get("samples_seen", 0))
        self.last_eval = dict(state.get("last_eval", {}))
        return self.step

    # ----------------------------------------------------------------- the loop
    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to the run's ``metrics.jsonl``."""
        append_jsonl(self.out_dir / runs.METRICS_FILE, record)

    def plot(self) -> Path | None:
        """Redraw ``curves.png`` from ``metrics.jsonl``; returns its path (``None`` when nothing to plot)."""
        from gperc_core.train.plotting import plot_curves

        return plot_curves(self.out_dir / runs.METRICS_FILE, self.out_dir / runs.PLOT_FILE, title=self.task.name)

    def run_eval(self, epoch: float) -> dict[str, Any]:
        """Evaluate, log the metrics line and keep it as ``last_eval``; returns it."""
        metrics = self.evaluate()
        record = {"split": "eval", "step": self.step, "epoch": round(epoch, 4), **metrics,
                  "train_time_s": round(self.train_time, 3)}
        self.log(record)
        self.last_eval = record
        return record

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train from the current step to the end (or to ``max_steps`` / ``training.max_steps``),
        evaluating and checkpointing every epoch, then write the final model and the plot.

        Returns ``{"step", "interrupted", "eval": last metrics, "train_time_s", "samples_per_s"}``.
        Ctrl-C or SIGTERM saves a resumable checkpoint first, then re-raises `KeyboardInterrupt`.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.task.write_record(self.out_dir)
        if self.step == 0:
            torch.manual_seed(self.cfg.seed)  # dropout of a fresh run; a resumed run restored its RNG state
        limit = max_steps if max_steps is not None else self.cfg.max_steps
        stop = min(self.total_steps, limit) if limit is not None else self.total_steps
        bar = self._progress(stop)
        window_loss, window_n, window_t = 0.0, 0, 0.0
        try:
            with _TerminateAsInterrupt():
                for step, batch in self.train_batches(self.step):
                    if step >= stop:
                        break
                    t0 = time.perf_counter()
                    loss = self.train_step(batch)
                    dt = time.perf_counter() - t0
                    b = int(batch["target"].shape[0])
                    self.train_time += dt
                    self.samples_seen += b
                    window_loss, window_n, window_t = window_loss + loss * b, window_n + b, window_t + dt
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{b / max(dt, 1e-9):.0f}")
                    if self.step % self.cfg.log_every == 0 or self.step == stop:
                        self.log({"split": "train", "step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                                  "loss": window_loss / window_n, "lr": self.lr_at(self.step - 1),
                                  "samples_per_s": window_n / max(window_t, 1e-9)})
                        window_loss, window_n, window_t = 0.0, 0, 0.0
                    end_of_epoch = self.step % self.steps_per_epoch == 0
                    if end_of_epoch:
                        self.run_eval(self.step / self.steps_per_epoch)
                        if bar is not None:
                            bar.write(f"epoch {self.step // self.steps_per_epoch}: eval loss "
                                      f"{self.last_eval['loss']:.4f} accuracy {self.last_eval['accuracy']:.4f}")
                    if end_of_epoch or (self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0):
                        self.save_checkpoint()
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            self.save_checkpoint()
            self.plot()
            raise
        if bar is not None:
            bar.close()
        if self.last_eval.get("step") != self.step:
            self.run_eval(self.step / self.steps_per_epoch)
        self.save_checkpoint()
        self.save_model()
        self.plot()
        return {"step": self.step, "total_steps": self.total_steps, "eval": self.last_eval,
                "train_time_s": self.train_time, "samples_per_s": self.samples_seen / max(self.train_time, 1e-9)}

    def _progress(self, stop: int):
        if not self.cfg.progress or self.step >= stop:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=stop, initial=self.step, desc=self.task.name, unit="step", file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)


__all__ = ["TrainingConfig", "Trainer", "resolve_device", "bf16_supported", "to_device", "evaluate_model", "auto_bf16"]
