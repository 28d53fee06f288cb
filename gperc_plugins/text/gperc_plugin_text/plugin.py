"""The hook implementations of gperc-plugin-text (entry point ``text`` in group ``gperc``).

Importing this module is cheap: sentencepiece loads with the first SentencePiece tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from gperc_core import (USER_DATA_OPTIONS, DatasetSpec, InputArray, InputError, ModalitySpec, Option, TaskError, hookimpl,
                        packaged_task_cards)

from . import GPERC_CORE_REQUIRES, PLUGIN  # noqa: F401 - the manager reads GPERC_CORE_REQUIRES here
from .arrays import DEFAULT_MAX_LEN, TASKS, TOKENIZERS, TextOptions, text_input_array
from .datasets import DATASETS
from .tokenizers import (DEFAULT_VOCAB_SIZE, BigramTokenizer, BytesTokenizer, SentencePieceTokenizer, cache_dir,
                         count_bigrams, train_sentencepiece)

MODALITY = "text"

OPTIONS = {
    "tokenizer": Option(str, "sentencepiece", "'sentencepiece' (unigram with byte fallback, trained on the task's "
                        "corpus) or 'bytes'", choices=TOKENIZERS),
    "vocab_size": Option(int, DEFAULT_VOCAB_SIZE, "SentencePiece vocabulary size (a soft limit on small corpora)"),
    "tokenizer_path": Option(str, None, "load this SentencePiece .model instead of training one"),
    "cache_dir": Option(str, None, "where trained tokenizers are cached (default $GPERC_CACHE, then ~/.cache/gperc)"),
    "max_len": Option(int, DEFAULT_MAX_LEN, "longest token sequence; longer texts are truncated"),
    "add_eos": Option(bool, True, "end every sequence with the EOS id"),
    "bigrams": Option(int, 0, "classification: interleave the ids of neighbouring-token pairs, the N most frequent "
                      "pairs of the training corpus (0: off; max_len counts both kinds of id)"),
    "task": Option(str, "classification", "'classification' or 'mlm' (masked ids padded to max_len, labels per "
                   "position)", choices=TASKS),
    "token_dropout": Option(float, 0.0, "classification: probability that training replaces a token by [MASK], "
                            "drawn afresh every epoch (word dropout; 0: off)"),
    "mask_prob": Option(float, 0.15, "MLM: share of tokens masked (at least one per text)"),
    "mask_seed": Option(int, None, "MLM: fixed masks per text from this seed (default: fresh masks every training epoch)"),
    "root": Option(str, None, "folder of WordNet's data.noun / data.verb (default $GPERC_WORDNET, then "
                   "/usr/share/wordnet)"),
    "with_lemmas": Option(bool, False, "prefix each gloss with its synset's words"),
    "max_samples": Option(int, None, "keep only the first N samples of each split (quick runs)"),
    "pad_multiple": Option(int, None, "pad each batch's token ids to a multiple of this (e.g. 8)"),
    **{name: USER_DATA_OPTIONS[name] for name in ("path", "test_path", "column", "label_column", "test_fraction",
                                                  "split_seed")},
}


def read_text_file(path: str) -> str:
    """Read one UTF-8 text file into the raw sample the datasets yield (a string, trailing newline dropped)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{PLUGIN}: path: expected an existing text file, got {str(path)!r}")
    try:
        return file.read_text(encoding="utf-8").rstrip("\n")
    except UnicodeDecodeError as exc:
        raise InputError(f"{PLUGIN}: path: expected UTF-8 text, got {str(path)!r} ({exc})") from None


@hookimpl
def gperc_register_modalities() -> list[ModalitySpec]:
    """The text modality: integer token ids."""
    return [ModalitySpec(name=MODALITY, description="text as SentencePiece (byte fallback) or raw-byte token ids",
                         input_type="tokens", options=OPTIONS, read_file=read_text_file)]


@hookimpl
def gperc_register_datasets() -> list[DatasetSpec]:
    """WordNet glosses (41 lexicographer-file classes), and your texts (text-files, text-from-disk)."""
    return list(DATASETS)


@hookimpl
def gperc_tokenizer(modality: str, options: dict[str, Any], corpus: Iterable[Any] | None) -> Any:
    """Bytes, a SentencePiece model from ``tokenizer_path``, or one trained on ``corpus`` (cached); with
    ``bigrams``, that tokenizer with the pairs counted on ``corpus`` interleaved (`BigramTokenizer`)."""
    if modality != MODALITY:
        return None
    text = TextOptions(options)
    if text.bigrams:
        if corpus is None:
            raise TaskError(f"{PLUGIN}: corpus: expected the training texts to count options['bigrams']="
                            f"{text.bigrams} pairs on, got None")
        corpus = list(corpus)
    base = _base_tokenizer(text, options, corpus)
    return BigramTokenizer(base, count_bigrams(base, corpus, text.bigrams)) if text.bigrams else base


def _base_tokenizer(text: TextOptions, options: dict[str, Any], corpus: Iterable[Any] | None) -> Any:
    if text.tokenizer_kind == "bytes":
        return BytesTokenizer()
    path = (options or {}).get("tokenizer_path")
    if path:
        return SentencePieceTokenizer.load(path)
    if corpus is None:
        raise TaskError(f"{PLUGIN}: corpus: expected the training texts to train SentencePiece on (or "
                        f"options['tokenizer_path'] / tokenizer='bytes'), got None")
    return train_sentencepiece(corpus, text.vocab_size, cache_dir(options))


@hookimpl
def gperc_register_tasks() -> list[dict[str, Any]]:
    """The text task cards shipped in ``gperc_plugin_text/tasks/*.toml``."""
    return packaged_task_cards("gperc_plugin_text")


@hookimpl
def gperc_input_array(modality: str, sample: Any, options: dict[str, Any], tokenizer: Any) -> InputArray | None:
    """One text to token ids ``[m]`` (classification) or masked ids + labels padded to ``max_len`` (MLM),
    encoded with ``tokenizer`` (the ``gperc_tokenizer`` hook's result; ``None`` with tokenizer='bytes')."""
    if modality != MODALITY:
        return None
    if isinstance(sample, dict) and MODALITY in sample:
        sample = sample[MODALITY]
    return text_input_array(sample, TextOptions(options, tokenizer))


@hookimpl
def gperc_transform(modality: str, array: InputArray, options: dict[str, Any], tokenizer: Any,
                    generator: Any) -> InputArray | None:
    """MLM: fresh masks for every epoch (unless ``mask_seed`` fixes them); classification: fresh
    ``token_dropout`` masks every epoch (nothing when it is 0)."""
    if modality != MODALITY:
        return None
    from .arrays import drop_tokens, remask

    text = TextOptions(options, tokenizer)
    return remask(array, text, generator) if text.task == "mlm" else drop_tokens(array, text, generator)


@hookimpl
def gperc_collator(modality: str, options: dict[str, Any], sentinels: bool) -> Any:
    """Text batches: token ids padded to the batch's longest in whole-batch tensor operations
    (`gperc_plugin_text.collate.TextCollator`)."""
    if modality != MODALITY:
        return None
    from .collate import text_collator

    return text_collator(options, sentinels)
