"""Checkpoints move between single-process and pipeline runs in the single-process layout.

A single-process checkpoint is loaded into a 2-stage pipeline (predictions equal), both train two
AdamW steps from it (parameters stay equal: resuming in the other mode is exact), and the pipeline
writes a checkpoint that a plain `Perceiver.from_pretrained` reads back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gperc_core.checkpoint import load_tensors
from gperc_core.distributed import spawn_workers
from gperc_core.errors import CheckpointError
from gperc_core.models import Perceiver

from test_pipeline import ATOL, make_batch, reference_loss, tiny_config


def _checkpoint_worker(ctx, root: str):
    from gperc_core.pipeline import build_pipeline

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
