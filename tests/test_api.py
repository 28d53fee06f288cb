"""The public API: `gperc_core.api.evaluate` / `predict` / `known_tasks` / `installed_plugins` called from
Python on a tiny run of the fake plugin (trained once per module with ``gperc train``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gperc_core
import gperc_core.plugins.manager as plugins
from gperc_core import CheckpointError, InputError, api
from gperc_core.cli import main

from taskfakes import fake_pm

QUICK = ["--quiet", "--no-bf16", "--set", "training.max_train_samples=48", "--set", "training.max_eval_samples=24"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two trained runs (``blob/blobs`` with a checkpoint, ``multi/blob-seq``) and the fake plugin manager."""
    pm = fake_pm()
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugins, "_default", pm)
        assert main(["train", "blob/blobs", "--out", str(root / "blob"), "--max-steps", "2", *QUICK]) == 0
        assert main(["train", "multi/blob-seq", "--out", str(root / "multi"), "--max-steps", "1", *QUICK]) == 0
    return {"blob": root / "blob", "multi": root / "multi", "pm": pm}


def test_api_exports():
    from gperc_core import api as package
    from gperc_core.api import evaluation, prediction, training

    assert package.evaluate is evaluation.evaluate and package.predict is prediction.predict
    assert package.train is training.train and package.resume is training.resume
    assert not hasattr(gperc_core, "evaluate")  # the four verbs live in gperc_core.api, not the root


def test_evaluate_returns_the_metrics(runs):
    result = api.evaluate(runs["blob"], device="cpu", pm=runs["pm"])
    assert (result["task"], result["split"], result["source"]) == ("blob/blobs", "test", str(runs["blob"]))
    assert result["baseline"] == {"accuracy": 0.9, "method": "nearest centre"}
    assert result["samples"] == 24 and 0.0 <= result["accuracy"] <= 1.0 and result["loss"] > 0
    train = api.evaluate(runs["blob"], split="train", pm=runs["pm"])
    assert train["split"] == "train" and train["samples"] == 48


def test_evaluate_a_checkpoint(runs):
    result = api.evaluate(runs["blob"], checkpoint=True, device="cpu", pm=runs["pm"])
    assert Path(result["source"]).parent.name == "checkpoints"


def test_evaluate_refuses_a_folder_that_is_no_run(tmp_path, runs):
    with pytest.raises(CheckpointError, match="expected a folder written by 'gperc train'"):
        api.evaluate(tmp_path, pm=runs["pm"])


def test_predict_raw_samples_and_files(runs, tmp_path):
    points = np.array([[1.0, 0.0], [0.9, 0.1], [1.1, -0.1]], dtype=np.float32)
    path = tmp_path / "points.txt"
    np.savetxt(path, points)
    results = api.predict(runs["blob"], [points, path, str(path)], device="cpu", pm=runs["pm"], top_k=2)
    assert [r["input"] for r in results] == [None, str(path), str(path)]
    for r in results:
        assert len(r["predictions"]) == 2
        assert {p["label"] for p in r["predictions"]} <= {"zero", "one", "two"}
        assert r["predictions"][0]["probability"] >= r["predictions"][1]["probability"]
    assert results[0]["predictions"] == results[1]["predictions"] == results[2]["predictions"]
    assert api.predict(runs["blob"], [{"blob": points}], modality="blob", pm=runs["pm"])[0]["predictions"][0][
        "label"] == results[0]["predictions"][0]["label"]


def test_predict_multimodal_mapping(runs, tmp_path):
    path = tmp_path / "points.txt"
    np.savetxt(path, np.zeros((4, 2), dtype=np.float32))
    results = api.predict(runs["multi"], [{"blob": path, "seq": "abca"}, {"blob": np.ones((5, 2), np.float32),
                                                                          "seq": "cc"}], pm=runs["pm"])
    assert results[0]["input"] == f"blob={path}" and results[1]["input"] is None
    assert all(len(r["predictions"]) == 1 for r in results)


@pytest.mark.parametrize("kwargs, items, match", [
    ({"top_k": 0}, [np.zeros((3, 2))], "top_k: expected a positive integer, got 0"),
    ({}, [], "samples_or_files: expected a non-empty sequence"),
    ({}, "points.txt", "samples_or_files: expected a non-empty sequence of samples or files, got str"),
    ({"modality": "seq"}, [np.zeros((3, 2))], r"modality: expected one of the task's modalities \['blob'\]"),
    ({}, [{"seq": "ab"}], r"samples_or_files\[0\]: expected one value per modality \['blob'\]"),
    ({}, [Path("/nonexistent/points.txt")], "expected a blob file, found none"),
])
def test_predict_bad_input_is_a_clear_error(runs, kwargs, items, match):
    with pytest.raises(InputError, match=match):
        api.predict(runs["blob"], items, pm=runs["pm"], **kwargs)


def test_predict_multimodal_needs_mappings(runs):
    with pytest.raises(InputError, match="expected a mapping modality -> sample or file for the multimodal task"):
        api.predict(runs["multi"], [np.zeros((3, 2))], pm=runs["pm"])


def test_known_tasks_and_installed_plugins(runs):
    names = [row["name"] for row in api.known_tasks("letters", pm=runs["pm"])]
    assert names == ["seq/letters", "seq/letters-dense"]
    assert [row["name"] for row in api.known_tasks("blob/*", pm=runs["pm"])] == ["blob/blobs"]
    assert api.known_tasks("nomatch/*", pm=runs["pm"]) == []
    infos = api.installed_plugins(allow=[], block=[])
    assert isinstance(infos, list) and all({"name", "error", "enabled"} <= set(i) for i in infos)
