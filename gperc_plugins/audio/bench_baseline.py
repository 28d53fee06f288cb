"""The linear baseline of audio/spoken-digits: logistic regression on the task card's input arrays.

Run from the repository root: ``python gperc_plugins/audio/bench_baseline.py [--test-voice rms]
[--without-festival]``. Prints the held-out-voice accuracy; synthesises the clips into the cache on first use.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", default=str(Path(__file__).resolve().parent / "gperc_plugin_audio/tasks/spoken-digits.toml"))
    parser.add_argument("--test-voice", default=None, help="held-out flite voice (default: the card's)")
    parser.add_argument("--without-festival", action="store_true",
                        help="train without the card's festival voices (train_festival_voices = [])")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression

    from gperc_plugin_audio.datasets import load_spoken_digits
    from gperc_plugin_audio.plugin import gperc_input_array

    options = dict(tomllib.loads(Path(args.card).read_text())["options"]["audio"])
    if args.test_voice:
        options["test_voice"] = args.test_voice
        options["train_flite_voices"] = [v for v in ("kal16", "awb", "rms", "slt") if v != args.test_voice]
    if args.without_festival:
        options["train_festival_voices"] = []
    start = time.time()
    splits = {}
    for split in ("train", "test"):
        data = load_spoken_digits(split, options)
        x = np.stack([gperc_input_array(modality="audio", sample=data[i]["audio"], options=options).array.numpy().ravel()
                      for i in range(len(data))])
        splits[split] = (x, np.array(data.targets))
    model = LogisticRegression(max_iter=200, C=0.1).fit(*splits["train"])
    accuracy = model.score(*splits["test"])
    print(f"spoken-digits logistic regression: train {len(splits['train'][1])} clips, test voice "
          f"{options['test_voice']} {len(splits['test'][1])} clips: accuracy {accuracy:.3f} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
