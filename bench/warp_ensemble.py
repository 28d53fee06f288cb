"""Test-time frequency-warp ensembles for audio runs: would averaging over warped copies help an unseen voice?

Each run folder's best weights (chosen on validation during training) are evaluated on the validation and
the test split once per warp factor: the mel-bin axis of every clip resampled by the factor
(`gperc_plugin_audio.augment.resample_axis`, as the ``freq_warp`` augmentation does in training), then
the log-probabilities averaged over a set of factors. Choose on the validation columns; the result says
whether a test-time warp ensemble is worth building into evaluation.

    .venv/bin/python bench/warp_ensemble.py runs/sweep-spoken-lovo-tta/runs/audio-spoken-digits/* \\
        --out bench/sweeps/NAME
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_splits import accuracy, load_run, split_log_probs, tables, write  # noqa: E402

ENSEMBLES: dict[str, tuple[float, ...]] = {
    "none": (1.0,),
    "0.95-1.05 (3)": (0.95, 1.0, 1.05),
    "0.9-1.1 (3)": (0.9, 1.0, 1.1),
    "0.87-1.15 (5)": (0.87, 0.93, 1.0, 1.07, 1.15),
    "0.85-1.15 (7)": (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15),
}


def warped_log_probs(model: Any, data: Any, factor: float, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-probabilities [n, classes], targets [n])`` of ``model`` on the split ``data`` with each clip's
    bin axis (the last) scaled by ``factor``."""
    from gperc_core.train.strategy import run_model
    from gperc_plugin_audio.augment import resample_axis

    def logits_of(batch: dict[str, Any]) -> torch.Tensor:
        if factor != 1.0:
            batch["input_array"] = resample_axis(batch["input_array"], factor, axis=2, fill=None)
        return run_model(model, batch)

    return split_log_probs(data, logits_of, batch_size)


def evaluate_run(run_dir: Path) -> dict[str, dict[str, float]]:
    """Accuracy per split (validation, test) and per warp ensemble of `ENSEMBLES`."""
    task, model, splits = load_run(run_dir)
    if list(task.card.modalities) != ["audio"]:
        raise SystemExit(f"{run_dir}: expected a run of an audio card, got modalities {task.card.modalities}")
    factors = sorted({f for fs in ENSEMBLES.values() for f in fs})
    out: dict[str, dict[str, float]] = {}
    for split, data in splits.items():
        passes = {f: warped_log_probs(model, data, f) for f in factors}
        target = passes[1.0][1]
        out[split] = {name: accuracy(sum(passes[f][0] for f in fs), target) for name, fs in ENSEMBLES.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders of one audio card (seeds, held-out voices)")
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    results = {str(r): evaluate_run(r) for r in args.runs}
    write(results, tables(results, list(ENSEMBLES)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
