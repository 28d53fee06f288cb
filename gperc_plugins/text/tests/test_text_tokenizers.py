"""Text tokenizers: raw bytes, SentencePiece with byte fallback, the cache keyed by corpus and vocabulary."""

from __future__ import annotations

import pytest

from gperc_core import InputError, TaskError, Tokenizer
from gperc_plugin_text import tokenizers as tk
from gperc_plugin_text.tokenizers import BytesTokenizer, SentencePieceTokenizer, train_sentencepiece


def test_bytes_tokenizer_round_trips_utf8_and_keeps_specials_apart():
    tok = BytesTokenizer()
    assert isinstance(tok, Tokenizer) and tok.vocab_size == 260
    ids = tok.encode("héllo 日本")
    assert min(ids) >= 4 and max(ids) < 260 and len(ids) == len("héllo 日本".encode())
    assert tok.decode(ids + [tok.eos_id, tok.pad_id]) == "héllo 日本"
    assert tok.encode(b"\x00\xff") == [4, 259]


def test_sentencepiece_has_specials_and_byte_fallback(tiny_tokenizer):
    tok = tiny_tokenizer
    assert isinstance(tok, Tokenizer) and 260 < tok.vocab_size <= 300
    assert (tok.pad_id, tok.unk_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 3)
    ids = tok.encode("a zebra 日本 [MASK]")
    assert tok.unk_id not in ids and tok.mask_id not in ids        # unseen characters fall back to bytes
    assert tok.decode(ids) == "a zebra 日本 [MASK]"


def test_second_training_loads_the_cache(corpus_file, tmp_path, monkeypatch):
    texts = corpus_file.read_text().splitlines()
    first = train_sentencepiece(texts, vocab_size=300, cache=tmp_path)
    assert first.path.parent == tmp_path / "text" and first.path.is_file()

    import sentencepiece

    def refuse(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(sentencepiece.SentencePieceTrainer, "train", refuse)
    again = train_sentencepiece(iter(texts), vocab_size=300, cache=tmp_path)
    assert again.path == first.path and again.encode(texts[0]) == first.encode(texts[0])
    assert tk.corpus_key(texts, 300) != tk.corpus_key(texts, 320) != tk.corpus_key(texts[1:], 300)


def test_damaged_cache_is_retrained(corpus_file, tmp_path):
    texts = corpus_file.read_text().splitlines()
    path = tmp_path / "text" / f"spm-{tk.corpus_key(texts, 300)}.model"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a model")
    tok = train_sentencepiece(texts, vocab_size=300, cache=tmp_path)
    assert tok.path == path and SentencePieceTokenizer.load(path).vocab_size == tok.vocab_size


def test_cache_dir_from_option_then_env(monkeypatch, tmp_path):
    monkeypatch.setenv(tk.CACHE_ENV, str(tmp_path / "env"))
    assert tk.cache_dir({}) == tmp_path / "env"
    assert tk.cache_dir({"cache_dir": str(tmp_path / "opt")}) == tmp_path / "opt"


def test_bad_training_inputs():
    with pytest.raises(TaskError, match=r"gperc-plugin-text: options\['vocab_size'\]: expected an integer > 260"):
        train_sentencepiece(["some text"], vocab_size=100)
    with pytest.raises(InputError, match="gperc-plugin-text: corpus: expected at least one non-empty text"):
        train_sentencepiece(["", "   "], vocab_size=300)
    with pytest.raises(InputError, match=r"corpus\[1\]: expected a string"):
        train_sentencepiece(["fine", 42], vocab_size=300)


def test_load_and_save(tiny_tokenizer, tmp_path):
    saved = tiny_tokenizer.save(tmp_path / "tok.model")
    assert SentencePieceTokenizer.load(saved).encode("a building") == tiny_tokenizer.encode("a building")
    with pytest.raises(TaskError, match="no such file"):
        SentencePieceTokenizer.load(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"garbage")
    with pytest.raises(TaskError, match="expected a SentencePiece model"):
        SentencePieceTokenizer.load(tmp_path / "bad.model")


def test_bigram_tokenizer_interleaves_pair_ids_counted_on_the_corpus(tiny_tokenizer, tiny_corpus):
    from gperc_plugin_text.tokenizers import BigramTokenizer, count_bigrams

    base = tiny_tokenizer
    table = count_bigrams(base, tiny_corpus * 3, 5)
    assert len(table) == 5 and len(set(table)) == 5
    counts = {}
    for text in tiny_corpus * 3:
        ids = base.encode(text)
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
    assert [counts[p] for p in table] == sorted((counts[p] for p in table), reverse=True)  # most frequent first
    assert min(counts[p] for p in table) >= max(c for p, c in counts.items() if p not in table)
    tok = BigramTokenizer(base, table)
    assert isinstance(tok, Tokenizer) and tok.vocab_size == base.vocab_size + 1 + 5
    assert (tok.pad_id, tok.unk_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 3)
    text = tiny_corpus[0]
    ids, plain = tok.encode(text), base.encode(text)
    assert len(ids) == 2 * len(plain) - 1 and ids[::2] == plain  # a, [ab], b, [bc], c
    for k, (a, b) in enumerate(zip(plain, plain[1:])):
        want = base.vocab_size + 1 + table.index((a, b)) if (a, b) in table else base.vocab_size
        assert ids[2 * k + 1] == want
    assert tok.decode(ids) == base.decode(plain) == text
    assert BigramTokenizer(base, []).vocab_size == base.vocab_size + 1 and tok.encode("a") == base.encode("a")
    # the cache identity tells tables apart
    assert tok.fingerprint != BigramTokenizer(base, table[:4]).fingerprint
    assert tok.fingerprint == BigramTokenizer(base, list(table)).fingerprint
    with pytest.raises(TaskError, match=r"options\['bigrams'\]: expected an integer >= 1, got 0"):
        count_bigrams(base, tiny_corpus, 0)
