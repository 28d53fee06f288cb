"""``gperc predict RUN_DIR INPUT ...``: predictions of a trained run for files of its task's modality.

Each INPUT is a file path; for a multimodal task it is ``modality=path,modality=path`` (one file per
modality). Files are read by the modality plugin's ``ModalitySpec.read_file``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
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
    parser.add_argument("--model", default=None, metavar="FILE",
                        help="predict with an exported .onnx / .pt2 file of the run's model ('gperc export')")
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
    """Predict with `gperc_core.api.prediction.predict` and print one line per input; returns 0."""
    from gperc_core.api.prediction import predict
    from gperc_core.io.runs import read_task_file
    from gperc_core.plugins.manager import plugin_manager_from_args

    if args.top < 1:
        raise InputError(f"--top: expected a positive integer, got {args.top}")
    pm = plugin_manager_from_args(args)
    modalities = list(read_task_file(args.run_dir)["card"]["modalities"])
    files = [{m: Path(path) for m, path in item.items()} for item in parse_inputs(args.inputs, modalities)]
    results = predict(args.run_dir, files, device=args.device, pm=pm, top_k=args.top, model=args.model)
    for item, result in zip(args.inputs, results):
        preds = result["predictions"]
        if args.json:
            print(json.dumps({"input": item, "predictions": preds}))
        elif preds and isinstance(preds[0], dict):
            shown = ", ".join(f"{q['label']} ({q['probability']:.3f})" for q in preds)
            print(f"{item}\t{shown}")
        else:
            print(f"{item}\t{' '.join(map(str, preds))}")
    return 0
