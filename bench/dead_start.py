"""Probe of the dead start (issue 10): image/digits-sized Perceivers trained with a plain AdamW loop.

Prints the mean training loss over steps 0-10, 20-30, 50-60, 90-100 and the test accuracy after
100 steps for each variant given on the command line (Python expressions calling `run` or
`run_patched`), e.g.::

    python bench/dead_start.py 'run("base", encoder_key_init_gain=0)' \
        'run_patched("enc key x10", lambda m: m.encoder.block.attention.key.weight.data.mul_(10), encoder_key_init_gain=0)'

``encoder_key_init_gain=0`` gives PyTorch's default initialisation (the dead start); the default gain
of 6 is the fix (docs/initialisation.md). ``standardize()`` switches the pixels to mean 0, std 1 and
``lecun(linear, gain)`` re-draws a layer from N(0, gain^2 / fan_in).

One thread, scikit-learn digits (1347 train / 450 test, seed 0), batch 32, lr 2e-3, no warmup.
"""

from __future__ import annotations

import sys

import torch
from sklearn.datasets import load_digits

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.model.perceiver import Perceiver

torch.set_num_threads(1)
_DIGITS = load_digits()
X = torch.tensor(_DIGITS.data, dtype=torch.float32).view(-1, 64, 1) / 16.0
Y = torch.tensor(_DIGITS.target)
_PERM = torch.randperm(len(Y), generator=torch.Generator().manual_seed(0))
TRAIN, TEST = _PERM[:1347], _PERM[1347:]


def standardize() -> None:
    """Standardise the pixels to mean 0, std 1 (training-split statistics) for the variants that follow."""
    global X
    X = (X - X[TRAIN].mean()) / X[TRAIN].std()


def lecun(module: torch.nn.Linear, gain: float = 1.0) -> None:
    """Re-initialise ``module``'s weight from N(0, gain^2 / fan_in)."""
    module.weight.data.normal_(0.0, gain * module.in_features ** -0.5)


def run(name: str, steps: int = 100, lr: float = 2e-3, **overrides) -> float:
    """Train one variant (config ``overrides`` on the digits card's model) and print its curve; returns accuracy."""
    base = dict(input_len=64, input_dim=1, input_pos_enc="fourier", input_pos_shape=[8, 8], fourier_num_bands=4,
                latent_len=32, latent_dim=64, num_heads=4, num_layers=2, ffw_latent=128, ffw_output=128,
                dropout=0.1, output_len=1, output_dim=64, n_classes=10, decoder_reduction="mean")
    base.update(overrides)
    torch.manual_seed(0)
    model = Perceiver(PerceiverConfig(**base))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        idx = TRAIN[torch.randint(len(TRAIN), (32,), generator=gen)]
        loss = torch.nn.functional.cross_entropy(model(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        acc = (model(X[TEST]).argmax(-1) == Y[TEST]).float().mean().item()

    def mean(a: int, b: int) -> float:
        window = losses[a:min(b, len(losses))]
        return sum(window) / max(1, len(window))

    print(f"{name:32s} loss[0:10]={mean(0, 10):.3f} [20:30]={mean(20, 30):.3f} [50:60]={mean(50, 60):.3f} "
          f"[90:100]={mean(90, 100):.3f} acc@{steps}={acc:.3f}", flush=True)
    return acc


def run_patched(name: str, patch, **overrides) -> float:
    """`run` with ``patch(model)`` applied right after the model is built (e.g. to rescale an init)."""
    original = Perceiver.__init__

    def init(self, config):
        original(self, config)
        patch(self)

    Perceiver.__init__ = init
    try:
        return run(name, **overrides)
    finally:
        Perceiver.__init__ = original


if __name__ == "__main__":
    for expression in sys.argv[1:] or ['run("base")']:
        eval(expression)
