"""TensorBoard logging (issue 12): ``gperc train --tensorboard`` writes the metrics as scalars and the
run's config as text to RUN/tensorboard/, read back here with tensorboard's EventAccumulator; a
resumed run appends without duplicating steps; metrics.jsonl and the PNG stay; without the flag
nothing is written."""

from __future__ import annotations

import json

import pytest

import gperc_core.plugins.manager as plugins
from gperc_core.cli import main
from gperc_core.config.training import TrainingConfig
from gperc_core.errors import TaskError

from taskfakes import fake_pm

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
QUICK = ["--quiet", "--no-bf16", "--set", "training.max_train_samples=48", "--set", "training.max_eval_samples=24",
         "--set", "training.log_every=1", "--set", "training.keep_checkpoints=2"]


def _events(run_dir):
    acc = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def _text(acc, tag):
    return [e.tensor_proto.string_val[0].decode() for e in acc.Tensors(f"{tag}/text_summary")]


@pytest.fixture
def pm(monkeypatch):
    pm = fake_pm()
    monkeypatch.setattr(plugins, "_default", pm)
    return pm


def test_scalars_and_config_are_written_and_a_resume_does_not_repeat_steps(tmp_path, pm):
    run = tmp_path / "run"
    # 3 steps per epoch, 6 in all; stop at 5 (checkpoints at 3 and 5)
    assert main(["train", "blob/blobs", "--out", str(run), "--max-steps", "5", "--tensorboard", *QUICK]) == 0
    acc = _events(run)
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/samples_per_s", "validation/loss", "validation/accuracy", "validation/perplexity", "test/accuracy"} <= tags
    assert _steps(acc, "train/loss") == [1, 2, 3, 4, 5]
    assert _steps(acc, "validation/accuracy") == [3, 5]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["loss"] for r in train])
    assert [e.value for e in acc.Scalars("train/lr")] == pytest.approx([r["lr"] for r in train])
    assert (run / "curves.png").is_file()
    model, training, task = (_text(acc, f"config/{k}")[0] for k in ("model", "training", "task"))
    assert '"latent_dim": ' in model and '"tensorboard": true' in training and '"task": "blob/blobs"' in task

    # an interruption after the step-3 checkpoint: the events of steps 4-5 are replaced, not repeated
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"path": "step-00000003"}))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    acc = _events(run)
    assert _steps(acc, "train/loss") == [1, 2, 3, 4, 5, 6]
    assert _steps(acc, "validation/accuracy") == [3, 6]
    assert len(_text(acc, "config/model")) == 2  # the resumed session records its config too


def test_no_tensorboard_folder_without_the_setting(tmp_path, pm):
    run = tmp_path / "run"
    assert main(["train", "blob/blobs", "--out", str(run), "--max-steps", "1", *QUICK]) == 0
    assert not (run / "tensorboard").exists() and (run / "metrics.jsonl").is_file()


def test_the_setting_is_a_checked_training_field():
    assert TrainingConfig().tensorboard is False
    assert TrainingConfig.from_mapping({"tensorboard": True}).tensorboard is True
    with pytest.raises(TaskError, match=r"training.tensorboard: expected bool, got str 'yes'"):
        TrainingConfig.from_mapping({"tensorboard": "yes"})
