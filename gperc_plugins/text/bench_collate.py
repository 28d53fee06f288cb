"""Time TextCollator against the core Collator on text-like batches: token ids of 8..64 tokens, class
targets (WordNet glosses tokenised by SentencePiece are 5..64 ids long); single thread, best of N."""
import time

import torch

from gperc_core import InputArray
from gperc_core.data.collate import Collator
from gperc_plugin_text.collate import TextCollator


def batch(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(8, 65, (b,), generator=g)
    return [InputArray(array=torch.randint(4, 8000, (int(n),), generator=g), target=i % 41)
            for i, n in enumerate(lens.tolist())]


def best(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


torch.set_num_threads(1)
for b, reps in ((256, 200), (8192, 20)):
    ex = batch(b)
    core, text = Collator(), TextCollator()
    a, c = core(ex), text(ex)
    assert all(torch.equal(a[k], c[k]) for k in ("input_array", "attention_mask", "target"))
    tc, tt = best(lambda: core(ex), reps), best(lambda: text(ex), reps)
    print(f"batch {b:5d}: core Collator {tc * 1e3:7.2f} ms, TextCollator {tt * 1e3:6.2f} ms, x{tc / tt:.1f}")
