"""Fixtures of the text plugin tests: a tiny corpus written to disk and a tokenizer trained on it."""

from __future__ import annotations

import pytest

TINY_CORPUS = [
    "a small domesticated carnivorous mammal with soft fur",
    "move fast by using one's feet, with one foot off the ground at any given time",
    "a building where people live",
    "the act of singing a song in public",
    "a piece of furniture having a smooth flat top supported by legs",
    "have a feeling of fear or anxiety about something",
    "an animal that lives in water and breathes through gills",
    "the period of time between sunrise and sunset",
]


@pytest.fixture(scope="session")
def tiny_corpus():
    return list(TINY_CORPUS)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(TINY_CORPUS * 3) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(corpus_file, tmp_path_factory):
    from gperc_plugin_text.tokenizers import train_sentencepiece

    texts = corpus_file.read_text().splitlines()
    return train_sentencepiece(texts, vocab_size=300, cache=tmp_path_factory.mktemp("cache"))
