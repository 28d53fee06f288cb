"""``gperc predict RUN_DIR INPUT ...``: predictions of a trained run for files of its task's modality.

Each INPUT is a file path; for a multimodal task it is ``modality=path,modality=path`` (one file per
modality). Files are read by the modality plugin's ``ModalitySpec.read_file``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gperc_core.errors import InputError


def register(subparsers: Any) -> None:
    """Add the ``predict`` command."""
    parser = subparsers.add_parser("predict", help="predict with a run folder for input files",
                                   description="Predict the class of each input file with a trained run. For a "
                                               "multimodal task write each input as modality=path,modality=path.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("inputs", metavar="INPUT", nargs="+")
    parser.add_argument("--top", type=int, default=1, help="how many classes to show per input (default 1)")
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    parser.add_argument("--json", action="store_true", help="one JSON object per input")
    parser.set_defaults(func=run)


def parse_inputs(inputs: list[str], modalities: list[str]) -> list[dict[str, str]]:
    """Return one dict modality -> path per INPUT (plain paths for a single-modality task)."""
    out = []
    for item in inputs:
        if len(modalities) == 1 and not item.startswith(f"{modalities[0]}="):
            out.append({modalities[0]: item})
            continue
        parts = dict(p.split("=", 1) for p in item.split(",") if "=" in p)
        if set(parts) != set(modalities):
            raise InputError(f"INPUT {item!r}: expected one file per modality as "
                             f"{','.join(f'{m}=PATH' for m in modalities)}, got modalities {sorted(parts)}")
        out.append(parts)
    return out


def run(args: argparse.Namespace) -> int:
    """Predict and print one line per input; returns 0."""
    import torch

    from gperc_core.cli.eval import load_run_model
    from gperc_core.plugins.manager import plugin_manager_from_args
    from gperc_core.io.runs import check_run_dir
    from gperc_core.data.tasks import Task
    from gperc_core.train.trainer import resolve_device

    if args.top < 1:
        raise InputError(f"--top: expected a positive integer, got {args.top}")
    run_dir = check_run_dir(args.run_dir)
    task = Task.from_run(run_dir, plugin_manager_from_args(args))
    files = parse_inputs(args.inputs, task.modalities)
    samples = [{m: task.read_file(m, path) for m, path in item.items()} for item in files]
    device = resolve_device(args.device)
    model, _ = load_run_model(run_dir, device=device)
    batch = task.encode(samples)
    from gperc_core.train.trainer import to_device

    batch = to_device(batch, device)
    model.eval()
    with torch.no_grad():
        probs = model(batch["input_array"], batch["attention_mask"], batch["output_array"]).float().softmax(-1)
    names = task.class_names
    for item, p in zip(args.inputs, probs):
        if p.dim() == 1:
            top = p.topk(min(args.top, p.shape[-1]))
            preds = [{"class": int(i), "label": names[int(i)] if names and int(i) < len(names) else str(int(i)),
                      "probability": round(float(v), 4)} for v, i in zip(top.values, top.indices)]
            if args.json:
                print(json.dumps({"input": item, "predictions": preds}))
            else:
                shown = ", ".join(f"{q['label']} ({q['probability']:.3f})" for q in preds)
                print(f"{item}\t{shown}")
        else:
            ids = p.argmax(-1).tolist()
            print(json.dumps({"input": item, "predictions": ids}) if args.json else f"{item}\t{' '.join(map(str, ids))}")
    return 0
