"""Tokenizers of the text modality: raw UTF-8 bytes, SentencePiece trained on a corpus and cached, and
either with the ids of neighbouring-token pairs interleaved (`BigramTokenizer`, option ``bigrams``).

Both share one layout of special ids: ``PAD_ID = 0``, ``UNK_ID = 1``, ``EOS_ID = 2``, ``MASK_ID = 3``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from gperc_core import InputError, TaskError
from gperc_core.io.checkpoint import atomic_write_bytes

from . import PLUGIN

PAD_ID, UNK_ID, EOS_ID, MASK_ID = 0, 1, 2, 3
NUM_SPECIALS = 4
BYTES_VOCAB_SIZE = 256 + NUM_SPECIALS
CACHE_ENV = "GPERC_CACHE"
DEFAULT_VOCAB_SIZE = 8000
_SPM_FORMAT = "unigram-bytefallback-v1"  # part of the cache key: bump when training settings change


class BytesTokenizer:
    """gperc's raw-bytes tokenisation: byte ``b`` is id ``b + 4``; ids 0-3 are the specials."""

    vocab_size = BYTES_VOCAB_SIZE
    pad_id, unk_id, eos_id, mask_id = PAD_ID, UNK_ID, EOS_ID, MASK_ID
    kind = "bytes"

    def encode(self, text: str | bytes) -> list[int]:
        """Return the ids of ``text``'s UTF-8 bytes (``bytes`` are taken as they are)."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return [b + NUM_SPECIALS for b in data]

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids``; special ids are dropped, invalid UTF-8 is replaced."""
        return bytes(i - NUM_SPECIALS for i in ids if NUM_SPECIALS <= i < BYTES_VOCAB_SIZE).decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"BytesTokenizer(vocab_size={self.vocab_size})"


class SentencePieceTokenizer:
    """A SentencePiece model (unigram, byte fallback) with the shared special ids.

    Built from the serialised model (``model_proto``); ``path`` is where it is cached, if anywhere.
    """

    pad_id, unk_id, eos_id, mask_id = PAD_ID, UNK_ID, EOS_ID, MASK_ID
    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, path: str | Path | None = None) -> None:
        import sentencepiece as spm  # heavy: loaded with the first tokenizer

        self.model_proto = bytes(model_proto)
        self.path = Path(path) if path is not None else None
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.vocab_size = int(self._sp.get_piece_size())
        if self._sp.piece_to_id("[MASK]") != MASK_ID or self._sp.pad_id() != PAD_ID or self._sp.eos_id() != EOS_ID:
            raise TaskError(f"{PLUGIN}: tokenizer: expected a SentencePiece model with <pad>=0, <unk>=1, </s>=2, "
                            f"[MASK]=3 (trained by gperc-plugin-text), got {self.path or 'a model'} without them")

    @classmethod
    def load(cls, path: str | Path) -> "SentencePieceTokenizer":
        """Load a ``.model`` file written by `save` or by the cache."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise TaskError(f"{PLUGIN}: options['tokenizer_path']: expected a SentencePiece .model file, "
                            f"got {str(path)!r} (no such file)")
        try:
            return cls(path.read_bytes(), path)
        except RuntimeError as exc:
            raise TaskError(f"{PLUGIN}: {path}: expected a SentencePiece model, got an unreadable file ({exc})") from None

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` atomically; returns the path."""
        return atomic_write_bytes(path, self.model_proto)

    def encode(self, text: str) -> list[int]:
        """Return the piece ids of ``text``."""
        return list(self._sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids``; special ids are dropped."""
        return self._sp.decode([int(i) for i in ids if int(i) >= NUM_SPECIALS])

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(vocab_size={self.vocab_size}, path={str(self.path) if self.path else None!r})"


def cache_dir(options: dict[str, Any] | None = None) -> Path:
    """Return the cache folder: ``options["cache_dir"]``, else ``$GPERC_CACHE``, else ``~/.cache/gperc``."""
    root = (options or {}).get("cache_dir") or os.environ.get(CACHE_ENV) or "~/.cache/gperc"
    return Path(root).expanduser()


def _texts(corpus: Iterable[Any]) -> list[str]:
    texts = []
    for i, sample in enumerate(corpus):
        if isinstance(sample, dict):
            sample = sample.get("text")
        if isinstance(sample, bytes):
            sample = sample.decode("utf-8", "replace")
        if not isinstance(sample, str):
            raise InputError(f"{PLUGIN}: corpus[{i}]: expected a string, got {type(sample).__name__}")
        if sample.strip():
            texts.append(sample)
    if not texts:
        raise InputError(f"{PLUGIN}: corpus: expected at least one non-empty text to train SentencePiece on, got none")
    return texts


def corpus_key(texts: Sequence[str], vocab_size: int) -> str:
    """Return the cache key of a SentencePiece model: a hash of the corpus, the vocabulary size and the
    training settings."""
    digest = hashlib.sha256(f"{_SPM_FORMAT}\0{vocab_size}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\n")
    return digest.hexdigest()[:20]


def train_sentencepiece(corpus: Iterable[Any], vocab_size: int = DEFAULT_VOCAB_SIZE,
                        cache: str | Path | None = None) -> SentencePieceTokenizer:
    """Return a SentencePiece unigram model with byte fallback trained on ``corpus`` (strings).

    The model is cached as ``<cache>/text/spm-<key>.model`` (key: corpus hash and ``vocab_size``),
    so a second call with the same corpus loads it instead of training. ``vocab_size`` is a soft
    limit: a small corpus yields fewer pieces.
    """
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= BYTES_VOCAB_SIZE:
        raise TaskError(f"{PLUGIN}: options['vocab_size']: expected an integer > {BYTES_VOCAB_SIZE} (256 byte "
                        f"pieces + specials), got {vocab_size!r}")
    texts = _texts(corpus)
    path = Path(cache if cache is not None else cache_dir()) / "text" / f"spm-{corpus_key(texts, vocab_size)}.model"
    if path.is_file():
        try:
            return SentencePieceTokenizer(path.read_bytes(), path)
        except (RuntimeError, TaskError):
            pass  # a damaged cache entry is retrained and replaced
    import sentencepiece as spm

    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=writer, model_type="unigram", vocab_size=vocab_size,
        byte_fallback=True, hard_vocab_limit=False, pad_id=PAD_ID, unk_id=UNK_ID, eos_id=EOS_ID, bos_id=-1,
        control_symbols=["[MASK]"], character_coverage=0.9995, num_threads=2, minloglevel=2,
        input_sentence_size=2_000_000, shuffle_input_sentence=True)
    tokenizer = SentencePieceTokenizer(writer.getvalue(), path)
    try:
        tokenizer.save(path)
    except OSError:
        tokenizer.path = None  # a read-only cache only costs a retrain next time
    return tokenizer


class BigramTokenizer:
    """A tokenizer whose ids interleave each pair of neighbouring tokens with an id of its own.

    ``encode`` returns ``a, [ab], b, [bc], c`` for the tokens ``a b c`` of ``base``: the ``n`` bigrams
    counted most often on the training corpus (`count_bigrams`) are ids ``base.vocab_size + 1 + r``
    (``r`` their rank), every other bigram is ``base.vocab_size`` (one "rare pair" id). A bag of
    these ids is what a TF-IDF model of unigrams and bigrams sees; keeping them in the sequence lets
    the model's position features say which pair sits where. Special ids and ``decode`` are the
    base tokenizer's (pair ids are dropped). ``fingerprint`` identifies the base and the table.
    """

    def __init__(self, base: Any, bigrams: Sequence[tuple[int, int]]) -> None:
        self.base = base
        self.bigrams = [(int(a), int(b)) for a, b in bigrams]
        self.rare_id = int(base.vocab_size)
        self._ids = {pair: self.rare_id + 1 + r for r, pair in enumerate(self.bigrams)}
        self.vocab_size = self.rare_id + 1 + len(self.bigrams)
        self.kind = getattr(base, "kind", "sentencepiece")
        self.pad_id, self.unk_id = base.pad_id, base.unk_id
        self.eos_id, self.mask_id = base.eos_id, base.mask_id

    @property
    def fingerprint(self) -> str | None:
        """A stable identity for the conversion cache: the base tokenizer's (the core's
        ``tokenizer_identity``) and the bigram table; ``None`` when the base has none (not cached)."""
        from gperc_core.data.cache import tokenizer_identity

        base = tokenizer_identity(self.base)
        if base is None:
            return None
        return f"BigramTokenizer:{hashlib.sha256(f'{base}|{self.bigrams!r}'.encode()).hexdigest()}"

    def encode(self, text: str) -> list[int]:
        """Return the base ids of ``text`` with each neighbouring pair's id between its two tokens."""
        ids = list(self.base.encode(text))
        out: list[int] = ids[:1]
        for a, b in zip(ids, ids[1:]):
            out += [self._ids.get((a, b), self.rare_id), b]
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids`` (pair ids dropped)."""
        return self.base.decode([int(i) for i in ids if int(i) < self.rare_id])

    def __repr__(self) -> str:
        return f"BigramTokenizer(base={self.base!r}, bigrams={len(self.bigrams)}, vocab_size={self.vocab_size})"


def count_bigrams(base: Any, corpus: Iterable[Any], n: int) -> list[tuple[int, int]]:
    """Return the ``n`` most frequent pairs of neighbouring ``base`` tokens in ``corpus`` (texts), most
    frequent first (ties: the smaller ids first); pairs seen once are left out."""
    from collections import Counter

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise TaskError(f"{PLUGIN}: options['bigrams']: expected an integer >= 1, got {n!r}")
    counts: Counter[tuple[int, int]] = Counter()
    for text in _texts(corpus):
        ids = base.encode(text)
        counts.update(zip(ids, ids[1:]))
    ranked = sorted((pair for pair, c in counts.items() if c >= 2), key=lambda p: (-counts[p], p))
    return ranked[:n]
