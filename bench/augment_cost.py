"""Per-sample cost of the image and audio plugins' training-time augmentation (the ``gperc_transform`` hook).

Times `gperc_plugin_image.augment.augment_array` on one Fashion-MNIST-shaped sample (28x28 pixels,
horizontal flips) and `gperc_plugin_audio.augment.augment_array` on one spoken-digits-shaped clip
(150 frames x 40 log-mel bins, the card's recipe), one thread, and prints microseconds per sample.

    .venv/bin/python bench/augment_cost.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import time

import torch

from gperc_core.plugins.specs import InputArray, PositionGrid


def per_sample_us(fn, samples: int) -> float:
    """Mean wall time of ``fn()`` in microseconds, after a warm-up of 50 calls."""
    for _ in range(50):
        fn()
    start = time.perf_counter()
    for _ in range(samples):
        fn()
    return (time.perf_counter() - start) / samples * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from gperc_plugin_audio.augment import augment_array as augment_audio
    from gperc_plugin_image.augment import augment_array as augment_image

    generator = torch.Generator().manual_seed(0)
    image = InputArray(torch.rand(784, 1), position=PositionGrid((28, 28), 6))
    image_options = {"representation": "pixels", "image_shape": [28, 28, 1], "normalize": [0.286, 0.353],
                     "augment": ["flip"]}
    clip = InputArray(torch.randn(150, 40))
    audio_options = {"representation": "logmel", "n_mels": 40, "duration": 1.5,
                     "augment": ["freq_warp", "time_stretch", "freq_mask", "time_mask"]}
    print(f"image flip: {per_sample_us(lambda: augment_image(image, image_options, generator), args.samples):.0f} "
          f"us/sample")
    print(f"audio card recipe: {per_sample_us(lambda: augment_audio(clip, audio_options, generator), args.samples):.0f} "
          f"us/sample")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
