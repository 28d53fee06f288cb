"""The trainer: AdamW with linear warmup and cosine decay, bf16 autocast where the hardware supports
it, optional ``torch.compile``, gradient clipping, evaluation every epoch, a tqdm bar with loss and
samples/s, ``metrics.jsonl``, atomic resumable checkpoints and a PNG of the curves.

Model selection: every epoch evaluates the task's validation split (held out of the training split,
or the dataset's own: `gperc_core.data.cards.TaskCard.validation_split`); the best weights by the
validation metric (accuracy; ties: the lower loss) are kept in ``RUN/best/``; optional early stopping
(``training.early_stopping_patience``) stops after that many evaluations without a better one. At the
end the best weights are evaluated once on the test split (the card's ``eval_split``): that is the
reported figure, and they become the run's model (``RUN/model.safetensors``). The best-so-far state
is part of every checkpoint, so a resumed run chooses as an uninterrupted one would.

One `Trainer` for every mode: a `gperc_core.train.strategy.Strategy` owns where the model lives,
the backward of a batch, gradient clipping, the evaluation forward and the full state dict (the
single-process strategy by default; `gperc_core.parallel.make_strategy` gives DDP, pipeline and
pipeline x DDP). Only the strategy's main process writes logs, plots and checkpoints, always in the
single-process layout. Training batches come from the task's `gperc_core.data.loader.TrainLoader`
(DataLoader workers, each data-parallel replica reading its own share, per-epoch transforms); the
batches of an epoch are a pure function of ``(seed, epoch)`` and the learning rate a pure function
of the step, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import errno
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from gperc_core.config.training import TrainingConfig
from gperc_core.config.bounds import check_model_bounds
from gperc_core.data.cards import SELECTION_METRICS
from gperc_core.errors import CheckpointError
from gperc_core.io import checkpoint as ckpt
from gperc_core.io import runs
from gperc_core.train.device import (CPU_BF16_MIN_WIDTH, auto_bf16, bf16_supported, resolve_device, to_device,
                                     warn_if_emulated_bf16)
from gperc_core.train.loss import MaskedCrossEntropy
from gperc_core.train.ema import WeightEMA
from gperc_core.train.metrics import MetricAccumulator, append_jsonl
from gperc_core.train.mixup import Mixup, check_mixable
from gperc_core.train.strategy import SingleProcess, StateView, Strategy, run_model


BEST_DIR = "best"
"""The run's sub-folder holding the best weights so far (``config.json``, ``model.safetensors``,
``validation.json``: the validation record they were chosen on)."""


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


def evaluate_batches(predict: Callable[[Mapping[str, Any]], torch.Tensor], data: Any, batch_size: int = 256,
                     row_multiple: int = 1, trim: bool = True) -> dict[str, Any]:
    """Return ``loss``, ``accuracy``, ``perplexity`` and ``samples`` of ``predict`` (batch -> logits) on
    ``data`` (a task split). Each batch is padded to a multiple of ``row_multiple`` rows with repeats
    of its first row, whose predictions are dropped."""
    acc = MetricAccumulator()
    n, m = len(data), max(1, int(row_multiple))
    size = math.ceil(batch_size / m) * m
    for start in range(0, n, size):
        idx = torch.arange(start, min(n, start + size))
        real = len(idx)
        padded = torch.cat([idx, idx[:1].repeat(math.ceil(real / m) * m - real)])
        batch = data.batch(padded, trim=trim)
        logits = predict(batch)
        acc.update(logits[:real], batch["target"][:real].to(logits.device))
    return acc.compute()


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, data: Any, batch_size: int = 256, device: torch.device | None = None,
                   bf16: bool = False, trim: bool = True) -> dict[str, Any]:
    """Return ``loss``, ``accuracy``, ``perplexity`` and ``samples`` of ``model`` on ``data`` (a task split)."""
    device = device or next(model.parameters()).device
    model.eval()

    def predict(batch: Mapping[str, Any]) -> torch.Tensor:
        batch = to_device(batch, device)
        autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            return run_model(model, batch)

    return evaluate_batches(predict, data, batch_size, trim=trim)


def _named_state(state_dict: Mapping[str, Any], names: list[list[str]]) -> dict[str, Any]:
    """The per-parameter state of an optimizer ``state_dict`` keyed by parameter name (``names``: the
    names of each group's parameters, in order)."""
    state = state_dict["state"]
    return {name: state[index] for group, group_names in zip(state_dict["param_groups"], names)
            for index, name in zip(group["params"], group_names) if index in state}


def _laid_out(groups: list[Mapping[str, Any]], names: list[list[str]], named: Mapping[str, Any]) -> dict[str, Any]:
    """An optimizer state_dict whose groups hold the parameters ``names`` (numbered in order), with the
    settings of ``groups`` and the per-parameter state ``named`` (keyed by name)."""
    state, laid, index = {}, [], 0
    for group, group_names in zip(groups, names):
        ids = list(range(index, index + len(group_names)))
        state.update({i: named[n] for i, n in zip(ids, group_names) if n in named})
        laid.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        index += len(group_names)
    return {"state": state, "param_groups": laid}


# --------------------------------------------------------------------- the trainer
class Trainer:
    """Trains ``task``'s model and writes the run folder ``out_dir``.

    ``task`` is a `gperc_core.data.tasks.Task` (anything with ``name``, ``card``, ``config``,
    ``training``, ``infer_config()``, ``build_model()``, ``split(name)`` (the validation and test splits),
    ``train_loader(...)`` (the training batches, `gperc_core.data.loader.TrainLoader`) and
    ``write_record(dir)``).
    ``training`` replaces the task's `TrainingConfig`; ``strategy`` says how training runs (default:
    one process on ``training.device``).
    """

    def __init__(self, task: Any, out_dir: str | Path, training: TrainingConfig | None = None, *,
                 strategy: Strategy | None = None) -> None:
        self.task = task
        self.cfg = (training or task.training).validate()
        self.out_dir = Path(out_dir)
        self.strategy = strategy if strategy is not None else SingleProcess(resolve_device(self.cfg.device))
        self.device = self.strategy.device
        self.config = task.config if task.config is not None else task.infer_config()
        check_model_bounds(self.config.to_dict(), where="model.")  # refused by name before anything is built
        card = task.card
        self.split_names = {"train": card.train_split, "validation": getattr(card, "validation_split", card.eval_split),
                            "test": card.eval_split}
        self.metric = getattr(card, "selection_metric", "accuracy")
        self.eval_data = task.split(self.split_names["validation"])  # evaluated every epoch; selection
        self._test_data: Any = None
        self.trim = not (self.cfg.compile or self.strategy.fixed_shapes)
        self.loss = MaskedCrossEntropy(self.cfg.label_smoothing, members=self.config.ensemble_size)
        self.loader = task.train_loader(trim=self.trim, fixed_shapes=not self.trim,
                                        sentinels=self.strategy.sentinels, pin_memory=self.device.type == "cuda")
        probe = self.loader.probe(self.cfg.batch_size)
        self.strategy.prepare(task.build_model, self.config, self.cfg, self.loss, probe)
        self.loader.shard(*self.strategy.data_shard(), self.strategy.row_multiple)
        self.model = self.strategy.module
        self.bf16 = auto_bf16(self.device, self.config) if self.cfg.bf16 is None else bool(self.cfg.bf16)
        if self.bf16 and self.strategy.is_main:
            warn_if_emulated_bf16(self.device)
        self.optimizer = self._build_optimizer()
        self.ema = WeightEMA(self.strategy.named_parameters(), self.cfg.ema_decay) if self.cfg.ema_decay else None
        self.mixup = self._build_mixup(probe)
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        self.step = 0
        self.train_time = 0.0
        self.samples_seen = 0
        self.last_eval: dict[str, Any] = {}  # the last validation record
        self.best: dict[str, Any] = {}  # the validation record of the best weights so far (RUN/best/)
        self.bad_evals = 0  # evaluations in a row without a better validation metric
        self.stopped_early = False
        self.test_result: dict[str, Any] = {}  # the test record of the last completed fit()
        self.tensorboard: Any = None  # a TensorBoardLog while fit() runs with training.tensorboard

    @property
    def test_data(self) -> Any:
        """The test split (the card's ``eval_split``; built on first use, at the end of training)."""
        if self._test_data is None:
            self._test_data = self.task.split(self.split_names["test"])
        return self._test_data

    @property
    def train_data(self) -> Any:
        """The training split as in-memory tensors (`TaskData`; built on first use). Training itself
        reads `loader`, never this."""
        return self.task.split(self.task.card.train_split)

    @property
    def is_main(self) -> bool:
        """True on the process that prints and writes (always, in a single process)."""
        return self.strategy.is_main

    # ----------------------------------------------------------------- setup
    @staticmethod
    def _param_groups(named: Iterator[tuple[str, torch.nn.Parameter]]) -> list[list[tuple[str, torch.nn.Parameter]]]:
        """The optimizer's groups: weight-decayed (2-D and up) and not, each in model order."""
        decay, no_decay = [], []
        for name, param in named:
            if param.requires_grad:
                (decay if param.dim() >= 2 else no_decay).append((name, param))
        return [decay, no_decay]

    def _build_mixup(self, probe: Mapping[str, Any]) -> Mixup | None:
        """The batch mixer of ``training.mixup`` (``None`` when off); refuses a task whose batches
        (``probe``) cannot be mixed, before training starts."""
        if not self.cfg.mixup:
            return None
        check_mixable(probe)
        return Mixup(self.cfg.mixup, self.config.num_classes, self.cfg.seed)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        self.group_names = [[n for n, _ in g] for g in self._param_groups(self.strategy.named_parameters())]
        params = dict(self.strategy.named_parameters())
        groups = [{"params": [params[n] for n in self.group_names[0]], "weight_decay": self.cfg.weight_decay},
                  {"params": [params[n] for n in self.group_names[1]], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(0.9, 0.999), foreach=False)

    def _full_group_names(self) -> list[list[str]]:
        """The optimizer groups' parameter names of the whole (single-process) model, from a meta build."""
        if not hasattr(self, "_full_names"):
            from gperc_core.model.build import model_for_config

            with torch.device("meta"):
                full = model_for_config(self.config)
            self._full_names = [[n for n, _ in g] for g in self._param_groups(full.named_parameters())]
        return self._full_names

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
        return self.loader.sampler.order(epoch)

    def train_batches(self, start_step: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(step, batch)`` from ``start_step`` to the end of training: this process's share of
        each global batch, from the loader (batches before ``start_step`` are skipped, not read)."""
        spe = self.steps_per_epoch
        first_epoch = start_step // spe
        for epoch in range(first_epoch, self.cfg.epochs):
            first = start_step - epoch * spe if epoch == first_epoch else 0
            for i, batch in enumerate(self.loader.epoch(epoch, first), start=first):
                yield epoch * spe + i, batch

    # ----------------------------------------------------------------- one step
    def train_step(self, batch: Mapping[str, Any]) -> float:
        """Run one optimisation step on the global ``batch`` at the current step's learning rate; returns
        the batch loss (the same on every process)."""
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        if self.mixup is not None:
            batch = self.mixup(batch, self.step)
        loss = self.strategy.backward(batch, self.autocast)
        if self.cfg.grad_clip > 0:
            self.strategy.clip_grad_norm_(self.cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update()
        self.step += 1
        return float(loss)

    def evaluate(self, data: Any = None) -> dict[str, Any]:
        """Evaluate on ``data`` (a task split; default the validation split); returns the metrics dict
        (the same on every process)."""
        return evaluate_batches(lambda batch: self.strategy.predict(batch, self.autocast),
                                self.eval_data if data is None else data, self.cfg.eval_batch_size,
                                self.strategy.row_multiple, trim=self.trim)

    # ----------------------------------------------------------------- checkpoints
    def trainer_state(self) -> dict[str, Any]:
        """The JSON part of a checkpoint: step, counters and the settings it was trained with."""
        return {"step": self.step, "epoch": self.step / max(1, self.steps_per_epoch), "total_steps": self.total_steps,
                "train_time_s": self.train_time, "samples_seen": self.samples_seen, "task": self.task.name,
                "training": self.cfg.to_dict(), "last_eval": self.last_eval, "best": self.best,
                "bad_evals": self.bad_evals, "stopped_early": self.stopped_early, "splits": self.split_names,
                "ema_updates": self.ema.updates if self.ema is not None else None}

    def full_optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state_dict in the single-process layout (every process's part; a collective)."""
        own = self.optimizer.state_dict()
        full_names = self._full_group_names()
        if full_names == self.group_names:
            return own
        named = {name: {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
                 for name, state in _named_state(own, self.group_names).items()}
        return _laid_out(own["param_groups"], full_names, self.strategy.gather_named(named))

    def _load_optimizer_state(self, full: Mapping[str, Any], path: Path) -> None:
        """Load this process's part of a single-process optimizer state_dict ``full``."""
        full_names = self._full_group_names()
        try:
            sizes = [len(g["params"]) for g in full["param_groups"]]
            if sizes != [len(n) for n in full_names]:
                raise ValueError(f"groups of {sizes} parameters, expected {[len(n) for n in full_names]}")
            own = _laid_out(full["param_groups"], self.group_names, _named_state(full, full_names))
            self.optimizer.load_state_dict(own)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{path}: optimizer state does not match the model ({exc})") from exc

    def save_checkpoint(self) -> Path:
        """Write a resumable checkpoint of the current step in the single-process layout (atomic: all or
        nothing) from the main process; a collective. Returns its folder.

        In a distributed run, when a `KeyboardInterrupt` (Ctrl-C, or torchrun's SIGTERM after a peer
        failed) is being handled, nothing is gathered: peers may be gone; the run resumes from its
        last checkpoint."""
        if self.strategy.world_size > 1 and isinstance(sys.exc_info()[1], KeyboardInterrupt):
            if self.is_main:
                print(f"gperc: distributed run interrupted at step {self.step}; resume from the last checkpoint "
                      f"with --resume {self.out_dir}", file=sys.stderr)
            return runs.latest_checkpoint(self.out_dir) or self.out_dir
        weights = StateView(self.config, self.strategy.full_state_dict())
        optimizer = StateView(None, self.full_optimizer_state())
        averages = self.strategy.gather_named(self.ema.state()) if self.ema is not None else None
        path = runs.checkpoints_dir(self.out_dir) / f"step-{self.step:08d}"
        if self.is_main:
            path = runs.write_checkpoint(self.out_dir, self.step, weights, optimizer, self.trainer_state(),
                                         keep=self.cfg.keep_checkpoints, averages=averages)
        self.strategy.barrier()
        return path

    def save_model(self) -> Path:
        """Write the current weights and config as the run's final model (``config.json``,
        ``model.safetensors``) from the main process; a collective. Returns the run folder."""
        weights = StateView(self.config, self.strategy.full_state_dict())
        if self.is_main:
            try:
                ckpt.save_model(weights, self.out_dir)
            except OSError as exc:  # a full disk: the checkpoint of this step, written first, is intact
                reason = "disk full" if exc.errno == errno.ENOSPC else f"{type(exc).__name__}: {exc}"
                raise CheckpointError(f"saving the final model into {self.out_dir} failed ({reason}); the "
                                      f"checkpoint {runs.latest_checkpoint(self.out_dir)} is intact: free space, "
                                      f"then --resume {self.out_dir} writes the model") from exc
        self.strategy.barrier()
        return self.out_dir

    def load_checkpoint(self, path: str | Path | None = None) -> int:
        """Restore weights, optimizer, RNG and counters from ``path`` (default the run's latest checkpoint,
        written by any mode); returns the step. A checkpoint of another config is a `CheckpointError`
        naming the fields."""
        path = Path(path) if path is not None else runs.latest_checkpoint(self.out_dir)
        if path is None:
            raise CheckpointError(f"{self.out_dir}: expected a run folder with a checkpoint to resume, found none")
        data = runs.read_checkpoint(path, self.device)
        runs.check_same_config(path, data["config"], self.config)
        self.strategy.load_state_dict(data["weights"], str(path / ckpt.WEIGHTS_FILE))
        self._load_optimizer_state(data["optimizer"], path)
        runs.set_rng_state(data["rng"])
        state = data["state"]
        if self.ema is not None:
            if data.get("averages") is None:
                raise CheckpointError(f"{path}: expected the weight averages of training.ema_decay="
                                      f"{self.cfg.ema_decay}, got a checkpoint trained without them")
            self.ema.load(data["averages"], int(state.get("ema_updates") or 0), str(path))
        self.step = int(state.get("step", 0))
        self.train_time = float(state.get("train_time_s", 0.0))
        self.samples_seen = int(state.get("samples_seen", 0))
        self.last_eval = dict(state.get("last_eval", {}))
        self.best = dict(state.get("best", {}))
        self.bad_evals = int(state.get("bad_evals", 0))
        self.stopped_early = bool(state.get("stopped_early", False))
        return self.step

    # ----------------------------------------------------------------- model selection
    def is_better(self, record: Mapping[str, Any]) -> bool:
        """True when validation ``record`` beats the best so far on the card's ``validation.metric``: a
        higher accuracy, or the same and a lower loss; with ``metric = "loss"`` a lower loss, or the same
        and a higher accuracy."""
        if not self.best:
            return True
        def score(r: Mapping[str, Any], name: str) -> float:  # higher is better
            return float(r[name]) if SELECTION_METRICS[name] == "max" else -float(r[name])

        tie = "loss" if self.metric == "accuracy" else "accuracy"
        new, old = score(record, self.metric), score(self.best, self.metric)
        return new > old or (new == old and score(record, tie) > score(self.best, tie))

    def save_best(self) -> Path:
        """Write the current weights as the best so far into ``RUN/best/`` (with ``validation.json``, the
        record they were chosen on) from the main process; a collective. Returns the folder."""
        folder = self.out_dir / BEST_DIR
        weights = StateView(self.config, self.strategy.full_state_dict())
        if self.is_main:
            ckpt.save_model(weights, folder)
            ckpt.atomic_write_json(folder / "validation.json", self.best)
        self.strategy.barrier()
        return folder

    def load_best(self) -> bool:
        """Load the weights of ``RUN/best/`` into the model (every process its part); returns False
        (weights unchanged) when there is none."""
        path = self.out_dir / BEST_DIR / ckpt.WEIGHTS_FILE
        if not path.is_file():
            return False
        self.strategy.load_state_dict(ckpt.load_tensors(path, self.device), str(path))
        return True

    def run_test(self) -> dict[str, Any]:
        """Evaluate the best weights (``RUN/best/``, chosen on the validation split) once on the test
        split, log the record (``split: "test"``), write them as the run's model, then put the current
        (last) weights back; returns the record (the same on every process)."""
        last = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        found = self.load_best()
        if not found and self.is_main:
            print(f"gperc: warning: {self.out_dir / BEST_DIR} holds no weights; the test split is evaluated "
                  f"with the last weights", file=sys.stderr)
        metrics = self.evaluate(self.test_data)
        best = self.best if found else self.last_eval
        record = {"split": "test", "name": self.split_names["test"], "step": self.step,
                  "epoch": round(self.step / max(1, self.steps_per_epoch), 4), **metrics,
                  "best_step": best.get("step"), "best_epoch": best.get("epoch"),
                  "validation_accuracy": best.get("accuracy"), "validation_loss": best.get("loss"),
                  "selected_on": self.metric, "train_time_s": round(self.train_time, 3)}
        self.log(record)
        self.save_model()
        self.model.load_state_dict(last)
        self.test_result = record
        return record

    # ----------------------------------------------------------------- the loop
    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to the run's ``metrics.jsonl`` (main process only), and to TensorBoard when on."""
        if self.is_main:
            append_jsonl(self.out_dir / runs.METRICS_FILE, record)
            if self.tensorboard is not None:
                self.tensorboard.log(record)

    def plot(self) -> Path | None:
        """Redraw ``curves.png`` from ``metrics.jsonl`` (main process only); returns its path (``None``
        when nothing to plot)."""
        from gperc_core.train.plotting import plot_curves

        if not self.is_main:
            return None
        return plot_curves(self.out_dir / runs.METRICS_FILE, self.out_dir / runs.PLOT_FILE, title=self.task.name)

    def run_eval(self, epoch: float, patience: bool = True) -> dict[str, Any]:
        """Evaluate the validation split, log the metrics line (``split: "validation"``), keep it as
        ``last_eval`` and, when it is the best so far, as ``best`` with the weights in ``RUN/best/``
        (else, with ``patience``, count it towards early stopping); returns it. With ``training.ema_decay``
        these are the averaged weights (`gperc_core.train.ema`)."""
        with self.ema.swapped() if self.ema is not None else contextlib.nullcontext():
            metrics = self.evaluate()
            record = {"split": "validation", "name": self.split_names["validation"], "step": self.step,
                      "epoch": round(epoch, 4), **metrics, "train_time_s": round(self.train_time, 3)}
            self.log(record)
            self.last_eval = record
            better = self.is_better(record)
            if better:
                self.best, self.bad_evals = dict(record), 0
                self.save_best()
        if not better and patience:
            self.bad_evals += 1
            patience = self.cfg.early_stopping_patience
            if patience is not None and self.bad_evals >= patience:
                self.stopped_early = True
        return record

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train from the current step to the end (or to ``max_steps`` / ``training.max_steps``),
        evaluating and checkpointing every epoch, then write the final model and the plot (and, with
        ``training.tensorboard``, the TensorBoard events: `gperc_core.train.tensorboard`).

        Returns ``{"step", "total_steps", "eval": the reported test record (the best weights on the test
        split), "test": the same, "validation": the best validation record (``step``, ``epoch``,
        ``accuracy``, ``loss``...), "last_validation": the last one, "best_step", "early_stopped",
        "splits": role -> split name, "train_time_s", "samples_per_s"}``; every record names its
        split (``split``: ``validation`` / ``test``, ``name``: the split's name).
        Ctrl-C or SIGTERM saves a resumable checkpoint first, then re-raises `KeyboardInterrupt`.
        The main process holds the run folder's writer lock (`gperc_core.io.lock`) throughout; another
        process writing the folder is a `RunLockedError`.
        """
        from gperc_core.io.lock import run_lock

        with run_lock(self.out_dir, enabled=self.is_main):
            return self._fit_locked(max_steps)

    def _fit_locked(self, max_steps: int | None) -> dict[str, Any]:
        """`fit` under the writer lock: the run record and the TensorBoard writer around `_fit`."""
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.task.write_record(self.out_dir)
            if self.cfg.tensorboard:
                from gperc_core.train.tensorboard import TensorBoardLog

                self.tensorboard = TensorBoardLog(self.out_dir, start_step=self.step)
                self.tensorboard.write_config(self.config.to_dict(), self.cfg.to_dict(),
                                              runs.read_task_file(self.out_dir))
        try:
            return self._fit(max_steps)
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
                self.tensorboard = None

    def _fit(self, max_steps: int | None) -> dict[str, Any]:
        """The body of `fit` (the run folder is ready)."""
        if self.step == 0:
            torch.manual_seed(self.cfg.seed)  # dropout of a fresh run; a resumed run restored its RNG state
        limit = max_steps if max_steps is not None else self.cfg.max_steps
        stop = min(self.total_steps, limit) if limit is not None else self.total_steps
        if self.stopped_early:  # a resumed run that had stopped early trains no further
            stop = min(stop, self.step)
        bar = self._progress(stop)
        window_loss, window_n, window_t = 0.0, 0, 0.0
        batches = self.train_batches(self.step)
        try:
            with _TerminateAsInterrupt():
                for step, batch in batches:
                    if step >= stop:
                        break
                    t0 = time.perf_counter()
                    loss = self.train_step(batch)
                    dt = time.perf_counter() - t0
                    b = self.loader.global_rows(step % self.steps_per_epoch)
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
                            bar.write(f"epoch {self.step // self.steps_per_epoch}: {self.split_names['validation']} "
                                      f"loss {self.last_eval['loss']:.4f} accuracy {self.last_eval['accuracy']:.4f}"
                                      f"{' (best)' if self.best.get('step') == self.step else ''}")
                    if end_of_epoch or (self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0):
                        self.save_checkpoint()
                    if self.stopped_early:
                        if bar is not None:
                            bar.write(f"early stopping: no better validation {self.metric} in "
                                      f"{self.bad_evals} evaluations (best at step {self.best.get('step')})")
                        break
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            batches.close()
            self.save_checkpoint()
            self.plot()
            raise
        batches.close()
        if bar is not None:
            bar.close()
        if self.last_eval.get("step") != self.step:  # a stop between epochs (max_steps): a candidate too,
            self.run_eval(self.step / self.steps_per_epoch, patience=False)  # not counted for early stopping
        self.save_checkpoint()  # the last weights and the best-so-far state: what a resume continues from
        test = self.run_test()
        self.plot()
        return {"step": self.step, "total_steps": self.total_steps, "eval": test, "test": test,
                "validation": self.best, "last_validation": self.last_eval, "best_step": self.best.get("step"),
                "early_stopped": self.stopped_early, "splits": dict(self.split_names),
                "train_time_s": self.train_time, "samples_per_s": self.samples_seen / max(self.train_time, 1e-9)}

    def _progress(self, stop: int):
        if not self.cfg.progress or self.step >= stop or not self.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=stop, initial=self.step, desc=self.task.name, unit="step", file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)


__all__ = ["TrainingConfig", "Trainer", "BEST_DIR", "resolve_device", "bf16_supported", "to_device", "evaluate_model",
           "evaluate_batches", "auto_bf16", "CPU_BF16_MIN_WIDTH"]
