"""The text plugin through the plugin manager: WordNet glosses, the hooks, collation, a Perceiver learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gperc_plugin_text.plugin as text_plugin
from gperc_core import Collator, InputError, Perceiver, PerceiverConfig, TaskError, get_plugin_manager
from gperc_plugin_text import datasets as wn
from gperc_plugin_text.tokenizers import BytesTokenizer

needs_wordnet = pytest.mark.skipif(not (wn.WORDNET_DEBIAN_DIR / "data.verb").exists(),
                                   reason=f"WordNet not installed: {wn.WORDNET_APT}")

FAKE_NOUN = """  1 This software and database is being provided to you, the LICENSEE, by
  2 Princeton University under the following license.
00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known
00015388 05 n 02 animal 0 animate_being 0 001 @ 00004475 n 0000 | a living organism that can move
"""
FAKE_VERB = """  1 licence header
01835496 38 v 01 travel 0 001 @ 01831531 v 0000 01 + 08 00 | change location; move, travel, or proceed
"""


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(entry_points=False, plugins=[text_plugin])


@pytest.fixture(autouse=True)
def _fresh_cache():
    wn._wordnet.cache_clear()
    yield
    wn._wordnet.cache_clear()


def test_registers_modality_and_dataset(pm):
    spec = pm.modality("text")
    assert spec.input_type == "tokens" and spec.plugin == text_plugin.__name__ and "mask_prob" in spec.options
    dataset = pm.dataset("wordnet-glosses")
    assert dataset.num_classes == 41 and tuple(dataset.splits) == ("train", "validation", "test")
    assert pm.hook.gperc_input_array(modality="image", sample="text", options={}, tokenizer=None) is None
    assert pm.hook.gperc_tokenizer(modality="image", options={}, corpus=None) is None


def test_parses_a_wordnet_folder(tmp_path):
    (tmp_path / "data.noun").write_text(FAKE_NOUN)
    (tmp_path / "data.verb").write_text(FAKE_VERB)
    texts, classes = wn.parse_data_file(tmp_path / "data.noun", with_lemmas=True)
    assert texts == ["entity: that which is perceived or known",
                     "animal, animate being: a living organism that can move"]
    assert [wn.LEXNAMES[c] for c in classes] == ["noun.Tops", "noun.animal"]
    everything = [wn.load_wordnet_glosses(s, {"text": {"root": str(tmp_path)}}) for s in wn.SPLITS]
    assert sorted(t for d in everything for t in d.texts) == sorted(
        ["that which is perceived or known", "a living organism that can move",
         "change location; move, travel, or proceed"])
    labels = {s["text"]: wn.LEXNAMES[s["target"]] for d in everything for s in d}
    assert labels["change location; move, travel, or proceed"] == "verb.motion"


def test_malformed_and_missing_wordnet(tmp_path, monkeypatch):
    (tmp_path / "data.noun").write_text("00001740 03 n zz entity | gloss\n")
    (tmp_path / "data.verb").write_text(FAKE_VERB)
    with pytest.raises(TaskError, match=r"data.noun:1: expected 'offset lex_filenum"):
        wn.load_wordnet_glosses("train", {"root": str(tmp_path)})
    (tmp_path / "data.noun").write_text("00001740 01 a 01 able 0 000 | having the means\n")
    with pytest.raises(TaskError, match="lex_filenum 3..43"):
        wn.load_wordnet_glosses("train", {"root": str(tmp_path)})
    monkeypatch.delenv(wn.WORDNET_ENV, raising=False)
    monkeypatch.setattr(wn, "WORDNET_DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(TaskError, match="apt-get install wordnet-base"):
        wn.load_wordnet_glosses("train", {"root": str(tmp_path / "empty")})
    with pytest.raises(TaskError, match="split: expected one of"):
        wn.load_wordnet_glosses("dev", {})


@needs_wordnet
def test_real_wordnet_smoke():
    sizes = {s: len(wn.load_wordnet_glosses(s, {})) for s in wn.SPLITS}
    assert sum(sizes.values()) == 95882 and sizes["test"] == sizes["validation"] == 9588
    test = wn.load_wordnet_glosses("test", {"max_samples": 5})
    assert test.classes == list(wn.LEXNAMES) and len(test.classes) == 41
    assert len(test) == 5 and all(isinstance(s["text"], str) and s["text"] for s in test)
    labels = wn.load_wordnet_glosses("train", {}).targets
    assert labels.min() == 0 and labels.max() == 40 and len(np.unique(labels)) == 41
    again = wn.load_wordnet_glosses("test", {"max_samples": 5})
    assert [s["text"] for s in test] == [s["text"] for s in again]


def test_tokenizer_hook(pm, tmp_path, tiny_corpus):
    assert isinstance(pm.hook.gperc_tokenizer(modality="text", options={"tokenizer": "bytes"}, corpus=None),
                      BytesTokenizer)
    with pytest.raises(TaskError, match="corpus: expected the training texts"):
        pm.hook.gperc_tokenizer(modality="text", options={}, corpus=None)
    tok = pm.hook.gperc_tokenizer(modality="text", options={"vocab_size": 300, "cache_dir": str(tmp_path)},
                                  corpus=iter(tiny_corpus * 3))
    loaded = pm.hook.gperc_tokenizer(modality="text", options={"tokenizer_path": str(tok.path)}, corpus=None)
    assert loaded.encode(tiny_corpus[0]) == tok.encode(tiny_corpus[0])


def test_read_text_file(tmp_path):
    (tmp_path / "a.txt").write_text("a small gloss\n")
    assert text_plugin.read_text_file(str(tmp_path / "a.txt")) == "a small gloss"
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(InputError, match="gperc-plugin-text: path: expected UTF-8"):
        text_plugin.read_text_file(str(tmp_path / "b.txt"))
    with pytest.raises(InputError, match="existing text file"):
        text_plugin.read_text_file(str(tmp_path / "none.txt"))


def _arrays(pm, options, texts, labels=None, tokenizer=None):
    examples = []
    for i, text in enumerate(texts):
        ex = pm.hook.gperc_input_array(modality="text", sample=text, options=options, tokenizer=tokenizer)
        if labels is not None:
            ex.target = labels[i]
        examples.append(ex)
    return Collator()(examples)


def test_tiny_perceiver_learns_to_classify_texts(pm, tiny_tokenizer, tiny_corpus):
    torch.manual_seed(0)
    options = {"max_len": 32}
    batch = _arrays(pm, options, tiny_corpus, labels=list(range(8)), tokenizer=tiny_tokenizer)
    assert batch["input_array"].dtype == torch.long and batch["attention_mask"].shape == batch["input_array"].shape
    config = PerceiverConfig(input_len=32, input_dim=32, input_type="tokens", input_num_tokens=tiny_tokenizer.vocab_size,
                             latent_len=8, latent_dim=32, output_dim=32, ffw_latent=64, ffw_output=64, n_classes=8,
                             dropout=0.0, num_layers=1)
    model = Perceiver(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        logits = model(batch["input_array"], batch["attention_mask"])
        loss = torch.nn.functional.cross_entropy(logits, batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (logits.argmax(-1) == batch["target"]).all()


def test_mlm_batch_trains_a_perceiver_without_reduction(pm, tiny_tokenizer, tiny_corpus):
    torch.manual_seed(0)
    options = {"max_len": 24, "task": "mlm", "mask_seed": 0}
    batch = _arrays(pm, options, tiny_corpus, tokenizer=tiny_tokenizer)
    assert batch["input_array"].shape == batch["target"].shape == (8, 24)
    assert (batch["input_array"] == tiny_tokenizer.mask_id).sum() == (batch["target"] != -100).sum() > 0
    config = PerceiverConfig(input_len=24, input_dim=32, input_type="tokens", input_num_tokens=tiny_tokenizer.vocab_size,
                             latent_len=8, latent_dim=32, output_len=24, output_dim=32, ffw_latent=64, ffw_output=64,
                             n_classes=tiny_tokenizer.vocab_size, decoder_reduction=None, dropout=0.0, num_layers=1)
    model = Perceiver(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits = model(batch["input_array"], batch["attention_mask"])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["target"].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert logits.shape == (8, 24, tiny_tokenizer.vocab_size) and losses[-1] < 0.5 * losses[0]


def test_shipped_text_cards_use_documented_options_and_registered_datasets(pm):
    from gperc_core.data.registry import load_registry

    from gperc_plugin_text.arrays import TextOptions

    from gperc_core.data.options import resolve_modality

    assert not [c for c in load_registry().values() if c.name.startswith("text/")]   # the core ships none
    cards = [c for c in load_registry(pm).values() if c.name.startswith("text/")]     # the plugin does
    assert {c.name for c in cards} >= {"text/wordnet-supersense", "text/wordnet-mlm"}
    for card in cards:
        assert card.dataset in pm.datasets, card.name
        assert card.plugin == text_plugin.__name__ and card.source == f"plugin:{card.plugin}"
        assert set(card.options.get("text", {})) <= set(text_plugin.OPTIONS), card.name
        resolve_modality(pm.modality("text"), card.options.get("text", {}), {}, card.source)  # typed, known
        TextOptions(card.options.get("text", {}))                          # values are valid too


def test_bigram_option_through_the_hooks(pm, tmp_path, tiny_corpus):
    from gperc_plugin_text.tokenizers import BigramTokenizer

    options = {"vocab_size": 300, "cache_dir": str(tmp_path), "bigrams": 8, "max_len": 16}
    tok = pm.hook.gperc_tokenizer(modality="text", options=options, corpus=iter(tiny_corpus * 3))
    assert isinstance(tok, BigramTokenizer) and len(tok.bigrams) == 8
    plain = pm.hook.gperc_tokenizer(modality="text", options={**options, "bigrams": 0}, corpus=iter(tiny_corpus * 3))
    array = pm.hook.gperc_input_array(modality="text", sample=tiny_corpus[0], options=options, tokenizer=tok).array
    assert len(array) == 16 and array[-1] == tok.eos_id  # max_len counts both kinds of id
    assert array[:-1:2].tolist() == plain.encode(tiny_corpus[0])[:8] and int(array.max()) < tok.vocab_size
    byte_pairs = pm.hook.gperc_tokenizer(modality="text", options={"tokenizer": "bytes", "bigrams": 3},
                                         corpus=iter(tiny_corpus))
    assert byte_pairs.vocab_size == 260 + 1 + 3 and byte_pairs.kind == "bytes"
    with pytest.raises(TaskError, match=r"options\['bigrams'\]: expected 0 with task='mlm'.*got 8"):
        pm.hook.gperc_tokenizer(modality="text", options={**options, "task": "mlm"}, corpus=iter(tiny_corpus))
    with pytest.raises(TaskError, match=r"corpus: expected the training texts to count options\['bigrams'\]=8"):
        pm.hook.gperc_tokenizer(modality="text", options=options, corpus=None)
    with pytest.raises(TaskError, match=r"options\['bigrams'\]: expected an integer >= 0, got -1"):
        pm.hook.gperc_input_array(modality="text", sample="a", options={"bigrams": -1}, tokenizer=tok)


def test_token_dropout_through_the_transform_hook(pm, tiny_tokenizer):
    options = {"token_dropout": 0.5}
    sample = pm.hook.gperc_input_array(modality="text", sample="a smooth flat top supported by legs",
                                       options=options, tokenizer=tiny_tokenizer)
    out = pm.hook.gperc_transform(modality="text", array=sample, options=options, tokenizer=tiny_tokenizer,
                                  generator=torch.Generator().manual_seed(0), epoch=0, index=0)
    changed = out.array != sample.array
    assert changed.any() and (out.array[changed] == tiny_tokenizer.mask_id).all()
    assert pm.hook.gperc_transform(modality="text", array=sample, options={}, tokenizer=tiny_tokenizer,
                                   generator=torch.Generator().manual_seed(0), epoch=0, index=0) is None
