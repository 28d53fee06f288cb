"""Initialisation that lets a Perceiver see its input from the first step.

With PyTorch's default `nn.Linear` initialisation the encoder's cross-attention logits start with a
standard deviation of about 1/3: over tens to thousands of input elements the softmax is almost
uniform, every latent reads the average of the whole input, and the latents of different samples
differ by about a tenth of what separates one latent from another. Training then sits at chance
for a hundred steps or more before the attention sharpens (measured in docs/initialisation.md).
Drawing the encoder's key projection from N(0, gain^2 / fan_in) with a gain of a few units
(`PerceiverConfig.encoder_key_init_gain`, default 6: logits start with a standard deviation of about
gain/sqrt(3)) starts each latent on a few input elements instead, so the latents carry the sample
from step one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["scaled_normal_"]


@torch.no_grad()
def scaled_normal_(linear: nn.Linear, gain: float) -> nn.Linear:
    """Draw ``linear``'s weight from N(0, gain^2 / fan_in) in place (from the current RNG); returns it."""
    linear.weight.normal_(0.0, float(gain) / math.sqrt(linear.in_features))
    return linear
