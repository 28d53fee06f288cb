"""Baselines of text/wordnet-mlm: the most-frequent-token guess and the unigram model, on the task's test split.

Run from the repository root: ``python gperc_plugins/text/bench_baseline.py``. Counts the masked
target tokens of the training split (its fixed masks, seed 0) to pick the most frequent one and a
unigram distribution (add-one smoothed over the vocabulary), then scores them on the test split's
masked positions: accuracy of always guessing the most frequent token, and the unigram perplexity.
"""

from __future__ import annotations

import math

import torch


def main() -> None:
    from gperc_core.data.tasks import create_task
    from gperc_core.model.sentinels import IGNORE_INDEX

    task = create_task("text/wordnet-mlm")
    config = task.infer_config()
    vocab = int(config.num_classes)

    def targets(split: str) -> torch.Tensor:
        target = task.split(split).target
        return target[target != IGNORE_INDEX]

    train, test = targets("train"), targets("test")
    counts = torch.bincount(train, minlength=vocab).double() + 1.0
    top = int(counts.argmax())
    accuracy = float((test == top).double().mean())
    nll = -torch.log(counts / counts.sum())[test].mean()
    print(f"wordnet-mlm baselines on {len(test)} masked test tokens (vocabulary {vocab}): most frequent token "
          f"{top} accuracy {accuracy:.4f}; unigram perplexity {math.exp(float(nll)):.1f}")


if __name__ == "__main__":
    main()
