"""Tests of gperc_core.data.collate: padding, masks, outputs, targets, sentinels and bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gperc_core import InputArray, InputError, MASK_SENTINEL, OUTPUT_SENTINEL, is_mask_sentinel, is_output_sentinel
from gperc_core.data.collate import Collator, collate


def raw(m: int, c: int = 3, **kwargs) -> InputArray:
    return InputArray(torch.arange(1, m * c + 1, dtype=torch.float32).reshape(m, c), **kwargs)


def test_raw_samples_pad_to_batch_max_with_mask():
    batch = collate([raw(2), raw(4), raw(3)], pad_value=-7.0)
    x, mask = batch["input_array"], batch["attention_mask"]
    assert x.shape == (3, 4, 3) and x.dtype == torch.float32
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [True, True, True, False]]
    assert torch.equal(x[0, :2], raw(2).array) and bool((x[0, 2:] == -7.0).all())
    assert batch["output_array"] is None and batch["target"] is None


def test_equal_lengths_without_masks_give_no_mask_and_sentinels_on_request():
    plain = collate([raw(3), raw(3)])
    assert plain["attention_mask"] is None and plain["output_array"] is None
    tensors = collate([raw(3), raw(3)], sentinels=True)
    assert tensors["attention_mask"].shape == (2,) and is_mask_sentinel(tensors["attention_mask"])
    assert tensors["output_array"].shape == (2,) and is_output_sentinel(tensors["output_array"])
    assert int(tensors["attention_mask"][0]) == MASK_SENTINEL and int(tensors["output_array"][0]) == OUTPUT_SENTINEL
    # a real mask is never replaced by a sentinel
    padded = collate([raw(2), raw(3)], sentinels=True)
    assert padded["attention_mask"].shape == (2, 3)


def test_tokens_pad_with_zero_and_become_long():
    batch = collate([InputArray(torch.tensor([5, 6, 7], dtype=torch.int32)), InputArray(torch.tensor([9]))])
    assert batch["input_array"].dtype == torch.long
    assert batch["input_array"].tolist() == [[5, 6, 7], [9, 0, 0]]
    assert batch["attention_mask"].tolist() == [[True, True, True], [True, False, False]]


def test_per_sample_masks_combine_with_length_padding():
    a = raw(3, mask=torch.tensor([True, False, True]))
    b = raw(2)
    batch = collate([a, b], pad_to=4)
    assert batch["attention_mask"].tolist() == [[True, False, True, False], [True, True, False, False]]
    same_length = collate([raw(2, mask=torch.tensor([False, True])), raw(2)])
    assert same_length["attention_mask"].tolist() == [[False, True], [True, True]]


def test_pad_to_fixed_length_and_too_long_sample_is_named():
    batch = collate([raw(2), raw(3)], pad_to=5)
    assert batch["input_array"].shape == (2, 5, 3) and batch["attention_mask"].sum(1).tolist() == [2, 3]
    with pytest.raises(InputError, match=r"pad_to=4.*got 6 in examples\[1\]"):
        collate([raw(2), raw(6)], pad_to=4)


def test_integer_and_float_targets():
    ints = collate([raw(2, target=3), raw(2, target=torch.tensor(1))])
    assert ints["target"].dtype == torch.long and ints["target"].tolist() == [3, 1]
    floats = collate([raw(2, target=0.5), raw(2, target=-1.5)])
    assert floats["target"].dtype == torch.float32 and floats["target"].tolist() == [0.5, -1.5]
    vectors = collate([raw(2, target=torch.tensor([0.1, 0.2])), raw(2, target=torch.tensor([0.3, 0.4]))])
    assert vectors["target"].shape == (2, 2) and vectors["target"].dtype == torch.float32


def test_per_sample_outputs_of_varying_length_pad_targets_with_ignore_index():
    a = raw(3, output=torch.ones(2, 4), target=[1, 0])
    b = raw(3, output=torch.full((4, 4), 2.0), target=torch.tensor([2, 2, 1, 0]))
    batch = collate([a, b])
    out, target = batch["output_array"], batch["target"]
    assert out.shape == (2, 4, 4) and bool((out[0, 2:] == 0).all()) and bool((out[1] == 2.0).all())
    assert target.tolist() == [[1, 0, -100, -100], [2, 2, 1, 0]]
    assert collate([a, b], target_pad=-1)["target"][0].tolist() == [1, 0, -1, -1]


def test_position_aligned_targets_follow_the_input_padding():
    a = InputArray(torch.tensor([3, 4, 5]), target=[-100, 4, -100])
    b = InputArray(torch.tensor([6]), target=[6])
    assert collate([a, b], pad_to=5)["target"].tolist() == [[-100, 4, -100, -100, -100], [6, -100, -100, -100, -100]]


@pytest.mark.parametrize("examples, match", [
    ([], r"examples: expected a non-empty sequence"),
    ("abc", r"examples: expected a non-empty sequence"),
    ([raw(2), "x"], r"examples\[1\]: expected an InputArray, got str"),
    ([raw(2, c=3), raw(2, c=4)], r"examples\[1\]\.array: expected a torch.float32 tensor \[m, 3\]"),
    ([raw(2), InputArray(torch.ones(2, 3, dtype=torch.float64))], r"examples\[1\]\.array: .*float32"),
    ([raw(2), InputArray(torch.ones(2, 3, dtype=torch.long))], r"examples\[1\]\.array: expected a float tensor"),
    ([InputArray(torch.tensor([1, 2])), raw(2)], r"examples\[1\]\.array: expected integer token ids"),
    ([raw(2), InputArray(torch.ones(2, 3, 1))], r"examples\[1\]\.array"),
    ([raw(2), InputArray(torch.ones(0, 3))], r"examples\[1\]\.array: expected at least one element"),
    ([raw(2), raw(2, mask=torch.ones(3, dtype=torch.bool))], r"examples\[1\]\.mask: expected a bool tensor \[2\]"),
    ([raw(2, mask=torch.tensor([1, 1]))], r"examples\[0\]\.mask: expected a bool tensor"),
    ([raw(2, mask=torch.zeros(2, dtype=torch.bool))], r"examples\[0\]\.mask: expected at least one True"),
    ([raw(2, output=torch.ones(1, 4)), raw(2)], r"examples\[1\]\.output: .*got None"),
    ([raw(2, output=torch.ones(1, 4)), raw(2, output=torch.ones(1, 5))], r"examples\[1\]\.output: .*\[o>=1, 4\]"),
    ([raw(2, target=1), raw(2)], r"examples\[1\]\.target: .*got None"),
    ([raw(2, target=1), raw(2, target=0.5)], r"examples\[1\]\.target: expected a target like examples\[0\]"),
    ([raw(2, target=True)], r"examples\[0\]\.target"),
    ([raw(2, target="cat")], r"examples\[0\]\.target"),
    ([raw(2, output=torch.ones(2, 4), target=[1]), raw(2, output=torch.ones(2, 4), target=[1, 0])],
     r"examples\[0\]\.target: expected one label per output query \(2\), got 1"),
])
def test_bad_input_names_the_argument_and_sample(examples, match):
    with pytest.raises(InputError, match=match):
        collate(examples)


@pytest.mark.parametrize("kwargs, match", [
    (dict(pad_to=0), "pad_to"), (dict(pad_to=2.5), "pad_to"), (dict(sentinels=1), "sentinels"),
    (dict(pad_value="0"), "pad_value"), (dict(target_pad=1.5), "target_pad"),
])
def test_bad_collator_settings(kwargs, match):
    with pytest.raises(InputError, match=match):
        Collator(**kwargs)


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=6), tokens=st.booleans(),
       extra=st.integers(0, 3))
def test_padding_keeps_every_sample_and_masks_exactly_the_padding(lengths, tokens, extra):
    gen = torch.Generator().manual_seed(sum(lengths))
    if tokens:
        examples = [InputArray(torch.randint(1, 50, (m,), generator=gen)) for m in lengths]
    else:
        examples = [InputArray(torch.randn(m, 2, generator=gen)) for m in lengths]
    pad_to = max(lengths) + extra
    batch = Collator(pad_to=pad_to, sentinels=True)(examples)
    x, mask = batch["input_array"], batch["attention_mask"]
    assert x.shape[:2] == (len(lengths), pad_to)
    if mask.dim() == 1:  # the sentinel: nothing was padded
        assert all(m == pad_to for m in lengths)
    else:
        assert mask.sum(1).tolist() == lengths
    for i, ex in enumerate(examples):
        assert torch.equal(x[i, :lengths[i]], ex.array.long() if tokens else ex.array)
        assert bool((x[i, lengths[i]:] == 0).all())
