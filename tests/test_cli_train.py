"""The CLI: gperc tasks / train / eval / predict in-process on the tiny fake plugin, and one
end-to-end subprocess run of a real task when the image plugin is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import gperc_core.plugins.manager as plugins
from gperc_core.cli import main

from taskfakes import fake_pm

QUICK = ["--quiet", "--no-bf16", "--set", "training.max_train_samples=48", "--set", "training.max_eval_samples=24"]


@pytest.fixture
def fake_default(monkeypatch):
    monkeypatch.setattr(plugins, "_default", fake_pm())


def test_tasks_lists_patterns_and_install_hints(fake_default, capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "ok blob/blobs" in out and "not installed: pip install gperc-plugin-image" in out
    assert main(["tasks", "seq/*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["seq/letters", "seq/letters-dense"] and rows[0]["installed"]
    assert main(["tasks", "nomatch/*"]) == 1


def test_train_eval_predict_resume(fake_default, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "blob/blobs", "--out", str(run), "--max-steps", "2", *QUICK]) == 0
    out = capsys.readouterr().out
    for line in ("run folder:", "checkpoint:", "plot:", "blob/blobs test split 'test': accuracy="):
        assert line in out
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "after 6/6 steps" in capsys.readouterr().out
    assert main(["eval", str(run)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("blob/blobs test split 'test': accuracy=") and "samples=24" in lines[-1]
    assert main(["eval", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 24
    points = tmp_path / "cloud.txt"
    np.savetxt(points, np.array([[1.0, 0.0], [0.9, 0.1], [1.1, -0.1]]))
    assert main(["predict", str(run), str(points), "--top", "2", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["input"] == str(points) and len(pred["predictions"]) == 2
    assert pred["predictions"][0]["label"] in ("zero", "one", "two")


def test_train_multimodal(fake_default, tmp_path, capsys):
    assert main(["train", "multi/blob-seq", "--out", str(tmp_path), "--epochs", "1", *QUICK]) == 0
    assert "multi/blob-seq test split 'test': accuracy=" in capsys.readouterr().out
    assert (tmp_path / "curves.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["train", "blob/blbs"], "did you mean 'blob/blobs'"),
    (["train", "blob/blobs", "--set", "model.latnt_dim=8"], "did you mean model.latent_dim"),
    (["train", "blob/blobs", "--set", "training.lr=fast"], "training.lr: expected float, got str 'fast'"),
    (["train", "blob/blobs", "--set", "latent_dim"], "expected key=value"),
    (["train"], "TASK: expected a task name"),
    (["eval", "."], "expected a folder written by 'gperc train'"),
    (["predict", "/nonexistent", "x"], "expected a folder written by 'gperc train'"),
])
def test_bad_input_is_a_clear_error(fake_default, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_run_that_fails_before_writing_leaves_no_folder(fake_default, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default run folder is runs/<task>-<time> under the working directory
    assert main(["train", "blob/blbs"]) == 2
    assert main(["train", "blob/blobs", "--set", "training.lr=fast"]) == 2
    assert "did you mean 'blob/blobs'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []
    kept = tmp_path / "mine"
    kept.mkdir()
    assert main(["train", "blob/blbs", "--out", str(kept)]) == 2
    assert kept.is_dir()  # a folder the user made is not removed


def test_existing_run_and_other_config_are_refused(fake_default, tmp_path, capsys):
    assert main(["train", "blob/blobs", "--out", str(tmp_path), "--max-steps", "1", *QUICK]) == 0
    assert main(["train", "blob/blobs", "--out", str(tmp_path), *QUICK]) == 2
    assert "continue it with --resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--set", "model.latent_dim=32", "--quiet"]) == 2
    assert "different model config" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(tmp_path / "missing.txt")]) == 2
    assert "expected a blob file, found none" in capsys.readouterr().err


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _installed("gperc-plugin-image"), reason="needs gperc-plugin-image")
def test_end_to_end_real_task_subprocess(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GPERC_PLUGINS": "image"}
    run = tmp_path / "run"
    train = subprocess.run([sys.executable, "-m", "gperc_core", "train", "image/digits", "--max-steps", "3",
                            "--out", str(run), "--quiet", "--set", "training.max_eval_samples=64"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert train.returncode == 0, train.stderr
    assert f"run folder: {run}" in train.stdout and (run / "curves.png").is_file()
    evaluated = subprocess.run([sys.executable, "-m", "gperc_core", "eval", str(run)], capture_output=True,
                               text=True, env=env, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.strip().splitlines()[-1].startswith("image/digits test split 'test': accuracy=")
