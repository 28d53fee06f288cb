"""`TextConfig` and `BinaryConfig`: gperc's text and binary configs with gperc's signatures."""

from __future__ import annotations

from typing import Any

from gperc_core import ConfigError, PerceiverConfig

from . import PLUGIN

BINARY_TASKS = ("classification", None)


def _check(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{PLUGIN}: {name}: expected a positive {getattr(kind, '__name__', 'number')}, got {value!r}")


class TextConfig(PerceiverConfig):
    """gperc's text config: token ids in, one prediction over the vocabulary per position out.

    ``TextConfig(latent_dim, vocab_size, max_len, latent_frac=0.25, ffw_ratio=1.0, **kwargs)``:
    ``input_len = output_len = max_len``, ``input_dim = output_dim = latent_dim``,
    ``latent_len = max(1, int(latent_frac * max_len))``, ``input_type = "tokens"`` with
    ``input_num_tokens = n_classes = vocab_size``, ``decoder_reduction = None`` and
    ``decoder_residual = True`` (masked language modelling, as gperc). ``vocab_size`` and ``max_len``
    are kept as fields. Keywords override computed fields (e.g. ``n_classes=41,
    decoder_reduction="mean"`` for sequence classification).
    """

    extra_fields = {"vocab_size": None, "max_len": None}

    def __init__(self, latent_dim: int, vocab_size: int, max_len: int, latent_frac: float = 0.25,
                 ffw_ratio: float = 1.0, **kwargs: Any) -> None:
        for name, value in (("latent_dim", latent_dim), ("vocab_size", vocab_size), ("max_len", max_len)):
            _check(name, value, int)
        _check("latent_frac", latent_frac, (int, float))
        _check("ffw_ratio", ffw_ratio, (int, float))
        values: dict[str, Any] = {
            "vocab_size": vocab_size, "max_len": max_len, "input_len": max_len, "input_dim": latent_dim,
            "latent_len": max(1, int(latent_frac * max_len)), "latent_dim": latent_dim, "output_len": max_len,
            "output_dim": latent_dim, "ffw_latent": max(1, int(latent_dim * ffw_ratio)),
            "ffw_output": max(1, int(latent_dim * ffw_ratio)), "input_type": "tokens",
            "input_num_tokens": vocab_size, "decoder_reduction": None, "decoder_residual": True,
            "decoder_projection": True, "n_classes": vocab_size,
        }
        values.update(kwargs)
        super().__init__(**values)


class BinaryConfig(PerceiverConfig):
    """gperc's binary config: raw bytes as tokens (`BytesTokenizer`: 256 bytes + 4 specials = 260 ids).

    ``BinaryConfig(seqlen, vocab_size, latent_dim, latent_frac=0.1, n_classes=None, ffw_ratio=1.0,
    task="classification", **kwargs)``: ``input_len = output_len = seqlen``,
    ``input_dim = output_dim = latent_dim``, ``latent_len = max(1, int(seqlen * latent_frac))``,
    ``input_num_tokens = vocab_size`` (``seqlen`` and ``vocab_size`` are kept as fields).
    ``task="classification"`` reads the class at the last real
    byte (``decoder_reduction="eot"``; batches must then be padded to ``seqlen``, e.g.
    ``Collator(pad_to=seqlen)``) and needs ``n_classes``; ``task=None`` predicts a byte per position
    (``decoder_reduction=None``, ``decoder_residual=True``, ``n_classes = vocab_size``).
    """

    extra_fields = {"seqlen": None, "vocab_size": None, "task": "classification", "decoder_cross_attention": None}

    def __init__(self, seqlen: int, vocab_size: int, latent_dim: int, latent_frac: float = 0.1,
                 n_classes: int | None = None, ffw_ratio: float = 1.0, task: str | None = "classification",
                 **kwargs: Any) -> None:
        for name, value in (("seqlen", seqlen), ("vocab_size", vocab_size), ("latent_dim", latent_dim)):
            _check(name, value, int)
        _check("latent_frac", latent_frac, (int, float))
        _check("ffw_ratio", ffw_ratio, (int, float))
        if task not in BINARY_TASKS:
            raise ConfigError(f"{PLUGIN}: task: expected one of {BINARY_TASKS}, got {task!r}")
        classification = task == "classification"
        if classification and n_classes is None:
            raise ConfigError(f"{PLUGIN}: n_classes: expected a positive integer for task='classification', got None")
        values: dict[str, Any] = {
            "seqlen": seqlen, "vocab_size": vocab_size, "task": task, "input_len": seqlen, "input_dim": latent_dim,
            "latent_len": max(1, int(seqlen * latent_frac)), "latent_dim": latent_dim, "output_len": seqlen,
            "output_dim": latent_dim, "ffw_latent": max(1, int(ffw_ratio * latent_dim)),
            "ffw_output": max(1, int(ffw_ratio * latent_dim)), "input_type": "tokens",
            "input_num_tokens": vocab_size, "decoder_reduction": "eot" if classification else None,
            "decoder_projection": True, "decoder_cross_attention": not classification,
            "decoder_residual": not classification, "n_classes": n_classes if classification else vocab_size,
        }
        values.update(kwargs)
        super().__init__(**values)
