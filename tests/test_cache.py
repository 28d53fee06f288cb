"""The on-disk cache of converted samples (gperc_core.data.cache): round trips, reuse, fingerprints,
broken entries, concurrent builders, parallel conversion and ``gperc cache list|clear``."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gperc_core import InputArray, hookimpl
from gperc_core.cli import main
from gperc_core.data import cache
from gperc_core.data.tasks import create_task
from gperc_core.errors import PluginError
from gperc_core.plugins.specs import PositionGrid

from taskfakes import FakePlugin, fake_pm


class CountingPlugin(FakePlugin):
    """The fake plugin, counting its ``gperc_input_array`` calls (in this process)."""

    calls = 0

    @hookimpl
    def gperc_input_array(self, modality, sample, options, tokenizer):
        type(self).calls += 1
        return super().gperc_input_array(modality, sample, options, tokenizer)


def versioned_pm(version: str = "1.0", plugin: object | None = None):
    """The fake plugin manager with the fake plugin given a distribution version (so it is cached)."""
    from gperc_core.plugins.manager import get_plugin_manager

    pm = get_plugin_manager(plugins=[plugin or FakePlugin()], entry_points=False, strict=True)
    info = pm.find_info("fakes")
    info.distribution, info.version = "gperc-fakes", version
    return pm


def entries() -> list[dict]:
    return [e for e in cache.list_entries() if e["ok"]]


def same(a: InputArray, b: InputArray) -> bool:
    for f in ("array", "mask", "output"):
        x, y = getattr(a, f), getattr(b, f)
        if (x is None) != (y is None):
            return False
        if x is not None and (x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y)):
            return False
    ta, tb = a.target, b.target
    if isinstance(ta, (torch.Tensor, np.ndarray)):
        return type(ta) is type(tb) and np.array_equal(np.asarray(ta), np.asarray(tb))
    return ta == tb and type(ta) is type(tb) and a.position == b.position


@pytest.mark.parametrize("array", [
    InputArray(torch.randn(5, 3), position=PositionGrid((5,), 4, (10.0,))),
    InputArray(torch.arange(7), mask=torch.tensor([True] * 5 + [False] * 2), target=3),
    InputArray(torch.randn(4, 2).to(torch.bfloat16), output=torch.randn(2, 6, dtype=torch.float16),
               target=torch.tensor([1, -100])),
    InputArray(torch.zeros(0, 3), target=np.array([1, 2])),
    InputArray(torch.tensor(2.5), target=1.5),
    InputArray(torch.ones(2, 2, dtype=torch.uint8), target=True),
    InputArray(torch.ones(2), target={"a": [1, 2]}),
])
def test_row_round_trip_is_identical(array):
    back = cache.decode_row(cache.encode_row(array), array.position)
    assert same(array, back)


def test_task_split_reused_from_cache_without_converting(monkeypatch):
    CountingPlugin.calls = 0
    task = create_task("seq/letters", pm=versioned_pm(plugin=CountingPlugin()))
    first = task.split("train")
    converted = CountingPlugin.calls
    assert converted == 96  # the training split, once (its training and held-out validation parts together)
    task.split("test")
    assert CountingPlugin.calls == 96 + 48
    assert len(entries()) == 2
    CountingPlugin.calls = 0
    again = create_task("seq/letters", pm=versioned_pm(plugin=CountingPlugin()))
    second = again.split("train")
    assert CountingPlugin.calls == 0
    samples = again.data.converted("train")["seq"]
    assert isinstance(samples.base, cache.CachedSamples) and len(samples.base) == 96 and len(samples) == len(first)
    for key in ("input_array", "attention_mask", "target"):
        assert torch.equal(first.batch(torch.arange(len(first)))[key], second.batch(torch.arange(len(first)))[key])
    monkeypatch.setenv("GPERC_DATA_CACHE", "off")
    plain = create_task("seq/letters", pm=versioned_pm()).data.converted("train")["seq"]
    assert isinstance(plain, cache.InMemorySamples)
    assert all(same(plain[i], samples[i]) for i in range(len(plain)))


def test_cached_samples_are_lazy_sequences_and_pickle():
    import pickle

    task = create_task("seq/letters-dense", pm=versioned_pm())
    samples = task.data.converted("test")["seq"]
    assert isinstance(samples, cache.CachedSamples) and samples._table is not None
    clone = pickle.loads(pickle.dumps(samples))
    assert clone._table is None and len(clone) == len(samples)
    assert clone.dataset.num_rows == len(samples)  # the same files as a datasets.Dataset
    assert same(clone[-1], samples[len(samples) - 1])
    assert [same(a, b) for a, b in zip(samples[2:5], samples.rows([2, 3, 4]))] == [True] * 3
    assert np.array_equal(samples.targets[3], samples[3].target)
    with pytest.raises(IndexError):
        samples[len(samples)]


def test_subsampled_and_paired_splits_match_uncached(monkeypatch):
    task = create_task("multi/blob-seq", pm=versioned_pm(), **{"training.max_eval_samples": 20})
    cached = task.data.converted("test")
    assert {len(v) for v in cached.values()} == {20}
    names = {e["selection"] for e in entries()}
    assert "all" in names and any(n.startswith("rows-") for n in names)
    monkeypatch.setenv("GPERC_DATA_CACHE", "off")
    plain = create_task("multi/blob-seq", pm=versioned_pm(), **{"training.max_eval_samples": 20}).data.converted("test")
    for m in cached:
        assert all(same(a, b) for a, b in zip(cached[m], plain[m]))


def test_plugin_version_or_option_change_makes_a_new_entry():
    create_task("blob/blobs", pm=versioned_pm("1.0")).split("test")
    assert len(entries()) == 2
    create_task("blob/blobs", pm=versioned_pm("1.1")).split("test")
    assert len(entries()) == 4
    task = create_task("blob/blobs", pm=versioned_pm("1.1"), **{"training.max_eval_samples": 10})
    assert isinstance(task.data.converted("test")["blob"], cache.SelectedSamples)  # a view of the whole split
    assert len(entries()) == 4
    key = dict(dataset="d", split="s", modality="m", tokenizer="none", plugins={"p": "p==1"}, selection="all")
    assert cache.entry_key(options={"a": 1}, **key) != cache.entry_key(options={"a": 2}, **key)
    assert cache.entry_key(options={"a": 1}, **{**key, "tokenizer": None}) is None


def test_real_plugin_option_change_makes_a_new_entry():
    small = {"training.max_train_samples": 16, "training.max_eval_samples": 8}
    create_task("image/digits", **small).split("test")
    assert sorted(e["split"] for e in entries()) == ["test", "train"]
    # the training entry holds the 16 training rows and the 8 held-out validation rows
    assert all(e["selection"].startswith("rows-") and e["rows"] in (24, 8) for e in entries())
    create_task("image/digits", **small).split("test")
    assert len(entries()) == 2
    create_task("image/digits", **small, **{"options.image.num_bands": 3}).split("test")
    assert len(entries()) == 4


def test_in_process_plugins_are_not_cached():
    create_task("blob/blobs", pm=fake_pm()).split("test")
    assert cache.list_entries() == []


def _samples(n: int, delay: float = 0.0):
    def convert(i: int) -> InputArray:
        if delay:
            time.sleep(delay)
        return InputArray(torch.full((3,), float(i)), target=i)
    return convert


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "no-manifest"])
def test_broken_entry_is_detected_and_rebuilt(tmp_path, damage):
    built = cache.get_or_build("e", "fp", {"dataset": "d"}, _samples(100), 100, root=tmp_path, num_proc=1)
    shard = built.path / "shard-00000.arrow"
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(shard.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        shard.write_bytes(bytes(raw))
    elif damage == "manifest":
        (built.path / "manifest.json").write_text('{"format": 1, "rows": ')
    else:
        (built.path / "manifest.json").unlink()
    assert cache.check_entry(built.path, "fp")[0] is None
    with pytest.warns(cache.CacheWarning, match="broken"):
        again = cache.get_or_build("e", "fp", {"dataset": "d"}, _samples(100), 100, root=tmp_path, num_proc=1)
    assert cache.check_entry(again.path, "fp")[0] is not None
    assert [int(again[i].array[0]) for i in range(100)] == list(range(100))


def _build_in_child(root: str, delay: float, out: str, locked: bool) -> None:
    if not locked:
        import contextlib

        cache._entry_lock = lambda *a: contextlib.nullcontext()
    warnings.simplefilter("ignore")
    got = cache.get_or_build("race", "fp", {"dataset": "d"}, _samples(80, delay), 80, root=Path(root), num_proc=1)
    Path(out).write_text(json.dumps([int(got[i].array[0]) for i in range(len(got))]))


@pytest.mark.parametrize("locked", [True, False])
def test_two_processes_building_one_entry_leave_one_good_entry(tmp_path, locked):
    ctx = multiprocessing.get_context("fork")
    outs = [tmp_path / f"out{k}.json" for k in range(2)]
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path / "c"), 0.005, str(o), locked)) for o in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert [json.loads(o.read_text()) for o in outs] == [list(range(80))] * 2
    listed = cache.list_entries(tmp_path / "c")
    assert [e["name"] for e in listed] == ["race"] and listed[0]["ok"]
    assert cache.check_entry(tmp_path / "c" / "race", "fp")[0]["rows"] == 80


def test_a_builder_waiting_for_another_says_so(tmp_path, capsys):
    """The entry lock waits for the process that builds the same entry, and says on stderr that it waits
    (a second training of a card looked hung while the first converted its data)."""
    fcntl = pytest.importorskip("fcntl")
    import threading

    (tmp_path / ".locks").mkdir()
    other = open(tmp_path / ".locks" / "e.lock", "a+")  # another open file: another holder, as a process is
    fcntl.flock(other.fileno(), fcntl.LOCK_EX)
    released = threading.Event()

    def release_later() -> None:
        time.sleep(0.3)
        released.set()
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)

    threading.Thread(target=release_later).start()
    with cache._entry_lock(tmp_path, "e"):
        assert released.is_set()
    other.close()
    assert "gperc cache: waiting for another process that is building e" in capsys.readouterr().err
    with cache._entry_lock(tmp_path, "e"):  # free: no message
        pass
    assert capsys.readouterr().err == ""


def test_parallel_conversion_matches_and_reports_plugin_errors(tmp_path):
    par = cache.get_or_build("p", "fp", {}, _samples(300), 300, root=tmp_path, num_proc=2)
    assert len(par.manifest["shards"]) == 2
    assert [int(par[i].array[0]) for i in range(300)] == list(range(300))

    def bad(i: int) -> InputArray:
        if i == 250:
            raise PluginError("plugin 'x': gperc_input_array (split 'train', sample 250): boom")
        return InputArray(torch.zeros(1))

    with pytest.raises(PluginError, match="sample 250"):
        cache.get_or_build("q", "fp", {}, bad, 300, root=tmp_path, num_proc=2)
    assert [e["name"] for e in cache.list_entries(tmp_path)] == ["p"]  # nothing half-built left


def test_position_grids_must_agree(tmp_path):
    def mixed(i: int) -> InputArray:
        return InputArray(torch.zeros(1), position=PositionGrid((i % 2 + 1,), 2))

    def one_grid(grids):
        if len(grids) > 1:
            raise PluginError(f"{len(grids)} grids")

    with pytest.raises(PluginError, match="2 grids"):
        cache.get_or_build("g", "fp", {}, mixed, 10, root=tmp_path, num_proc=1, check_grids=one_grid)


def test_cli_cache_list_and_clear(capsys):
    create_task("blob/blobs", pm=versioned_pm()).split("test")
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "blobs--train--blob--all" in out and "blobs/test/blob" in out and "total" in out
    assert main(["cache", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 2 and all(e["bytes"] > 0 for e in listed)
    assert main(["cache", "clear", "blobs/test/*"]) == 0
    assert "removed 1 entr" in capsys.readouterr().out
    assert [e["split"] for e in entries()] == ["train"]
    assert main(["cache", "clear"]) == 0
    assert cache.list_entries() == []
