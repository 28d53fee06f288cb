"""Text arrays: token ids with EOS and truncation, MLM masking, bad input, TextConfig and BinaryConfig."""

from __future__ import annotations

import pytest
import torch

from gperc_core import ConfigError, InputError, TaskError
from gperc_plugin_text import BinaryConfig, BytesTokenizer, TextConfig
from gperc_plugin_text.arrays import IGNORE, TextOptions, drop_tokens, text_input_array, token_ids


def _opts(**kw):
    return TextOptions({"tokenizer": "bytes", **kw}, BytesTokenizer())


def test_ids_end_with_eos_and_truncate_keeping_it():
    ids = token_ids("abcdef", _opts(max_len=4))
    assert ids.tolist() == [ord("a") + 4, ord("b") + 4, ord("c") + 4, 2] and ids.dtype == torch.long
    assert token_ids("abc", _opts(add_eos=False)).tolist() == [101, 102, 103]
    assert token_ids(b"\x01", TextOptions({"tokenizer": "bytes"})).tolist() == [5, 2]


@pytest.mark.parametrize("sample, fragment", [
    ("", "non-empty text"), ("  \n", "non-empty text"), (None, "expected a string"), (123, "expected a string"),
    (["a", "b"], "expected a string"),
])
def test_bad_text_is_an_input_error_naming_the_plugin(sample, fragment):
    with pytest.raises(InputError, match="gperc-plugin-text: sample: expected") as info:
        text_input_array(sample, _opts())
    assert fragment in str(info.value)


def test_text_that_tokenises_to_nothing(tiny_tokenizer):
    class Silent:
        vocab_size = 10

        def encode(self, text):
            return []

    with pytest.raises(InputError, match="tokenises to at least one token"):
        text_input_array("words", TextOptions({}, Silent()))
    with pytest.raises(InputError, match="expected a string"):          # bytes only with the bytes tokenizer
        text_input_array(b"abc", TextOptions({}, tiny_tokenizer))


@pytest.mark.parametrize("options, name", [
    ({"tokenizer": "wordpiece"}, "tokenizer"), ({"tokenizer": BytesTokenizer()}, "tokenizer"), ({"max_len": 1}, "max_len"),
    ({"task": "translation"}, "task"), ({"mask_prob": 1.5}, "mask_prob"), ({"mask_seed": -1}, "mask_seed"),
    ({"add_eos": "yes"}, "add_eos"), ({"vocab_size": "big"}, "vocab_size"), ({"token_dropout": 1.0}, "token_dropout"),
    ({"token_dropout": -0.1}, "token_dropout"), ({"token_dropout": True}, "token_dropout"),
    ({"token_dropout": 0.1, "task": "mlm"}, "token_dropout"),
])
def test_bad_options_are_task_errors(options, name):
    with pytest.raises(TaskError, match=rf"gperc-plugin-text: options\['{name}'\]"):
        TextOptions(options)


def test_the_tokenizer_argument_must_be_a_tokenizer():
    with pytest.raises(TaskError, match="gperc-plugin-text: tokenizer: expected a tokenizer"):
        TextOptions({}, object())


def test_sentencepiece_needs_a_tokenizer_from_the_core():
    with pytest.raises(TaskError, match="trained SentencePiece tokenizer"):
        text_input_array("hello", TextOptions({}))


def test_mlm_masks_about_15_percent_and_labels_them(tiny_tokenizer):
    options = TextOptions({"task": "mlm", "max_len": 64}, tiny_tokenizer)
    torch.manual_seed(0)
    masked = total = 0
    for text in ["a piece of furniture having a smooth flat top supported by legs"] * 50:
        ex = text_input_array(text, options)
        ids = token_ids(text, options)
        n = ids.shape[0]
        assert ex.array.shape == ex.target.shape == ex.mask.shape == (64,)
        assert ex.mask[:n].all() and not ex.mask[n:].any() and (ex.array[n:] == tiny_tokenizer.pad_id).all()
        chosen = ex.target != IGNORE
        assert chosen.any() and (ex.array[chosen] == tiny_tokenizer.mask_id).all()
        assert torch.equal(ex.target[chosen], ids[chosen[:n]]) and torch.equal(ex.array[:n][~chosen[:n]], ids[~chosen[:n]])
        assert ex.array[n - 1] == tiny_tokenizer.eos_id                  # EOS is never masked
        masked, total = masked + int(chosen.sum()), total + n - 1
    assert 0.08 < masked / total < 0.25


def test_mlm_masks_are_fixed_by_the_seed_and_never_empty():
    options = _opts(task="mlm", mask_seed=7, max_len=16, mask_prob=0.01)
    first, again = text_input_array("hi", options), text_input_array("hi", options)
    assert torch.equal(first.array, again.array) and (first.target != IGNORE).sum() == 1
    other = text_input_array("hi", _opts(task="mlm", mask_seed=8, max_len=16, mask_prob=0.5))
    assert other.array.shape == (16,)


def test_text_config_keeps_gperc_arithmetic():
    config = TextConfig(latent_dim=32, vocab_size=300, max_len=64, latent_frac=0.25, ffw_ratio=2.0)
    assert (config.input_len, config.input_dim, config.latent_len, config.output_len) == (64, 32, 16, 64)
    assert (config.input_type, config.input_num_tokens, config.n_classes) == ("tokens", 300, 300)
    assert config.decoder_reduction is None and config.decoder_residual is True and config.ffw_latent == 64
    assert TextConfig.from_json(config.to_json()) == config
    classify = TextConfig(32, 300, 64, n_classes=41, decoder_reduction="mean")
    assert classify.n_classes == 41 and classify.decoder_reduction == "mean"


def test_binary_config_keeps_gperc_arithmetic():
    config = BinaryConfig(seqlen=128, vocab_size=BytesTokenizer.vocab_size, latent_dim=16, n_classes=4)
    assert (config.input_len, config.latent_len, config.output_len, config.input_num_tokens) == (128, 12, 128, 260)
    assert (config.decoder_reduction, config.decoder_residual, config.n_classes) == ("eot", False, 4)
    dense = BinaryConfig(128, 260, 16, task=None)
    assert (dense.decoder_reduction, dense.decoder_residual, dense.n_classes) == (None, True, 260)
    assert BinaryConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("make, name", [
    (lambda: BinaryConfig(128, 260, 16), "n_classes"), (lambda: BinaryConfig(128, 260, 16, task="mlm"), "task"),
    (lambda: TextConfig(32, 0, 64), "vocab_size"), (lambda: TextConfig(32, 300, 64, latent_frac=-1), "latent_frac"),
])
def test_config_errors(make, name):
    with pytest.raises(ConfigError, match=name):
        make()


def test_token_dropout_masks_about_its_share_afresh_per_generator_and_never_eos(tiny_tokenizer):
    options = TextOptions({"token_dropout": 0.2}, tiny_tokenizer)
    sample = text_input_array("a piece of furniture having a smooth flat top supported by legs", options)
    ids, n = sample.array, sample.array.shape[0]
    dropped = total = 0
    draws = []
    for seed in range(60):
        out = drop_tokens(sample, options, torch.Generator().manual_seed(seed))
        chosen = out.array != ids
        assert out.array.shape == ids.shape and (out.array[chosen] == tiny_tokenizer.mask_id).all()
        assert out.array[-1] == tiny_tokenizer.eos_id                      # EOS is never dropped
        dropped, total = dropped + int(chosen.sum()), total + n - 1
        draws.append(out.array)
    assert 0.12 < dropped / total < 0.28
    assert len({tuple(d.tolist()) for d in draws}) > 30                 # fresh masks for fresh generators
    again = drop_tokens(sample, options, torch.Generator().manual_seed(0))
    assert torch.equal(again.array, draws[0])                           # and the same for the same generator


def test_token_dropout_off_changes_nothing(tiny_tokenizer):
    sample = text_input_array("a smooth flat top", TextOptions({}, tiny_tokenizer))
    assert drop_tokens(sample, TextOptions({}, tiny_tokenizer), torch.Generator().manual_seed(0)) is None
