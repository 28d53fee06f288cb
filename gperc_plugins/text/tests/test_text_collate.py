"""The text plugin's collator: the same batches as the core's Collator (padding, masks, targets,
sentinels), rounding to a multiple, and the way the core and the conformance kit reach it."""

from __future__ import annotations

import pytest
import torch

import gperc_plugin_text.plugin as text_plugin
from gperc_core import DatasetSpec, InputArray, InputError, hookimpl
from gperc_core.data.collate import Collator
from gperc_core.model.sentinels import is_mask_sentinel, is_output_sentinel
from gperc_core.plugins.manager import get_plugin_manager
from gperc_core.testing.conformance import check_collation
from gperc_plugin_text.arrays import TextOptions, text_input_array
from gperc_plugin_text.collate import TextCollator

TEXTS = ["a cat", "move fast using the feet", "a building where people live", "day"]


def _arrays(task="classification", targets=True):
    options = TextOptions({"tokenizer": "bytes", "max_len": 32, "task": task, "mask_seed": 0})
    out = [text_input_array(t, options) for t in TEXTS]
    if targets and task == "classification":
        out = [InputArray(array=a.array, target=i % 3) for i, a in enumerate(out)]
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] is None and b[key] is None) or torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("sentinels", [False, True])
@pytest.mark.parametrize("task, targets", [("classification", True), ("classification", False), ("mlm", True)])
def test_same_batch_as_the_core_collator(task, targets, sentinels):
    arrays = _arrays(task, targets)
    _same(TextCollator(sentinels=sentinels)(arrays), Collator(sentinels=sentinels)(arrays))


def test_padding_mask_and_targets():
    arrays = _arrays()
    batch = TextCollator()(arrays)
    lengths = [a.array.shape[0] for a in arrays]
    assert batch["input_array"].shape == (4, max(lengths)) and batch["input_array"].dtype == torch.long
    for i, (a, n) in enumerate(zip(arrays, lengths)):
        assert torch.equal(batch["input_array"][i, :n], a.array) and not batch["input_array"][i, n:].any()
        assert batch["attention_mask"][i, :n].all() and not batch["attention_mask"][i, n:].any()
    assert batch["target"].tolist() == [0, 1, 2, 0] and batch["output_array"] is None


def test_rounds_to_a_multiple_and_per_token_targets_pad_with_the_ignore_index():
    arrays = _arrays("mlm")  # padded to max_len=32 by the plugin, with their own masks and labels
    batch = TextCollator(multiple_of=24)(arrays)
    assert batch["input_array"].shape == (4, 48) and batch["target"].shape == (4, 48)
    assert not batch["attention_mask"][:, 32:].any() and (batch["target"][:, 32:] == -100).all()
    assert torch.equal(batch["attention_mask"][:, :32], torch.stack([a.mask for a in arrays]))
    plain = TextCollator(multiple_of=8)(_arrays())
    assert plain["input_array"].shape[1] % 8 == 0 and plain["input_array"].shape[1] >= 28


def test_no_padding_gives_no_mask_or_the_sentinels():
    same = [InputArray(array=torch.arange(1, 6)), InputArray(array=torch.arange(2, 7))]
    assert TextCollator()(same)["attention_mask"] is None
    batch = TextCollator(sentinels=True)(same)
    assert is_mask_sentinel(batch["attention_mask"]) and is_output_sentinel(batch["output_array"])
    assert batch["target"] is None


def test_samples_with_output_arrays_go_to_the_core_collator():
    arrays = [InputArray(array=torch.arange(1, 4), output=torch.ones(2, 3)), InputArray(array=torch.arange(1, 6),
                                                                                       output=torch.ones(2, 3))]
    _same(TextCollator(multiple_of=8)(arrays), Collator(pad_to=8)(arrays))


@pytest.mark.parametrize("examples, match", [
    ([], "expected a non-empty sequence of InputArray"),
    ([InputArray(array=torch.ones(3, 2))], r"examples\[0\].array: expected non-empty integer token ids"),
    ([InputArray(array=torch.arange(3)), InputArray(array=torch.zeros(0, dtype=torch.long))],
     r"examples\[1\].array: expected non-empty integer token ids"),
    ([InputArray(array=torch.arange(3), mask=torch.ones(2, dtype=torch.bool))],
     r"examples\[0\].mask: expected a bool tensor \[3\]"),
])
def test_bad_samples_are_clear_errors(examples, match):
    with pytest.raises(InputError, match=match):
        TextCollator()(examples)


def test_bad_settings_are_clear_errors():
    with pytest.raises(InputError, match="multiple_of: expected an integer >= 1, got 0"):
        TextCollator(multiple_of=0)
    with pytest.raises(InputError, match=r"options\['pad_multiple'\]: expected a positive integer, got 'x'"):
        text_plugin.gperc_collator(modality="text", options={"pad_multiple": "x"}, sentinels=False)


def test_the_hook_answers_for_text_only():
    pm = get_plugin_manager(plugins=[text_plugin], entry_points=False, strict=True)
    collator = pm.hook.gperc_collator(modality="text", options={"pad_multiple": 8}, sentinels=True, tokenizer=None)
    assert isinstance(collator, TextCollator) and collator.multiple_of == 8 and collator.sentinels
    assert pm.hook.gperc_collator(modality="image", options={}, sentinels=False, tokenizer=None) is None


def test_the_conformance_kit_collation_check_passes_with_it():
    pm = get_plugin_manager(plugins=[text_plugin], entry_points=False, strict=True)
    for sentinels in (False, True):
        for task in ("classification", "mlm"):
            batch = check_collation(pm, "text", "text", _arrays(task), {"pad_multiple": 8}, sentinels=sentinels)
            assert batch["input_array"].shape[1] % 8 == 0


class _TinyTexts:
    """A plugin with one small text dataset and its task card (the text plugin brings the modality)."""

    __name__ = "tinytexts"

    @hookimpl
    def gperc_register_datasets(self):
        def load(split, options):
            return [{"text": text * (1 + i % 3), "target": i % 2} for i, text in enumerate(TEXTS * 4)]
        return [DatasetSpec("tinytexts", ["text"], load, num_classes=2)]

    @hookimpl
    def gperc_register_tasks(self):
        return [{"name": "text/tiny", "modalities": ["text"], "dataset": "tinytexts",
                 "options": {"text": {"tokenizer": "bytes", "max_len": 48, "pad_multiple": 8}},
                 "model": {"latent_len": 4, "latent_dim": 16, "num_heads": 2, "num_layers": 1},
                 "training": {"epochs": 1, "batch_size": 8}}]


def test_the_core_collates_text_tasks_with_it(monkeypatch):
    from gperc_core.data.tasks import create_task

    calls = []
    original = TextCollator.__call__
    monkeypatch.setattr(TextCollator, "__call__", lambda self, ex: calls.append(len(ex)) or original(self, ex))
    pm = get_plugin_manager(plugins=[text_plugin, _TinyTexts()], entry_points=False, strict=True)
    task = create_task("text/tiny", pm=pm)
    assert calls and task.config.input_len % 8 == 0  # whole splits collated by the text collator, rounded up
    data = task.split("train")
    batch = data.batch(torch.arange(len(data)), trim=False)
    assert len(data) + len(task.split("validation")) == 16  # 10 % of each class held out for validation
    assert batch["input_array"].shape == (len(data), task.config.input_len) and sorted(batch["target"].tolist()) == [0] * 7 + [1] * 7
    lengths = batch["attention_mask"].sum(1)
    assert int(lengths.max()) <= task.config.input_len and int(lengths.min()) < int(lengths.max())
