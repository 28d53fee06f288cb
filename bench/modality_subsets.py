"""Evaluate trained multimodal runs given every modality, each modality alone, and the ensemble of
those passes (`fusion.modality_ensemble`), on the validation and the test split.

The evidence behind a card's ``modality_ensemble`` setting: each run folder's best weights (chosen on
validation during training) are evaluated once per subset; choose on the validation columns.

    .venv/bin/python bench/tasks.py multimodal/av-digits --seeds 8 --runs-dir /tmp/av --results /tmp/av.json \\
        --markdown /tmp/av.md
    .venv/bin/python bench/modality_subsets.py /tmp/av/multimodal-av-digits/seed-* --out bench/sweeps/NAME
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_splits import accuracy, load_run, split_log_probs, tables, write  # noqa: E402


def subset_log_probs(model: Any, data: Any, only: str | None, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-probabilities [n, classes], targets [n])`` of ``model`` on the split ``data``, given every
    modality (``only=None``) or the modality ``only`` alone (bf16 autocast, as the trainer evaluates)."""
    from gperc_core.model.fusion import subset_masks

    def logits_of(batch: dict[str, Any]) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            masks = subset_masks(model.modalities, batch["input_array"], batch.get("attention_mask"), only)
            fused, mask = model.fuse(batch["input_array"], masks)
            return model.perceiver(fused, mask, batch.get("output_array"))

    return split_log_probs(data, logits_of, batch_size)


def evaluate_run(run_dir: Path) -> dict[str, dict[str, float]]:
    """Accuracy per split (validation, test) and per subset (``all``, each modality, ``ensemble``)."""
    _, model, splits = load_run(run_dir)
    if not hasattr(model, "fuse"):
        raise SystemExit(f"{run_dir}: expected a multimodal (fused) run, got a {type(model).__name__}")
    out: dict[str, dict[str, float]] = {}
    for split, data in splits.items():
        passes = {"all": subset_log_probs(model, data, None)}
        passes.update({m: subset_log_probs(model, data, m) for m in model.modalities})
        target = passes["all"][1]
        acc = {k: accuracy(lp, target) for k, (lp, _) in passes.items()}
        acc["ensemble"] = accuracy(sum(lp for lp, _ in passes.values()) / len(passes), target)
        out[split] = acc
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders of one multimodal card (e.g. its seeds)")
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    results = {str(r): evaluate_run(r) for r in args.runs}

    def sign(split: str) -> str:
        pairs = [(r[split]["ensemble"], r[split]["all"]) for r in results.values()]
        return f"{sum(a > b for a, b in pairs)} / {sum(a == b for a, b in pairs)} / {sum(a < b for a, b in pairs)}"

    columns = list(next(iter(results.values()))["validation"])
    write(results, tables(results, columns, ("ensemble better than all / equal / worse", sign)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
