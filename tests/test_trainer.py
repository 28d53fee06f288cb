"""The trainer: schedule, exact resume, atomic checkpoints (disk full, corruption, other config),
interrupts, metrics and plots, on a tiny in-memory plugin."""

from __future__ import annotations

import errno
import json
import warnings

import pytest
import torch

from gperc_core.io import checkpoint as ckpt
from gperc_core import create_task
from gperc_core.io import runs
from gperc_core.errors import CheckpointError, ConfigError, TaskError
from gperc_core.train.device import EmulatedBF16Warning
from gperc_core.train.trainer import CPU_BF16_MIN_WIDTH, Trainer, TrainingConfig, auto_bf16, bf16_supported

from taskfakes import fake_pm

FAST = {"training.epochs": 2, "training.batch_size": 16, "training.max_train_samples": 64,
        "training.max_eval_samples": 16, "training.progress": False}


@pytest.fixture(scope="module")
def pm():
    return fake_pm()


def make(pm, out, **extra):
    task = create_task("blob/blobs", pm=pm, **{**FAST, **extra})
    return Trainer(task, out)


def weights(model):
    return {k: v.clone() for k, v in ckpt.model_state(model).items()}


def test_lr_schedule_warms_up_then_decays(pm, tmp_path):
    trainer = make(pm, tmp_path, **{"training.epochs": 10, "training.warmup_fraction": 0.1,
                                    "training.min_lr_ratio": 0.1, "training.lr": 1e-2})
    total = trainer.total_steps
    assert total == 40
    lrs = [trainer.lr_at(s) for s in range(total)]
    assert lrs[0] == pytest.approx(1e-2 / 4) and lrs[3] == pytest.approx(1e-2)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[3:], lrs[4:]))
    assert lrs[-1] == pytest.approx(1e-3, rel=0.05)


def test_exact_resume(pm, tmp_path):
    straight = make(pm, tmp_path / "a", **{"model.dropout": 0.2})
    straight.fit()
    half = make(pm, tmp_path / "b", **{"model.dropout": 0.2})
    assert half.fit(max_steps=3)["step"] == 3
    torch.manual_seed(12345)  # anything between the runs must not matter: RNG state is restored
    resumed = make(pm, tmp_path / "b", **{"model.dropout": 0.2})
    assert resumed.load_checkpoint() == 3
    result = resumed.fit()
    assert result["step"] == straight.step == 8
    a, b = weights(straight.model), weights(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result["last_validation"]["accuracy"] == straight.last_eval["accuracy"]
    assert result["eval"] == result["test"] and result["eval"]["split"] == "test"


def test_run_folder_contents(pm, tmp_path):
    trainer = make(pm, tmp_path)
    result = trainer.fit()
    assert {"task.json", "config.json", "model.safetensors", "metrics.jsonl", "curves.png"} <= {
        p.name for p in tmp_path.iterdir()}
    latest = runs.latest_checkpoint(tmp_path)
    assert latest.name == "step-00000008" and len(list((tmp_path / "checkpoints").glob("step-*"))) == 1
    names = {p.name for p in latest.iterdir()}
    assert names == {"config.json", "model.safetensors", "optimizer.safetensors", "optimizer.json",
                     "rng.safetensors", "trainer_state.json"}  # JSON and safetensors only, no pickle
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["split"] == "validation"]
    assert [r["epoch"] for r in evals] == [1.0, 2.0] and evals[-1] == result["last_validation"]
    assert [r for r in records if r["split"] == "test"] == [result["eval"]]  # evaluated once, at the end
    assert {p.name for p in (tmp_path / "best").iterdir()} == {"config.json", "model.safetensors", "validation.json"}
    assert all(r["samples_per_s"] > 0 for r in records if r["split"] == "train")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_disk_full_keeps_previous_checkpoint(pm, tmp_path, monkeypatch):
    trainer = make(pm, tmp_path)
    trainer.fit(max_steps=2)
    before = runs.latest_checkpoint(tmp_path)
    trainer.fit(max_steps=3)  # writes step 3
    calls = {"n": 0}
    real = ckpt.atomic_write_bytes

    def full(path, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    trainer.step = 4
    with pytest.raises(CheckpointError, match="disk full.*step-00000003 is intact"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert runs.latest_checkpoint(tmp_path).name == "step-00000003" != before.name
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert runs.read_checkpoint(runs.latest_checkpoint(tmp_path))["state"]["step"] == 3


def test_corrupted_checkpoint_is_a_clear_error(pm, tmp_path):
    trainer = make(pm, tmp_path)
    trainer.fit(max_steps=2)
    meta = runs.latest_checkpoint(tmp_path) / "optimizer.json"
    good = meta.read_text()
    meta.write_text("{not json")
    with pytest.raises(CheckpointError, match="optimizer.json: not valid JSON"):
        make(pm, tmp_path).load_checkpoint()
    meta.write_text(good)
    weights_file = runs.latest_checkpoint(tmp_path) / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        make(pm, tmp_path).load_checkpoint()


def test_checkpoint_of_another_config_is_refused(pm, tmp_path):
    make(pm, tmp_path).fit(max_steps=1)
    other = make(pm, tmp_path, **{"model.latent_dim": 32})
    with pytest.raises(CheckpointError, match="different model config.*latent_dim: checkpoint 16 vs now 32"):
        other.load_checkpoint()
    with pytest.raises(CheckpointError, match="found none"):
        make(pm, tmp_path / "empty").load_checkpoint()


def test_interrupt_leaves_a_resumable_checkpoint(pm, tmp_path, monkeypatch):
    trainer = make(pm, tmp_path)
    real = trainer.train_step

    def step(batch):
        if trainer.step == 5:
            raise KeyboardInterrupt
        return real(batch)

    monkeypatch.setattr(trainer, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert runs.latest_checkpoint(tmp_path).name == "step-00000005"
    resumed = make(pm, tmp_path)
    assert resumed.load_checkpoint() == 5 and resumed.fit()["step"] == 8


def test_forcing_bf16_without_native_support_warns_by_name(pm, tmp_path, monkeypatch):
    """training.bf16 = True on a device without native bf16 still trains in bf16, and says why it is slow;
    where bf16 is native, or bf16 is left to auto, nothing is said."""
    import gperc_core.train.device as device

    monkeypatch.setattr(device, "bf16_supported", lambda dev: False)
    with pytest.warns(EmulatedBF16Warning, match=r"training.bf16: expected a device with native bf16 .* got cpu"):
        trainer = make(pm, tmp_path / "forced", **{"training.bf16": True})
    assert trainer.bf16
    monkeypatch.setattr(device, "bf16_supported", lambda dev: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmulatedBF16Warning)
        assert make(pm, tmp_path / "native", **{"training.bf16": True}).bf16
        assert not make(pm, tmp_path / "off", **{"training.bf16": False}).bf16
    assert not device.warn_if_emulated_bf16(torch.device("cpu"))


def test_bf16_and_training_config_validation(pm, tmp_path):
    assert isinstance(bf16_supported(torch.device("cpu")), bool)
    assert not make(pm, tmp_path / "auto").bf16  # a narrow model on CPU: bf16 autocast is not known to pay
    narrow = create_task("blob/blobs", pm=pm).config
    cpu = torch.device("cpu")
    assert narrow.latent_dim < CPU_BF16_MIN_WIDTH and not auto_bf16(cpu, narrow)
    assert not auto_bf16(cpu, narrow.replace(latent_dim=CPU_BF16_MIN_WIDTH - 2, num_heads=2))
    assert auto_bf16(cpu, narrow.replace(latent_dim=CPU_BF16_MIN_WIDTH)) == bf16_supported(cpu)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer = make(pm, tmp_path, **{"training.bf16": True})
    emulated = [w for w in seen if issubclass(w.category, EmulatedBF16Warning)]
    assert len(emulated) == (0 if bf16_supported(cpu) else 1)   # forced on where bf16 is emulated: said once
    loss = trainer.train_step(trainer.train_data.batch(torch.arange(8)))
    assert loss == loss and trainer.step == 1  # finite under bf16 autocast
    with pytest.raises(ConfigError, match="training.batch_size: expected a positive integer, got 0"):
        TrainingConfig.from_mapping({"batch_size": 0})
    with pytest.raises(TaskError, match="training.warmup: unknown training setting"):
        TrainingConfig.from_mapping({"warmup": 0.1})
    with pytest.raises(ConfigError, match="training.device"):
        make(pm, tmp_path / "x", **{"training.device": "tpu"})
