"""Text to Perceiver input arrays: token ids (classification) or masked ids with labels (MLM)."""

from __future__ import annotations

import zlib
from typing import Any, Mapping

import torch

from gperc_core import IGNORE_INDEX, InputError, InputArray, TaskError
from gperc_core.errors import describe

from . import PLUGIN
from .tokenizers import DEFAULT_VOCAB_SIZE, BytesTokenizer

TOKENIZERS = ("sentencepiece", "bytes")
TASKS = ("classification", "mlm")
DEFAULT_MAX_LEN = 64
IGNORE = IGNORE_INDEX


class TextOptions:
    """The text options of a task, read and checked once, and the tokenizer to encode with.

    Keys (all optional): ``tokenizer`` ("sentencepiece" | "bytes": which tokenizer the
    ``gperc_tokenizer`` hook builds), ``vocab_size`` (SentencePiece, default 8000), ``max_len``
    (default 64; longer texts are truncated), ``add_eos`` (default true), ``task`` ("classification"
    | "mlm"), ``mask_prob`` (default 0.15), ``mask_seed`` (int: the same masks for a text in every
    epoch; default none: conversion masks with seed 0, and training draws fresh masks every epoch
    through ``gperc_transform``, `remask`), ``bigrams`` (classification: the number of neighbouring-token
    pairs with ids of their own, `BigramTokenizer`; default 0), ``token_dropout`` (classification: the
    probability, in [0, 1), that training replaces a token by ``[MASK]``, drawn afresh every epoch through
    ``gperc_transform``, `drop_tokens`; word dropout as a regulariser; default 0). ``tokenizer`` (the
    argument) is the tokenizer object the core passes to the hooks (``None``: none built yet). Bad values
    raise `TaskError` naming the option.
    """

    def __init__(self, options: Mapping[str, Any] | None, tokenizer: Any = None) -> None:
        options = dict(options or {})
        kind = options.get("tokenizer", "sentencepiece")
        if kind not in TOKENIZERS:
            raise TaskError(f"{PLUGIN}: options['tokenizer']: expected one of {TOKENIZERS}, got {kind!r} "
                            f"(the tokenizer object is the hooks' own 'tokenizer' argument)")
        if tokenizer is not None and not (hasattr(tokenizer, "encode") and hasattr(tokenizer, "vocab_size")):
            raise TaskError(f"{PLUGIN}: tokenizer: expected a tokenizer with encode() and vocab_size, "
                            f"got {describe(tokenizer)}")
        self.tokenizer_obj = tokenizer
        self.tokenizer_kind = getattr(tokenizer, "kind", kind) if tokenizer is not None else kind
        self.vocab_size = _int("vocab_size", options.get("vocab_size", DEFAULT_VOCAB_SIZE), 1)
        self.max_len = _int("max_len", options.get("max_len", DEFAULT_MAX_LEN), 2)
        self.add_eos = options.get("add_eos", True)
        if not isinstance(self.add_eos, bool):
            raise TaskError(f"{PLUGIN}: options['add_eos']: expected true or false, got {self.add_eos!r}")
        self.task = options.get("task", "classification")
        if self.task not in TASKS:
            raise TaskError(f"{PLUGIN}: options['task']: expected one of {TASKS}, got {self.task!r}")
        self.mask_prob = options.get("mask_prob", 0.15)
        if not isinstance(self.mask_prob, (int, float)) or isinstance(self.mask_prob, bool) \
                or not 0.0 < self.mask_prob < 1.0:
            raise TaskError(f"{PLUGIN}: options['mask_prob']: expected a number in (0, 1), got {self.mask_prob!r}")
        self.mask_seed = options.get("mask_seed")
        if self.mask_seed is not None:
            _int("mask_seed", self.mask_seed, 0)
        self.bigrams = _int("bigrams", options.get("bigrams", 0), 0)
        self.token_dropout = options.get("token_dropout", 0.0)
        if not isinstance(self.token_dropout, (int, float)) or isinstance(self.token_dropout, bool) \
                or not 0.0 <= self.token_dropout < 1.0:
            raise TaskError(f"{PLUGIN}: options['token_dropout']: expected a number in [0, 1), "
                            f"got {self.token_dropout!r}")
        if self.token_dropout and self.task == "mlm":
            raise TaskError(f"{PLUGIN}: options['token_dropout']: expected 0 with task='mlm' (masking is "
                            f"its objective: mask_prob), got {self.token_dropout!r}")
        if self.bigrams and self.task == "mlm":
            raise TaskError(f"{PLUGIN}: options['bigrams']: expected 0 with task='mlm' (a pair's id would give the "
                            f"masked token away), got {self.bigrams}")

    def tokenizer(self) -> Any:
        """Return the tokenizer to encode with: the one the core passed, or bytes."""
        if self.tokenizer_obj is not None:
            return self.tokenizer_obj
        if self.tokenizer_kind == "bytes":
            return BytesTokenizer()
        raise TaskError(f"{PLUGIN}: tokenizer: expected the trained SentencePiece tokenizer (the core passes the "
                        f"gperc_tokenizer hook's result as the hooks' tokenizer argument) or options "
                        f"tokenizer='bytes', got None with tokenizer={self.tokenizer_kind!r}")


def _int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TaskError(f"{PLUGIN}: options[{name!r}]: expected an integer >= {minimum}, got {value!r}")
    return value


def token_ids(sample: Any, options: TextOptions) -> torch.Tensor:
    """Return the ids of one text as a long tensor ``[m]``, ``1 <= m <= max_len``, ending with EOS when
    ``add_eos`` (kept when truncating). Empty text, or text that tokenises to nothing, is an `InputError`."""
    bytes_ok = options.tokenizer_kind == "bytes"
    if not isinstance(sample, str) and not (bytes_ok and isinstance(sample, (bytes, bytearray))):
        kinds = "a string or bytes" if bytes_ok else "a string"
        raise InputError(f"{PLUGIN}: sample: expected {kinds}, got {describe(sample)}")
    if not (sample.strip() if isinstance(sample, str) else sample):
        raise InputError(f"{PLUGIN}: sample: expected non-empty text, got {sample!r}")
    tokenizer = options.tokenizer()
    ids = list(tokenizer.encode(sample))
    if not ids:
        raise InputError(f"{PLUGIN}: sample: expected text that tokenises to at least one token, got {sample!r} "
                         f"(no tokens from {type(tokenizer).__name__})")
    if options.add_eos:
        ids = ids[: options.max_len - 1] + [int(getattr(tokenizer, "eos_id", 2))]
    else:
        ids = ids[: options.max_len]
    return torch.tensor(ids, dtype=torch.long)


def mask_tokens(ids: torch.Tensor, options: TextOptions, mask_id: int, eos_id: int | None,
                key: bytes = b"", generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask about ``mask_prob`` of the non-EOS tokens of ``ids`` (at least one) with ``mask_id``.

    Returns ``(masked ids, labels)`` where labels hold the original id at masked positions and -100
    elsewhere. The choice is drawn from ``generator`` when given, else it depends only on
    ``mask_seed`` (0 when unset) and ``key`` (the text): conversion is deterministic.
    """
    if generator is None:
        seed = options.mask_seed if options.mask_seed is not None else 0
        generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key))
    eligible = ids != eos_id if eos_id is not None else torch.ones_like(ids, dtype=torch.bool)
    if not bool(eligible.any()):
        eligible = torch.ones_like(ids, dtype=torch.bool)
    scores = torch.rand(ids.shape, generator=generator)
    chosen = (scores < options.mask_prob) & eligible
    if not bool(chosen.any()):
        chosen[torch.where(eligible, scores, torch.full_like(scores, 2.0)).argmin()] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    return torch.where(chosen, torch.full_like(ids, mask_id), ids), labels


def text_input_array(sample: Any, options: TextOptions) -> InputArray:
    """Return the `InputArray` of one text: ids ``[m]`` for classification; for MLM, masked ids padded
    to ``max_len`` with their mask and per-position labels (-100 on unmasked and padded positions)."""
    ids = token_ids(sample, options)
    if options.task != "mlm":
        return InputArray(array=ids)
    tokenizer = options.tokenizer()
    key = sample.encode("utf-8", "surrogatepass") if isinstance(sample, str) else bytes(sample)
    masked, labels = mask_tokens(ids, options, int(getattr(tokenizer, "mask_id", 3)),
                                 getattr(tokenizer, "eos_id", None) if options.add_eos else None, key)
    pad = options.max_len - ids.shape[0]
    pad_id = int(getattr(tokenizer, "pad_id", 0))
    array = torch.nn.functional.pad(masked, (0, pad), value=pad_id)
    target = torch.nn.functional.pad(labels, (0, pad), value=IGNORE)
    mask = torch.arange(options.max_len) < ids.shape[0]
    return InputArray(array=array, mask=mask, target=target)


def drop_tokens(array: InputArray, options: TextOptions, generator: torch.Generator) -> InputArray | None:
    """Return a classification sample (token ids ``[m]``) with each token other than EOS replaced by
    ``[MASK]`` with probability ``token_dropout``, drawn from ``generator`` (the ``gperc_transform``
    hook: fresh every epoch), or ``None`` when ``token_dropout`` is 0 (nothing to change)."""
    if options.task == "mlm" or not options.token_dropout:
        return None
    tokenizer = options.tokenizer()
    ids = torch.as_tensor(array.array)
    eligible = torch.ones_like(ids, dtype=torch.bool)
    if options.add_eos:
        eligible = ids != int(getattr(tokenizer, "eos_id", 2))
    dropped = (torch.rand(ids.shape, generator=generator) < options.token_dropout) & eligible
    masked = torch.where(dropped, torch.full_like(ids, int(getattr(tokenizer, "mask_id", 3))), ids)
    return InputArray(array=masked,
                      mask=array.mask, target=array.target, output=array.output, position=array.position)


def remask(array: InputArray, options: TextOptions, generator: torch.Generator) -> InputArray | None:
    """Return an MLM sample (from `text_input_array`) masked afresh with ``generator`` (the
    ``gperc_transform`` hook: new masks every epoch), or ``None`` when nothing is to change
    (classification, or ``mask_seed`` fixes the masks)."""
    if options.task != "mlm" or options.mask_seed is not None or array.target is None or array.mask is None:
        return None
    tokenizer = options.tokenizer()
    n = int(array.mask.sum())
    target = torch.as_tensor(array.target)
    ids = torch.where(target != IGNORE, target, array.array)[:n]
    masked, labels = mask_tokens(ids, options, int(getattr(tokenizer, "mask_id", 3)),
                                 getattr(tokenizer, "eos_id", None) if options.add_eos else None,
                                 generator=generator)
    pad = array.array.shape[0] - n
    return InputArray(array=torch.cat([masked, array.array[n:]]),
                      mask=array.mask, target=torch.nn.functional.pad(labels, (0, pad), value=IGNORE),
                      output=array.output, position=array.position)
