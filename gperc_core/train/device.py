"""Where training runs: the device by name, whether bf16 autocast pays there, and moving batches to it."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import torch

from gperc_core.errors import ConfigError

__all__ = ["resolve_device", "bf16_supported", "auto_bf16", "warn_if_emulated_bf16", "EmulatedBF16Warning",
           "to_device", "CPU_BF16_MIN_WIDTH"]


def resolve_device(name: str) -> torch.device:
    """Return the device for ``name`` ("auto" = CUDA when available, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"training.device: expected 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device: expected an available device, got {name!r} (no CUDA here)")
    return device


def bf16_supported(device: torch.device) -> bool:
    """True when bf16 autocast is fast on ``device``: CUDA with bf16, or a CPU with native bf16
    instructions (AVX-512 BF16 / AMX), checked by oneDNN and a tiny bf16 matmul."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        a = torch.ones(4, 4, dtype=torch.bfloat16)
        return bool((a @ a).float().sum() == 64)
    except (AttributeError, RuntimeError):
        return False


CPU_BF16_MIN_WIDTH = 128
"""On CPUs, automatic bf16 needs a latent width of at least this. Measured on the build machine's
AVX-512-BF16 CPU (bench/bf16_width.md, the trainer's own steps, 2 threads, quiet): bf16 autocast beat
fp32 at every width measured, 1.11-1.84x at 128 and 1.36-1.66x at 256 (fashion-mnist, spoken-digits,
wordnet-supersense), but only 1.05-1.11x at 64 on two of the three, and the small width-64 cards ran
slower or level in bf16 (image/digits 0.94x, graph/mutag 0.82x, digits-segmentation 1.03x:
bench/bf16_width_small.md), so narrower models stay in fp32 unless a card or ``training.bf16`` asks.
(An early session measured bf16 15 % to 6x slower at widths 64-128, before the input-space encoder.)"""


def auto_bf16(device: torch.device, config: Any) -> bool:
    """Whether ``training.bf16 = None`` (auto) turns bf16 autocast on: CUDA with bf16 support, or a CPU
    with native bf16 for models of latent width ``CPU_BF16_MIN_WIDTH`` and more."""
    if not bf16_supported(device):
        return False
    return device.type == "cuda" or int(getattr(config, "latent_dim", 0)) >= CPU_BF16_MIN_WIDTH


class EmulatedBF16Warning(UserWarning):
    """bf16 autocast was asked for on a device without native bf16: it runs, much slower than fp32."""


def warn_if_emulated_bf16(device: torch.device) -> bool:
    """Warn (`EmulatedBF16Warning`) when bf16 autocast is forced on ``device`` although it lacks native bf16
    (`bf16_supported` is False: e.g. a CPU with AVX2 but no AVX-512 BF16 or AMX). There every bf16 matmul is
    emulated: text/wordnet-supersense trained at 15 samples/s in bf16 against 101 in fp32 on an AVX2 EPYC
    (1 thread each, back to back). Returns whether it warned."""
    if bf16_supported(device):
        return False
    capability = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else device.type
    warnings.warn(f"training.bf16: expected a device with native bf16 when bf16 autocast is forced on, got {device} "
                  f"({capability}; no AVX-512 BF16 / AMX or CUDA bf16): bf16 is emulated there, several times slower "
                  f"than fp32. Leave training.bf16 unset (auto: bf16 only where it pays) or pass --no-bf16.",
                  EmulatedBF16Warning, stacklevel=3)
    return True


def to_device(value: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (nested mappings allowed) to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    return value
