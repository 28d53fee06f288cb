"""Saving and loading: safetensors + JSON, atomic, exact, never unpickled, clear errors."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

from gperc_core import CheckpointError, PerceiverConfig
from gperc_core.io import checkpoint as ckpt
from gperc_core.model.perceiver import Perceiver


def _config(**kw):
    return PerceiverConfig(input_len=16, input_dim=3, latent_len=4, latent_dim=8, output_dim=8, n_classes=2,
                           num_layers=2, **kw)


def test_round_trip_is_exact(tmp_path):
    model = Perceiver(_config(seed=7, share_weights=True))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.save(tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run")) == ["config.json", "model.safetensors"]
    loaded = Perceiver.from_pretrained(tmp_path / "run")
    assert loaded.config == model.config and loaded.config.share_weights is True
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x = torch.randn(2, 16, 3)
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))


def test_loading_never_unpickles(tmp_path, monkeypatch):
    Perceiver(_config()).save(tmp_path)

    def no_pickle(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr("pickle.load", no_pickle)
    monkeypatch.setattr("pickle.loads", no_pickle)
    Perceiver.from_pretrained(tmp_path)


def test_corrupted_weights_file(tmp_path):
    Perceiver(_config()).save(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        Perceiver.from_pretrained(tmp_path)


def test_checkpoint_of_another_config(tmp_path):
    Perceiver(_config()).save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["latent_dim"] = 16
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"does not match the model's config \(shape mismatch"):
        Perceiver.from_pretrained(tmp_path)


def test_not_a_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="expected a checkpoint folder with config.json"):
        Perceiver.from_pretrained(tmp_path)


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = Perceiver(_config())
    model.save(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        model.save(tmp_path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]  # no temporary left behind


def test_state_without_wrapper_prefixes():
    model = Perceiver(_config())
    wrapped = torch.nn.Module()
    wrapped.module = model
    state = ckpt.model_state(wrapped)
    assert set(state) == set(model.state_dict())
