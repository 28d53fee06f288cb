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
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch


@torch.no_grad()
def subset_log_probs(model: Any, data: Any, only: str | None, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-probabilities [n, classes], targets [n])`` of ``model`` on the split ``data``, given every
    modality (``only=None``) or the modality ``only`` alone (bf16 autocast, as the trainer evaluates)."""
    from gperc_core.model.fusion import subset_masks

    outs, targets = [], []
    for start in range(0, len(data), batch_size):
        batch = data.batch(torch.arange(start, min(len(data), start + batch_size)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            masks = subset_masks(model.modalities, batch["input_array"], batch.get("attention_mask"), only)
            fused, mask = model.fuse(batch["input_array"], masks)
            logits = model.perceiver(fused, mask, batch.get("output_array"))
        outs.append(torch.log_softmax(logits.float(), -1))
        targets.append(batch["target"])
    return torch.cat(outs), torch.cat(targets)


def evaluate_run(run_dir: Path) -> dict[str, dict[str, float]]:
    """Accuracy per split (validation, test) and per subset (``all``, each modality, ``ensemble``)."""
    from gperc_core.data.tasks import Task
    from gperc_core.model.fusion import load_any_model
    from gperc_core.train.trainer import Trainer

    task = Task.from_run(run_dir)
    model = load_any_model(run_dir / "best").eval()
    if not hasattr(model, "fuse"):
        raise SystemExit(f"{run_dir}: expected a multimodal (fused) run, got a {type(model).__name__}")
    trainer = Trainer(task, run_dir / "subsets-scratch")  # for its split objects only: nothing is written
    out: dict[str, dict[str, float]] = {}
    for split, data in (("validation", trainer.eval_data), ("test", trainer.test_data)):
        passes = {"all": subset_log_probs(model, data, None)}
        passes.update({m: subset_log_probs(model, data, m) for m in model.modalities})
        target = passes["all"][1]
        ensemble = sum(lp for lp, _ in passes.values()) / len(passes)
        acc = {k: (lp.argmax(-1) == target).float().mean().item() for k, (lp, _) in passes.items()}
        acc["ensemble"] = (ensemble.argmax(-1) == target).float().mean().item()
        out[split] = acc
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders of one multimodal card (e.g. its seeds)")
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    results = {str(r): evaluate_run(r) for r in args.runs}
    columns = list(next(iter(results.values()))["validation"])
    lines = ["| split | " + " | ".join(columns) + " | ensemble better than all / equal / worse |",
             "| --- |" + " ---: |" * (len(columns) + 1)]
    for split in ("validation", "test"):
        cols = {c: [r[split][c] for r in results.values()] for c in columns}
        cells = [f"{statistics.fmean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}" for v in cols.values()]
        pairs = list(zip(cols["ensemble"], cols["all"]))
        sign = f"{sum(a > b for a, b in pairs)} / {sum(a == b for a, b in pairs)} / {sum(a < b for a, b in pairs)}"
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {sign} |")
    per_run = ["", "| run | split | " + " | ".join(columns) + " |", "| --- | --- |" + " ---: |" * len(columns)]
    for run, r in results.items():
        for split in ("validation", "test"):
            per_run.append(f"| {Path(run).name} | {split} | " + " | ".join(f"{r[split][c]:.4f}" for c in columns) + " |")
    table = "\n".join(lines + per_run) + "\n"
    print(table)
    if args.out is not None:
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
        args.out.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
