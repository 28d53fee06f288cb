"""Checkpoints move between single-process and pipeline runs in the single-process layout.

A single-process checkpoint is loaded into a 2-stage pipeline (predictions equal), both train two
AdamW steps from it (parameters stay equal: resuming in the other mode is exact), and the pipeline
writes a checkpoint that a plain `Perceiver.from_pretrained` reads back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gperc_core.io.checkpoint import load_tensors
from gperc_core.parallel.distributed import spawn_workers
from gperc_core.errors import CheckpointError
from gperc_core.model.perceiver import Perceiver

from test_pipeline import ATOL, make_batch, reference_loss, tiny_config


def _checkpoint_worker(ctx, root: str):
    from gperc_core.parallel.pipeline import build_pipeline

    root_path = Path(root)
    config = tiny_config()
    reference = Perceiver.from_pretrained(root_path / "single")
    handle = build_pipeline(config, schedule="gpipe", microbatches=2)  # fresh weights from the config seed
    handle.load_state_dict(load_tensors(root_path / "single" / "model.safetensors"), source="single")
    x, mask, out, target = make_batch(config, 4, mask=True, output_array=True, dense=False, seed=5)
    report = {"logit_diff": (handle.predict(x, mask, out) - reference(x, mask, out)).abs().max().item()}
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    opt = torch.optim.AdamW(handle.parameters(), lr=1e-2)
    for _ in range(2):
        ref_opt.zero_grad()
        reference_loss(reference, x, mask, out, target).backward()
        ref_opt.step()
        handle.zero_grad()
        handle.step(x, target, mask, out)
        opt.step()
    ref_params = dict(reference.named_parameters())
    report["param_diff"] = max((p - ref_params[k]).abs().max().item() for k, p in handle.named_parameters())
    handle.save(root_path / "pipe")
    report["reference_state"] = {k: v.clone() for k, v in reference.state_dict().items()}
    broken = {k: v for k, v in reference.state_dict().items() if k != "decoder.projection.weight"}
    try:
        handle.load_state_dict(broken, source="broken")
        report["broken"] = None
    except CheckpointError as exc:
        report["broken"] = str(exc)
    report["is_last"] = handle.is_last
    return report


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    model = Perceiver(tiny_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # differs from the config-seed weights
    model.save(root / "single")
    return root, spawn_workers(_checkpoint_worker, 2, args=(str(root),), timeout_s=60)


def test_single_process_checkpoint_loads_into_the_pipeline(reports):
    _, per_rank = reports
    for rank, r in enumerate(per_rank):
        assert r["logit_diff"] < ATOL, f"rank {rank}: predictions differ by {r['logit_diff']}"


def test_training_continues_identically_in_both_modes(reports):
    _, per_rank = reports
    for rank, r in enumerate(per_rank):
        assert r["param_diff"] < 1e-5, f"rank {rank}: parameters after two AdamW steps differ by {r['param_diff']}"


def test_pipeline_checkpoint_loads_single_process(reports):
    root, per_rank = reports
    loaded = Perceiver.from_pretrained(root / "pipe")
    reference = per_rank[0]["reference_state"]
    state = loaded.state_dict()
    assert set(state) == set(reference)
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, atol=1e-5, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def test_missing_key_is_named_by_its_owner(reports):
    _, per_rank = reports
    for r in per_rank:
        if r["is_last"]:
            assert r["broken"] is not None and "decoder.projection.weight" in r["broken"]
        else:
            assert r["broken"] is None


# ------------------------------------------------------------------------------------------- the CLI
def test_train_cli_has_the_pipeline_flags():
    from gperc_core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    train = sub.choices["train"]
    flags = {flag for action in train._actions for flag in action.option_strings}
    assert {"--pipeline-stages", "--microbatches", "--schedule", "--stages-per-rank", "--balance",
            "--dist-timeout"} <= flags


def test_torchrun_pipeline_run_resumes_in_a_single_process(tmp_path):
    """`torchrun ... train multimodal/av-digits --pipeline-stages 2` for 3 steps, then a single-process
    `gperc train --resume` of its checkpoint for 2 more."""
    import json
    import os
    import subprocess
    import sys

    # av-digits needs the audio and image plugins: an absent distribution skips, nothing else does
    pytest.importorskip("gperc_plugin_audio")
    pytest.importorskip("gperc_plugin_image")
    from gperc_core.parallel.distributed import free_port
    from gperc_core.model.build import load_any_model

    out = tmp_path / "run"
    small = ["--set", "training.max_train_samples=64", "--set", "training.max_eval_samples=32",
             "--set", "training.batch_size=16", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    cmd = torchrun + ["-m", "gperc_core", "train", "multimodal/av-digits", "--pipeline-stages", "2",
                      "--microbatches", "2", "--max-steps", "3", "--dist-timeout", "60", "--out", str(out), *small]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "2 ranks (gloo), 1 data-parallel replica(s) x 2 pipeline rank(s)" in proc.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r["split"] == "train" for r in records) and records[-1]["split"] == "test"
    assert (out / "checkpoints" / "step-00000003").is_dir()
    model = load_any_model(out)  # the single-process layout
    assert type(model).__name__ == "ModalityFusion"

    resume = [sys.executable, "-m", "gperc_core", "train", "--resume", str(out), "--max-steps", "5", "--quiet"]
    proc = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert (out / "checkpoints" / "step-00000005").is_dir()
