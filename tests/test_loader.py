"""The training data path (gperc_core.data.loader): per-epoch transforms seeded from (seed, epoch,
index), exact resume through DataLoader workers, data-parallel shards, length bucketing, sentinels,
multimodal batches, and a training split larger than the memory the run may use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gperc_core import InputArray, create_task, hookimpl
from gperc_core.data.loader import EpochSampler, default_num_workers, sample_seed
from gperc_core.io import checkpoint as ckpt
from gperc_core.model.sentinels import IGNORE_INDEX, is_output_sentinel
from gperc_core.parallel.shards import replica_share
from gperc_core.plugins.manager import get_plugin_manager
from gperc_core.train.trainer import Trainer

from taskfakes import FakePlugin

FAST = {"training.epochs": 2, "training.batch_size": 16, "training.max_train_samples": 48,
        "training.max_eval_samples": 16, "training.progress": False}


class Jitter:
    """A second plugin: a random shift of every blob point, drawn from the hook's generator."""

    __name__ = "jitter"

    @hookimpl
    def gperc_transform(self, modality, array, generator):
        if modality != "blob":
            return None
        return InputArray(array=array.array + torch.randn(array.array.shape, generator=generator),
                          mask=array.mask, target=array.target, position=array.position)


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(plugins=[FakePlugin(), Jitter()], entry_points=False, strict=True)


def _trainer(pm, out, **extra):
    return Trainer(create_task("blob/blobs", pm=pm, **{**FAST, **extra}), out)


def test_two_epochs_see_different_transforms_the_same_in_every_run(pm, tmp_path):
    loader = _trainer(pm, tmp_path).loader
    raw = loader.dataset.sample(0)["blob"].array
    first, second = loader.dataset[(0, 0, True)][0]["blob"].array, loader.dataset[(1, 0, True)][0]["blob"].array
    assert first.shape == raw.shape and not torch.equal(first, raw) and not torch.equal(first, second)
    again = _trainer(pm, tmp_path / "again").loader.dataset[(0, 0, True)][0]["blob"].array
    assert torch.equal(first, again)
    assert sample_seed(0, 0, 1) != sample_seed(0, 1, 0) != sample_seed(1, 0, 0)
    # evaluation data is never transformed
    eval_data = _trainer(pm, tmp_path / "e").eval_data
    assert torch.equal(eval_data.inputs["blob"], create_task("blob/blobs", pm=pm, **FAST).split("validation").inputs["blob"])


def test_resumed_run_sees_the_same_batches_and_ends_bit_exact(pm, tmp_path):
    straight = _trainer(pm, tmp_path / "a", **{"model.dropout": 0.2})
    batches = [(s, b["input_array"].clone()) for s, b in straight.train_batches(0)]
    assert len(batches) == 6 and not torch.equal(batches[0][1], batches[3][1][:batches[0][1].shape[0]])
    # epoch 1 from step 4, read by a worker process, equals the uninterrupted iteration
    worker = _trainer(pm, tmp_path / "w", **{"training.num_workers": 1})
    assert worker.loader.num_workers == 1
    tail = [(s, b["input_array"]) for s, b in worker.train_batches(4)]
    assert [s for s, _ in tail] == [4, 5]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(tail, batches[4:]))
    straight.fit()
    half = _trainer(pm, tmp_path / "b", **{"model.dropout": 0.2})
    assert half.fit(max_steps=2)["step"] == 2
    resumed = _trainer(pm, tmp_path / "b", **{"model.dropout": 0.2, "training.num_workers": 1})
    assert resumed.load_checkpoint() == 2
    resumed.fit()
    a, b = ckpt.model_state(straight.model), ckpt.model_state(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_each_replica_reads_its_share_of_every_global_batch():
    sampler = EpochSampler(37, 10, seed=3)
    batches = sampler.batches(2)
    assert [len(b) for b in batches] == [10, 10, 10, 7]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(37))
    sampler.set_epoch(2, start=1)
    assert [[i for _, i, _ in items] for items in sampler] == [b.tolist() for b in batches[1:]]
    for replicas, multiple in ((2, 1), (3, 2)):
        for replica in range(replicas):
            sampler.shard(replicas, replica, multiple)
            sampler.set_epoch(2)
            for items, batch in zip(sampler, batches):
                expected = replica_share({"target": batch.clone()}, replicas, replica, multiple)["target"]
                rows = torch.tensor([i if real else IGNORE_INDEX for _, i, real in items])
                assert torch.equal(rows, expected)


def test_length_bucketing_cuts_padding_and_keeps_every_sample():
    lengths = torch.randint(1, 100, (405,), generator=torch.Generator().manual_seed(0))
    plain, bucketed = EpochSampler(405, 16, 0), EpochSampler(405, 16, 0, lengths)

    def padded(sampler):
        return sum(len(b) * int(lengths[b].max()) for b in sampler.batches(0))

    assert padded(bucketed) < 0.7 * padded(plain)
    assert torch.equal(torch.cat(bucketed.batches(0)).sort().values, torch.arange(405))
    assert [len(b) for b in bucketed.batches(1)][-1] == 405 % 16
    assert all(torch.equal(x, y) for x, y in zip(bucketed.batches(1), EpochSampler(405, 16, 0, lengths).batches(1)))


def test_pipeline_batches_carry_sentinels_and_fixed_shapes(pm):
    task = create_task("blob/blobs", pm=pm, **FAST)
    loader = task.train_loader(trim=False, fixed_shapes=True, sentinels=True)
    batch = next(iter(loader.epoch(0)))
    assert batch["input_array"].shape[1] == task.config.input_len
    assert batch["attention_mask"].shape == batch["input_array"].shape[:2]
    assert is_output_sentinel(batch["output_array"]) and batch["output_array"].shape == (16,)
    assert loader.probe(4)["output_array"] is None


def test_multimodal_and_token_tasks_train_through_the_loader(pm, tmp_path):
    for name in ("multi/blob-seq", "seq/letters-dense"):
        trainer = Trainer(create_task(name, pm=pm, **FAST), tmp_path / name.replace("/", "-"))
        result = trainer.fit(max_steps=2)
        assert result["step"] == 2 and torch.isfinite(torch.tensor(result["eval"]["loss"]))


def test_default_worker_count(monkeypatch):
    monkeypatch.setenv("GPERC_NUM_WORKERS", "3")
    assert default_num_workers() == 3
    monkeypatch.delenv("GPERC_NUM_WORKERS")
    assert 0 <= default_num_workers() <= 2


LARGER_THAN_RAM = textwrap.dedent('''
    import resource, sys, tempfile
    import torch
    from gperc_core import DatasetSpec, InputArray, ModalitySpec, hookimpl
    from gperc_core.data.tasks import Task, create_task, find_card
    from gperc_core.plugins.manager import get_plugin_manager
    from gperc_core.train.trainer import Trainer

    M, C, N = 64, 1024, int(sys.argv[1])

    class Generated:
        """Sample i is made on access, never stored: a split that must not be materialised."""
        lazy = True
        classes = ["zero", "one", "two"]
        def __init__(self, n, offset):
            self.n, self.offset = n, offset
        def __len__(self):
            return self.n
        def __getitem__(self, i):
            y = i % 3
            x = torch.full((M, C), float(y)) + torch.arange(M * C, dtype=torch.float32).view(M, C) % (7 + (self.offset + i) % 5)
            return {"blob": x.numpy(), "target": y}

    class Big:
        __name__ = "big"
        def __init__(self, n):
            self.n = n
        @hookimpl
        def gperc_register_modalities(self):
            return [ModalitySpec("blob", "fixed-size point clouds")]
        @hookimpl
        def gperc_register_datasets(self):
            return [DatasetSpec("big", ["blob"], lambda split, options: Generated(self.n if split == "train" else 32,
                                0 if split == "train" else 10**6), num_classes=3)]
        @hookimpl
        def gperc_register_tasks(self):
            model = {"latent_len": 4, "latent_dim": 16, "num_heads": 2, "num_layers": 1, "ffw_latent": 16,
                     "ffw_output": 16}
            return [{"name": "blob/big", "modalities": ["blob"], "dataset": "big", "model": model,
                     "training": {"epochs": 1, "batch_size": 32, "progress": False, "log_every": 1000}}]
        @hookimpl
        def gperc_input_array(self, modality, sample, options):
            return InputArray(array=torch.as_tensor(sample, dtype=torch.float32)) if modality == "blob" else None

    config = create_task("blob/big", pm=get_plugin_manager(plugins=[Big(64)], entry_points=False)).config
    pm = get_plugin_manager(plugins=[Big(N)], entry_points=False)
    task = Task(find_card("blob/big", pm), pm, {}, config=config)
    Generated.lazy = sys.argv[2] == "lazy"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(task, out)
        for step, batch in trainer.train_batches(0):
            trainer.train_step(batch)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(step + 1, trainer.steps_per_epoch, N * M * C * 4, before, after)
''')


def test_a_split_larger_than_the_memory_allowed_trains_with_flat_memory(tmp_path):
    """Building the trainer and training an epoch over a lazily generated split of 300 MB (float32
    samples) grows the process's peak RSS by less than a third of it: samples are read per batch,
    never held. (The same split materialised would grow it by more than its size.) The on-disk cache
    (Arrow) is not needed: the split is a lazily generated map-style dataset."""
    n = 1216
    script = tmp_path / "big.py"
    script.write_text(LARGER_THAN_RAM)
    env_path = ":".join(sys.path)
    done = subprocess.run([sys.executable, str(script), str(n), "lazy"], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": env_path, "GPERC_NUM_WORKERS": "0", "OMP_NUM_THREADS": "1",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    steps, per_epoch, data_bytes, before, after = (int(v) for v in done.stdout.split()[-5:])
    assert steps == per_epoch == -(-(n - n // 10) // 32) and data_bytes >= 300 * 2**20  # 10 % held out: validation
    assert after - before < data_bytes / 3, f"peak RSS grew {(after - before) / 2**20:.0f} MiB over the epoch"
