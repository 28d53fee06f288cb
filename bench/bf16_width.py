"""bf16 against fp32 training steps on the CPU, per latent width: the evidence behind
`gperc_core.train.device.CPU_BF16_MIN_WIDTH` (the width from which ``training.bf16 = None`` turns
bf16 autocast on by itself on a CPU with native bf16).

For each card and width, times the trainer's own steps (`bench/data.py`'s ``measure``: the card's
defaults, ``model.latent_dim`` set to the width, ``training.bf16`` true then false, dropout as the
card has it) and reports samples/s of each and their ratio. Writes the table to bench/bf16_width.md
and the records to bench/bf16_width.json.

    .venv/bin/python bench/bf16_width.py                         # 3 cards x widths 64 128 256
    .venv/bin/python bench/bf16_width.py --widths 64 128 --steps 10 image/digits

Run it on a quiet machine: it times steps; the load average is written beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from data import measure  # noqa: E402  (bench/data.py: the trainer's timed steps)

CARDS = ["image/fashion-mnist", "audio/spoken-digits", "text/wordnet-supersense"]


def compare(card: str, width: int, steps: int, warmup: int) -> dict[str, Any]:
    """Samples/s of ``card`` at latent width ``width`` with bf16 autocast and with fp32, and their ratio."""
    rates = {}
    for bf16 in (True, False):
        record = measure(card, steps, warmup, {"model.latent_dim": width, "training.bf16": bf16,
                                               "training.num_workers": 0})
        rates["bf16" if bf16 else "fp32"] = record["samples_per_s"]
    return {"card": card, "width": width, **rates, "speedup": round(rates["bf16"] / rates["fp32"], 2),
            "threads": record["threads"], "load": [round(x, 2) for x in os.getloadavg()]}


def markdown(records: list[dict[str, Any]], command: str) -> str:
    """The table of bf16 / fp32 samples/s per card and width."""
    lines = ["# bf16 vs fp32 training steps on the CPU, by latent width", "",
             f"Command: `{command}`. Samples/s of the trainer's steps (bench/data.py `measure`: the card's "
             "defaults, 2048 training samples, model.latent_dim set to the width); speedup = bf16 / fp32. "
             "Load is the 1/5/15-minute load average after the pair.", "",
             "| card | width | bf16 samples/s | fp32 samples/s | bf16 speedup | threads | load |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['card']} | {r['width']} | {r['bf16']} | {r['fp32']} | {r['speedup']}x | {r['threads']} | "
                     f"{', '.join(map(str, r['load']))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="*", default=CARDS)
    parser.add_argument("--widths", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH / "bf16_width")
    args = parser.parse_args(argv)
    command = "python bench/bf16_width.py " + " ".join(argv if argv is not None else sys.argv[1:])
    records = []
    for card in args.cards:
        for width in args.widths:
            records.append(compare(card, width, args.steps, args.warmup))
            print(json.dumps(records[-1]), flush=True)
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(records, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
