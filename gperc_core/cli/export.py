"""``gperc export RUN_DIR --format onnx|pt2``: write a run's model as an ONNX or `torch.export` file."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``export`` command."""
    from gperc_core.interop.onnx import EXPORT_FORMATS

    parser = subparsers.add_parser("export", help="export a run's model to ONNX or torch.export",
                                   description="Write the model of a run folder as an ONNX file (run it with "
                                               "onnxruntime) or a torch.export .pt2 program. Inputs: input_array "
                                               "and attention_mask, with a dynamic batch (and a dynamic length m "
                                               "for a single Perceiver). Default file: RUN_DIR/export/model.FORMAT.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS, help="file format (default onnx)")
    parser.add_argument("--out", default=None, help="file to write (default RUN_DIR/export/model.FORMAT)")
    parser.add_argument("--checkpoint", action="store_true",
                        help="export the latest resumable checkpoint instead of the final model")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export with `gperc_core.api.exporting.export` and print the file written; returns 0."""
    from gperc_core.api.exporting import export

    result = export(args.run_dir, format=args.format, out=args.out, checkpoint=args.checkpoint)
    if args.json:
        print(json.dumps(result))
        return 0
    dynamic = "; ".join(f"{name}: {axes}" for name, axes in result["dynamic"].items())
    print(f"wrote {result['path']} ({result['format']}, model from {result['source']})")
    print(f"inputs {result['inputs']}, dynamic axes: {dynamic}")
    return 0
