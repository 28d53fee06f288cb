"""Export (issue 12): ``gperc export`` to ONNX / ``torch.export``, the files run in onnxruntime / torch
and give gperc's logits (to 1e-4, fp32) with and without masks at two batch sizes, with dynamic
batch and ``m``; ``gperc predict --model FILE`` uses them; what cannot be exported says why."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gperc_core.plugins.manager as plugins
from gperc_core import CheckpointError, ConfigError, InputError, api
from gperc_core.cli import main
from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.interop.onnx import ExportedModel, export_model, input_names
from gperc_core.model.fusion import fused_config
from gperc_core.model.build import model_for_config

from taskfakes import fake_pm

pytest.importorskip("onnxruntime")  # the [onnx] extra; `make test` installs it
pytestmark = pytest.mark.slow
TOL = 1e-4
BASE = dict(input_len=24, input_dim=3, latent_len=8, latent_dim=32, num_heads=4, output_dim=16, n_classes=5,
            dropout=0.0)
QUICK = ["--quiet", "--no-bf16", "--set", "training.max_train_samples=48", "--set", "training.max_eval_samples=24"]


def _inputs(config: PerceiverConfig, batch: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if config.input_type == "tokens":
        x = torch.randint(0, config.input_num_tokens, (batch, m), generator=g)
    else:
        x = torch.randn(batch, m, config.input_dim, generator=g)
    mask = torch.rand(batch, m, generator=g) > 0.4
    mask[:, 0] = True
    return x, mask


def _worst(model, exported, config, lengths) -> float:
    """Largest |gperc - exported| over two batch sizes, with and without a mask, at each length."""
    worst = 0.0
    with torch.no_grad():
        for batch, m in [(b, m) for b in (1, 5) for m in lengths]:
            x, mask = _inputs(config, batch, m, seed=batch * 100 + m)
            for attention_mask in (None, mask):
                ours = model(x, attention_mask)
                theirs = exported(x, attention_mask)
                assert theirs.shape == ours.shape
                worst = max(worst, float((ours - theirs).abs().max()))
    return worst


@pytest.mark.parametrize("name, options, lengths", [
    ("raw-trainable", {}, (24, 7, 1)),  # dynamic m, down to 1
    ("raw-sink", dict(encoder_sink=True), (24, 7)),  # the sink token joins every input array
    ("tokens-sinusoid-shared-max", dict(input_type="tokens", input_num_tokens=40, input_dim=16,
                                        input_pos_enc="sinusoid", share_weights=True, decoder_reduction="max"),
     (24, 5)),
    ("fourier-dense", dict(input_pos_enc="fourier", input_pos_shape=(4, 6), fourier_num_bands=4,
                           decoder_reduction=None, output_len=3, cross_heads=1, self_widening=2), (24, 13)),
    ("tokens-eot", dict(input_type="tokens", input_num_tokens=40, input_dim=16, decoder_reduction="eot",
                        output_len=24), (24,)),  # m fixed to output_len
    ("ensemble-3", dict(ensemble_size=3), (24, 7)),  # the graph averages the members' probabilities
])
def test_onnx_runs_in_onnxruntime_like_gperc(tmp_path, name, options, lengths):
    config = PerceiverConfig(**{**BASE, **options})
    model = model_for_config(config).eval()
    path = export_model(model, tmp_path / f"{name}.onnx", "onnx")
    exported = ExportedModel(path)
    assert [i.name for i in exported._session.get_inputs()] == ["input_array", "attention_mask"]
    assert _worst(model, exported, config, lengths) < TOL


def test_pt2_runs_like_gperc(tmp_path):
    config = PerceiverConfig(**BASE)
    model = model_for_config(config).eval()
    exported = ExportedModel(export_model(model, tmp_path / "model.pt2", "pt2"))
    assert _worst(model, exported, config, (24, 6)) < TOL


@pytest.mark.parametrize("ensemble", [False, True])
def test_fused_model_exports_with_one_input_per_modality(tmp_path, ensemble):
    """The exported graph is the evaluation-mode model: with ``modality_ensemble`` its three passes."""
    base = PerceiverConfig(**{**BASE, "input_len": 1})
    config = fused_config(base, {"image": {"input_len": 10, "input_dim": 3, "input_type": "raw"},
                                 "text": {"input_len": 6, "input_dim": 1, "input_type": "tokens",
                                          "input_num_tokens": 30}}, modality_dropout=0.3, modality_ensemble=ensemble)
    model = model_for_config(config).eval()
    exported = ExportedModel(export_model(model, tmp_path / "fused.onnx"))
    assert input_names(config) == exported.inputs == ["input_array.image", "attention_mask.image",
                                                      "input_array.text", "attention_mask.text"]
    worst = 0.0
    with torch.no_grad():
        for batch in (1, 4):
            x = {"image": torch.randn(batch, 10, 3), "text": torch.randint(0, 30, (batch, 6))}
            for mask in (None, {"text": torch.arange(6).expand(batch, 6) < 4}):
                worst = max(worst, float((model(x, mask) - exported(x, mask)).abs().max()))
    assert worst < TOL


@pytest.mark.parametrize("fmt, options", [
    ("onnx", dict(decoder_reduction=None, output_len=3)),      # dense: one logit row per query
    ("pt2", dict(decoder_reduction=None, output_len=3, decoder_residual=True)),
    ("onnx", dict(decoder_reduction="mean")),
])
def test_per_sample_queries_are_a_graph_input_with_dynamic_o(tmp_path, fmt, options):
    """Tasks whose samples bring their own queries (graph nodes, pixel queries) export a graph that
    takes them, for any number of queries ``o``, and gives gperc's logits for them."""
    config = PerceiverConfig(**{**BASE, **options})
    model = model_for_config(config).eval()
    exported = ExportedModel(export_model(model, tmp_path / f"q.{fmt}", fmt, output_array=True))
    assert exported.inputs == ["input_array", "attention_mask", "output_array"] and exported.takes_queries
    worst = 0.0
    with torch.no_grad():
        for batch, m, o in [(1, 24, 1), (4, 9, 5), (2, 17, 40)]:
            x, mask = _inputs(config, batch, m, seed=o)
            queries = torch.randn(batch, o, config.output_dim, generator=torch.Generator().manual_seed(o))
            ours, theirs = model(x, mask, queries), exported(x, mask, queries)
            assert theirs.shape == ours.shape
            worst = max(worst, float((ours - theirs).abs().max()))
    assert worst < TOL
    # the queries change the answer: the static-query graph could not have given it
    own = queries[:, :config.output_len]
    assert float((model(x, mask, own) - model(x, mask)).detach().abs().max()) > 1e-3
    with pytest.raises(InputError, match=r"output_array: this exported model takes per-sample queries; expected a "
                                         r"float tensor \[batch, o, 16\], got None"):
        exported(x, mask)


def test_fused_model_exports_per_sample_queries_after_its_modalities(tmp_path):
    base = PerceiverConfig(**{**BASE, "input_len": 1, "decoder_reduction": None, "output_len": 2})
    config = fused_config(base, {"image": {"input_len": 10, "input_dim": 3, "input_type": "raw"},
                                 "audio": {"input_len": 6, "input_dim": 4, "input_type": "raw"}})
    model = model_for_config(config).eval()
    exported = ExportedModel(export_model(model, tmp_path / "fused-q.pt2", "pt2", output_array=True))
    assert exported.inputs == ["input_array.image", "attention_mask.image", "input_array.audio",
                               "attention_mask.audio", "output_array"]
    x = {"image": torch.randn(3, 10, 3), "audio": torch.randn(3, 6, 4)}
    queries = torch.randn(3, 7, config.output_dim)
    with torch.no_grad():
        assert float((model(x, None, queries) - exported(x, None, queries)).abs().max()) < TOL


def test_exported_model_refuses_what_the_graph_does_not_take(tmp_path):
    config = PerceiverConfig(**BASE)
    exported = ExportedModel(export_model(model_for_config(config).eval(), tmp_path / "m.pt2", "pt2"))
    assert not exported.takes_queries
    with pytest.raises(InputError, match="output_array: this exported model reads out with its own output queries"):
        exported(torch.randn(1, 4, 3), None, torch.randn(1, 1, 16))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="expected a file ending in .onnx or .pt2"):
        ExportedModel(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="expected an exported .onnx or .pt2 file, found no file"):
        ExportedModel(tmp_path / "missing.onnx")


def test_unknown_format_and_pipeline_stage_are_refused(tmp_path):
    model = model_for_config(PerceiverConfig(**BASE)).eval()
    with pytest.raises(InputError, match=r"format: expected one of \['onnx', 'pt2'\], got 'tflite'"):
        export_model(model, tmp_path / "m.tflite", "tflite")
    model.decoder = None  # what a pipeline stage looks like
    with pytest.raises(ConfigError, match=r"a pipeline stage cannot be exported \(it lacks \['decoder'\]\)"):
        export_model(model, tmp_path / "m.onnx")


# ------------------------------------------------------------------ the run-folder path: CLI and predict
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained ``blob/blobs`` run (fake plugin), exported to ONNX by ``gperc export``."""
    pm = fake_pm()
    root = tmp_path_factory.mktemp("export-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugins, "_default", pm)
        assert main(["train", "blob/blobs", "--out", str(root / "blob"), "--max-steps", "2", *QUICK]) == 0
    return {"dir": root / "blob", "pm": pm}


def test_cli_export_then_predict_with_the_onnx_file(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plugins, "_default", run["pm"])
    assert main(["export", str(run["dir"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    path = run["dir"] / "export" / "model.onnx"
    assert result["path"] == str(path) and path.is_file() and result["inputs"] == ["input_array", "attention_mask"]
    assert result["dynamic"] == {"input_array": {"0": "batch", "1": "m"}, "attention_mask": {"0": "batch", "1": "m"}}
    points = [np.random.default_rng(i).standard_normal((4 + i, 2)).astype(np.float32) for i in range(3)]
    ours = api.predict(run["dir"], points, pm=run["pm"], top_k=3, device="cpu")
    theirs = api.predict(run["dir"], points, pm=run["pm"], top_k=3, model=path)
    for a, b in zip(ours, theirs):
        assert [p["class"] for p in a["predictions"]] == [p["class"] for p in b["predictions"]]
        assert np.allclose([p["probability"] for p in a["predictions"]],
                           [p["probability"] for p in b["predictions"]], atol=2e-4)
    np.savetxt(tmp_path / "p.txt", points[0])
    assert main(["predict", str(run["dir"]), str(tmp_path / "p.txt"), "--model", str(path), "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["predictions"][0]["class"] == ours[0]["predictions"][0]["class"]


def test_predict_refuses_a_file_of_another_model(run, tmp_path):
    other = model_for_config(PerceiverConfig(**BASE)).eval()
    path = export_model(other, tmp_path / "other.pt2", "pt2")
    with pytest.raises(CheckpointError, match="was exported from another model config"):
        api.predict(run["dir"], [np.zeros((4, 2), np.float32)], pm=run["pm"], model=path)


def test_cli_export_errors_name_the_problem(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "expected a folder written by 'gperc train'" in capsys.readouterr().err


def test_a_run_whose_samples_bring_queries_exports_them(tmp_path, monkeypatch):
    """graph/karate reads out one query per node: its export takes them and matches the run's model on
    the test graph; a run recorded before task.json said so is read from its data."""
    pytest.importorskip("gperc_plugin_graph")
    from gperc_core.api.exporting import run_sample_queries
    from gperc_core.api.runs import open_run

    monkeypatch.setenv("GPERC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "karate"
    assert main(["train", "graph/karate", "--out", str(out), "--max-steps", "3", "--quiet", "--no-bf16"]) == 0
    record = json.loads((out / "task.json").read_text())
    assert record["sample_queries"] is True
    result = api.export(out, format="onnx")
    assert result["inputs"] == ["input_array", "attention_mask", "output_array"]
    assert result["dynamic"]["output_array"] == {0: "batch", 1: "o"}
    run = open_run(out, device="cpu")
    batch = run.task.split("test").batch(torch.arange(1), trim=False)
    exported = ExportedModel(result["path"])
    with torch.no_grad():
        ours = run.model(batch["input_array"], batch["attention_mask"], batch["output_array"])
        theirs = exported(batch["input_array"], batch["attention_mask"], batch["output_array"])
    assert ours.shape == theirs.shape == (1, 34, 2)
    assert float((ours - theirs).abs().max()) < TOL
    del record["sample_queries"]  # as an older gperc wrote it
    (out / "task.json").write_text(json.dumps(record))
    assert run_sample_queries(out) is True
