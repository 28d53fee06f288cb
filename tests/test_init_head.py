"""Fine-tuning with a new head: ``training.init_head = "new"`` loads a model folder's body (embeddings,
encoder, processors) and starts the decoder and its output queries afresh, so a model trained on one objective
(here per-position labels) starts a run on another (classification)."""

from __future__ import annotations

import pytest
import torch

from gperc_core.api.convert import HEAD_FIELDS, check_init_config, head_keys, initialise
from gperc_core.config.training import TrainingConfig
from gperc_core.data.tasks import create_task
from gperc_core.errors import ConfigError, TaskError
from gperc_core.io.checkpoint import load_tensors
from taskfakes import fake_pm

QUICK = {"training.max_steps": 2, "training.max_train_samples": 32, "training.max_eval_samples": 16,
         "training.bf16": False, "training.progress": False}


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    """A model folder trained for two steps on the per-position task seq/letters-dense."""
    from gperc_core.api.training import train

    result = train("seq/letters-dense", tmp_path_factory.mktemp("dense") / "run", overrides=dict(QUICK),
                   pm=fake_pm())
    return result["model"].parent


def letters(**overrides):
    return create_task("seq/letters", pm=fake_pm(), **{**QUICK, **overrides})


def test_new_head_loads_the_body_and_keeps_the_fresh_head(dense_model):
    pretrained = load_tensors(dense_model / "model.safetensors")
    fresh = letters().build_model().state_dict()
    model = initialise(letters(), dense_model, head="new").build_model()
    state = model.state_dict()
    head = head_keys(model, state)
    assert head == {k for k in state if k.startswith("decoder.")} | {"embeddings.output_query"}
    assert "decoder.projection.weight" in head and pretrained["decoder.projection.weight"].shape != \
        state["decoder.projection.weight"].shape  # another objective, another head shape
    for key, value in state.items():
        expected = fresh[key] if key in head else pretrained[key]
        assert torch.equal(value, expected), key
    assert not torch.equal(state["embeddings.latent"], fresh["embeddings.latent"])  # the body did change


def test_keep_head_refuses_another_head_and_names_the_option(dense_model):
    with pytest.raises(TaskError) as err:
        initialise(letters(), dense_model)
    message = str(err.value)
    assert "n_classes (task" in message and "output_len (task" in message
    assert 'training.init_head = "new"' in message


def test_new_head_still_refuses_a_different_body(dense_model):
    with pytest.raises(TaskError) as err:
        initialise(letters(**{"model.latent_dim": 8}), dense_model, head="new")
    message = str(err.value)
    assert "latent_dim (task 8, init 16)" in message and "n_classes" not in message and "init_head" not in message


def test_init_head_values_are_checked():
    with pytest.raises(ConfigError, match=r"training.init_head: expected 'keep' or 'new', got 'fresh'"):
        TrainingConfig.from_mapping({"init_head": "fresh"})
    config = letters().infer_config()
    with pytest.raises(TaskError, match=r"training.init_head: expected one of \('keep', 'new'\), got 'body'"):
        check_init_config(config, config, "x", head="body")


def test_head_fields_are_config_fields():
    from gperc_core.config.perceiver import PerceiverConfig

    assert HEAD_FIELDS <= set(PerceiverConfig().to_dict())


def test_head_keys_of_a_fusion_model():
    model = create_task("multi/blob-seq", pm=fake_pm(), **QUICK).build_model()
    keys = head_keys(model, model.state_dict())
    assert keys and all(k.startswith("perceiver.decoder.") or k == "perceiver.embeddings.output_query" for k in keys)
    assert "perceiver.embeddings.latent" not in keys


def test_cli_fine_tunes_with_a_new_head(dense_model, tmp_path, monkeypatch, capsys):
    import gperc_core.plugins.manager as plugins
    from gperc_core.cli import main

    monkeypatch.setattr(plugins, "_default", fake_pm())
    quick = ["--quiet", "--no-bf16", "--max-steps", "2", "--set", "training.max_train_samples=32",
             "--set", "training.max_eval_samples=16"]
    assert main(["train", "seq/letters", "--init", str(dense_model), "--init-head", "new",
                 "--out", str(tmp_path / "run"), *quick]) == 0
    out = capsys.readouterr().out
    assert f"initialised from {dense_model}: the body; the head (decoder and output queries) starts afresh" in out
    tuned = load_tensors(tmp_path / "run" / "model.safetensors")
    assert tuned["decoder.projection.weight"].shape[0] != load_tensors(
        dense_model / "model.safetensors")["decoder.projection.weight"].shape[0]
