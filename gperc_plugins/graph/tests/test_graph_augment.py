"""Token dropping (``options['drop_tokens']``): the graph plugin's training-time augmentation."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from gperc_core import ConfigError, InputArray
from gperc_plugin_graph.augment import drop_tokens
from gperc_plugin_graph.plugin import gperc_input_array, gperc_transform

OPTIONS = {"position": "random_walk", "pe_dim": 4, "edge_tokens": True}


def _array(graph=None, **extra) -> InputArray:
    return gperc_input_array(modality="graph", sample=graph or nx.cycle_graph(30), options={**OPTIONS, **extra})


def test_off_by_default_and_other_modalities_ignored():
    array = _array()
    assert gperc_transform(modality="graph", array=array, options=OPTIONS, generator=torch.Generator()) is None
    assert gperc_transform(modality="image", array=array, options={**OPTIONS, "drop_tokens": 0.5},
                           generator=torch.Generator()) is None


def test_hides_tokens_by_their_mask_only_and_follows_the_generator():
    array = _array()
    m = array.array.shape[0]  # 30 nodes + 30 edges
    opts = {**OPTIONS, "drop_tokens": 0.25}
    out = gperc_transform(modality="graph", array=array, options=opts, generator=torch.Generator().manual_seed(1))
    assert out is not array and array.mask is None                      # the cached array is not changed
    assert torch.equal(out.array, array.array) and out.array is array.array  # tokens untouched, shared
    assert out.mask.dtype == torch.bool and out.mask.shape == (m,)
    assert 0 < int((~out.mask).sum()) < m // 2                          # ~15 of 60 hidden
    again = gperc_transform(modality="graph", array=array, options=opts, generator=torch.Generator().manual_seed(1))
    other = gperc_transform(modality="graph", array=array, options=opts, generator=torch.Generator().manual_seed(2))
    assert torch.equal(again.mask, out.mask) and not torch.equal(other.mask, out.mask)


def test_rate_is_the_expected_fraction_and_padding_stays_hidden():
    base = InputArray(array=torch.zeros(1000, 3), mask=torch.arange(1000) < 800)  # 200 padding elements
    out = drop_tokens(base, 0.3, torch.Generator().manual_seed(0))
    assert not out.mask[800:].any()
    assert abs(int(out.mask[:800].sum()) - 560) < 50                      # 800 x 0.7, within ~4 sd


def test_at_least_one_real_token_stays():
    base = InputArray(array=torch.zeros(4, 2), mask=torch.tensor([False, True, True, False]))
    for seed in range(50):
        out = drop_tokens(base, 0.999, torch.Generator().manual_seed(seed))
        assert int(out.mask.sum()) >= 1 and not out.mask[[0, 3]].any()


def test_node_queries_are_kept():
    array = _array(node_queries=True, output_dim=16)
    out = drop_tokens(array, 0.5, torch.Generator().manual_seed(0))
    assert out.output is array.output and out.output.shape[0] == 30


@pytest.mark.parametrize("value", [1.0, -0.1, "0.2", True])
def test_bad_rates_name_the_option(value):
    with pytest.raises(ConfigError, match=r"options\['drop_tokens'\]: expected a number in \[0, 1\)"):
        _array(drop_tokens=value)


def test_a_whole_number_rate_is_accepted_in_a_card():
    from gperc_core.data.registry import find_card, plugin_manager
    from gperc_core.data.tasks import Task

    pm = plugin_manager()
    for rate in (0, 0.5):
        task = Task(find_card("graph/mutag", pm), pm, {"options.graph.drop_tokens": rate})
        assert task.data.options["graph"]["drop_tokens"] == rate


def test_training_batches_hide_tokens_afresh_each_epoch_and_evaluation_sees_all():
    from gperc_core.data.loader import SampleDataset
    from gperc_core.data.registry import find_card, plugin_manager
    from gperc_core.data.tasks import Task

    pm = plugin_manager()
    data = Task(find_card("graph/mutag", pm), pm, {"options.graph.drop_tokens": 0.2}).data
    samples = data.samples("train")
    train = SampleDataset(samples, data, transform=True, seed=0, split="train")
    plain = SampleDataset(samples, data, transform=False, seed=0, split="train")
    masks = [train.sample(0, epoch)["graph"].mask for epoch in (0, 1)]
    assert plain.sample(0, 0)["graph"].mask is None                     # evaluation and probes: every token
    assert not torch.equal(masks[0], masks[1])
    assert torch.equal(SampleDataset(samples, data, transform=True, seed=0, split="train").sample(0, 0)["graph"].mask,
                       masks[0])                                        # a resumed run sees the same draws
