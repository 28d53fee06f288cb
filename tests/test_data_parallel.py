"""Data parallelism: DDP, and pipeline x DDP on a 2-D device mesh, equal to the single-process model.

One spawned gloo group of 4 CPU processes runs both checks: plain DDP over the 4 ranks (a quarter
of the batch each), then 2 pipeline replicas x 2 stages (half the batch per replica).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gperc_core.parallel.distributed import spawn_workers
from gperc_core.model.perceiver import Perceiver

from test_pipeline import ATOL, make_batch, reference_loss, tiny_config

BATCH = 8


def _reference(config, x, mask, out, target):
    model = Perceiver(config)
    loss = reference_loss(model, x, mask, out, target)
    loss.backward()
    return model, loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _max_diff(grads, ref):
    return max((grads[k] - ref[k]).abs().max().item() for k in grads)


def _dp_worker(ctx):
    from gperc_core.parallel.distributed import build_layout, wrap_ddp
    from gperc_core.parallel.pipeline import build_pipeline

    report = {}
    # ---- plain DDP over the world: a quarter of the batch per rank, then one SGD step
    config = tiny_config()
    x, mask, _, target = make_batch(config, BATCH, mask=True, output_array=False, dense=False)
    ref_model, ref_loss, ref_grads = _reference(config, x, mask, None, target)
    share = slice(ctx.rank * 2, ctx.rank * 2 + 2)
    ddp = wrap_ddp(Perceiver(config))
    logits = ddp(x[share], mask[share])
    F.cross_entropy(logits, target[share]).backward()
    grads = {k.removeprefix("module."): p.grad for k, p in ddp.named_parameters() if p.grad is not None}
    torch.optim.SGD(ddp.parameters(), lr=0.1).step()
    torch.optim.SGD(ref_model.parameters(), lr=0.1).step()
    ref_params = dict(ref_model.named_parameters())
    report["ddp"] = {"grad_diff": _max_diff(grads, ref_grads), "keys": sorted(grads) == sorted(ref_grads),
                     "param_diff": max((p - ref_params[k.removeprefix("module.")]).abs().max().item()
                                       for k, p in ddp.named_parameters())}

    # ---- pipeline x data parallel: 2 replicas of a 2-stage pipeline, two steps (the second with an
    # output array, so the decoder stage has an unused parameter) and dense targets whose valid counts
    # differ between the replicas
    layout = build_layout(2, ctx)
    report["layout"] = (layout.pp_size, layout.dp_size, layout.pp_rank, layout.dp_rank)
    config = tiny_config(decoder_reduction=None)
    handle = build_pipeline(config, schedule="1f1b", microbatches=2, group=layout.pp_group, dp_group=layout.dp_group)
    half = slice(layout.dp_rank * 4, layout.dp_rank * 4 + 4)
    steps = []
    for with_out in (False, True):
        x, mask, out, target = make_batch(config, BATCH, mask=True, output_array=with_out, dense=True, seed=3)
        target[:3, 1] = -100  # replica 0 ignores more targets than replica 1
        _, ref_loss, ref_grads = _reference(config, x, mask, out, target)
        handle.zero_grad()
        loss = handle.step(x[half], target[half], mask[half], out[half] if out is not None else None)
        grads = {k: p.grad for k, p in handle.named_parameters() if p.grad is not None}
        steps.append({"loss_diff": abs(loss.item() - ref_loss.item()), "grad_diff": _max_diff(grads, ref_grads),
                      "keys": sorted(grads)})
    report["pp_dp"] = steps
    return report


@pytest.fixture(scope="module")
def reports():
    return spawn_workers(_dp_worker, 4, timeout_s=90)


def test_ddp_equals_single_process(reports):
    for rank, report in enumerate(reports):
        r = report["ddp"]
        assert r["keys"], f"rank {rank}: DDP gradients cover other parameters than the single-process model's"
        assert r["grad_diff"] < ATOL, f"rank {rank}: gradient differs by {r['grad_diff']}"
        assert r["param_diff"] < ATOL, f"rank {rank}: parameters after a step differ by {r['param_diff']}"


def test_mesh_layout(reports):
    assert [r["layout"] for r in reports] == [(2, 2, 0, 0), (2, 2, 1, 0), (2, 2, 0, 1), (2, 2, 1, 1)]


def test_pipeline_x_ddp_equals_single_process(reports):
    for rank, report in enumerate(reports):
        for step, r in enumerate(report["pp_dp"]):
            assert r["loss_diff"] < ATOL, f"rank {rank} step {step}: loss differs by {r['loss_diff']}"
            assert r["grad_diff"] < ATOL, f"rank {rank} step {step}: gradient differs by {r['grad_diff']}"
    # the two replicas own the same stages; the two stages of a replica split the parameters
    assert reports[0]["pp_dp"][0]["keys"] == reports[2]["pp_dp"][0]["keys"]
    assert not set(reports[0]["pp_dp"][0]["keys"]) & set(reports[1]["pp_dp"][0]["keys"])


def test_init_distributed_names_what_is_missing(monkeypatch):
    from gperc_core.parallel.distributed import init_distributed
    from gperc_core.errors import ConfigError

    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        init_distributed()
    with pytest.raises(ConfigError, match="rank: expected an integer in \\[0, 2\\), got 2"):
        init_distributed(rank=2, world_size=2)
    with pytest.raises(ConfigError, match="timeout_s"):
        init_distributed(rank=0, world_size=1, timeout_s=0)
    with pytest.raises(ConfigError, match="init_method"):
        init_distributed(rank=0, world_size=1)
    with pytest.raises(ConfigError, match="nccl"):
        init_distributed(rank=0, world_size=1, backend="nccl", device="cpu", init_method="file:///nonexistent")
