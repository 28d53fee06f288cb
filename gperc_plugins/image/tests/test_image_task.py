"""image/digits end to end through the core: arrays without position channels, the model's Fourier
features, and runs saved before that (per-sample features in input_dim) still evaluating."""

from __future__ import annotations

import json

import pytest
import torch

import gperc_plugin_image.plugin as image_plugin
from gperc_core import Perceiver, fourier_features, get_plugin_manager
from gperc_core.data.tasks import Task, create_task
from gperc_core.model.build import load_any_model

QUICK = {"training.max_train_samples": 40, "training.max_eval_samples": 20}


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(entry_points=False, plugins=[image_plugin])


@pytest.fixture(scope="module")
def task(pm):
    return create_task("image/digits", pm=pm, **QUICK)


def test_digits_arrays_carry_no_position_channels_and_the_model_adds_them(task):
    config = task.config
    assert (config.input_dim, config.input_pos_enc, config.input_pos_shape) == (1, "fourier", [8, 8])
    assert (config.fourier_num_bands, config.input_embed_dim) == (4, 1 + 2 * (2 * 4 + 1))
    data = task.split("test")
    assert data.inputs["image"].shape == (20, 64, 1) and not data.positions      # 1 grey channel per pixel, stored
    batch = data.batch(torch.arange(3))
    assert batch["input_array"].shape == (3, 64, 1)
    embedded = task.build_model().embeddings.embed_input(batch["input_array"])
    old = torch.cat([batch["input_array"], fourier_features((8, 8), 4).expand(3, -1, -1)], dim=-1)
    assert torch.equal(embedded, old)                 # exactly the features the plugin used to store per sample


def _old_run(task, tmp_path):
    """A run folder as the previous version wrote it: per-sample Fourier channels in input_dim, the
    trainable position encoding, and a card with the since-removed 'metrics' key."""
    config = task.config.replace(input_dim=1 + 18, input_pos_enc="trainable", input_pos_shape=None,
                                 fourier_num_bands=16)
    run = tmp_path / "old-run"
    Perceiver(config).save(run)
    record = task.record()
    record["card"]["metrics"] = ["accuracy"]
    (run / "task.json").write_text(json.dumps(record))
    return run


def test_an_old_run_with_per_sample_features_still_evaluates(task, pm, tmp_path):
    run = _old_run(task, tmp_path)
    old = Task.from_run(run, pm=pm)
    assert old.config.input_dim == 19 and old.config.input_pos_enc == "trainable"
    data = old.split("test")
    batch = data.batch(torch.arange(4))
    assert batch["input_array"].shape == (4, 64, 19)               # the data path appends the same features
    assert torch.equal(batch["input_array"][..., 1:], fourier_features((8, 8), 4).expand(4, -1, -1))
    assert torch.equal(batch["input_array"][..., :1], task.split("test").batch(torch.arange(4))["input_array"])
    logits = load_any_model(run)(batch["input_array"])
    assert logits.shape == (4, 10)
    encoded = old.encode([{"image": torch.rand(8, 8, 1)}])
    assert encoded["input_array"].shape == (1, 64, 19)


def test_resuming_from_run_keeps_the_saved_config_and_drops_max_steps(task, pm, tmp_path):
    run = _old_run(task, tmp_path)
    record = json.loads((run / "task.json").read_text())
    record["overrides"]["training"]["max_steps"] = 3
    (run / "task.json").write_text(json.dumps(record))
    assert Task.from_run(run, pm=pm).training.max_steps == 3
    assert Task.from_run(run, pm=pm, resume=True).training.max_steps is None
    assert Task.from_run(run, pm, {"training.max_steps": 5}, resume=True).training.max_steps == 5
