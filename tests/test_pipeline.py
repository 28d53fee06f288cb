"""Pipeline parallelism: the planner, and pipelined loss/gradients equal to the single-process model's.

The distributed checks run in one spawned gloo group of 2 CPU processes (file rendezvous, one
thread each); every case builds a fresh pipeline, and each rank compares its own stages'
gradients with a single-process model it builds itself.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gperc_core import PerceiverConfig
from gperc_core.parallel.distributed import spawn_workers
from gperc_core.errors import ConfigError, InputError
from gperc_core.model.perceiver import Perceiver
from gperc_core.parallel.pipeline import block_costs, cut_stage, normalise_schedule, plan_stages
from gperc_core.model.sentinels import mask_sentinel

ATOL = 1e-5


def tiny_config(**changes) -> PerceiverConfig:
    base = dict(input_len=12, input_dim=3, latent_len=4, latent_dim=8, output_len=3, output_dim=8, ffw_latent=16,
                ffw_output=16, num_heads=2, num_layers=2, n_classes=5, dropout=0.0, seed=7)
    base.update(changes)
    return PerceiverConfig(**base)


def make_batch(config: PerceiverConfig, batch: int, *, mask: bool, output_array: bool, dense: bool, seed: int = 0):
    """A batch of random inputs with (optionally) a padding mask, an output array and per-query targets."""
    gen = torch.Generator().manual_seed(seed)
    m = config.input_len
    x = torch.randn(batch, m, config.input_dim, generator=gen)
    attention_mask = None
    if mask:
        lengths = torch.randint(1, m + 1, (batch,), generator=gen)
        attention_mask = torch.arange(m)[None, :] < lengths[:, None]
    out = torch.randn(batch, config.output_len, config.output_dim, generator=gen) if output_array else None
    if dense:
        target = torch.randint(0, config.num_classes, (batch, config.output_len), generator=gen)
        target[0, 0] = -100
    else:
        target = torch.randint(0, config.num_classes, (batch,), generator=gen)
    return x, attention_mask, out, target


def reference_loss(model: Perceiver, x, mask, out, target) -> torch.Tensor:
    logits = model(x, mask, out)
    if logits.dim() == 3:
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
    return F.cross_entropy(logits, target)


# ------------------------------------------------------------------------------------------- planner
def test_plan_pins_encoder_and_decoder_and_balances():
    config = tiny_config(num_layers=6)
    for stages in range(1, 9):
        plan = plan_stages(config, stages)
        assert plan.bounds[0][0] == 0 and plan.bounds[-1][1] == config.num_layers + 2
        assert all(a < b for a, b in plan.bounds)
        assert all(plan.bounds[i][1] == plan.bounds[i + 1][0] for i in range(stages - 1))
        assert "encoder" in plan.stage_blocks(0) and "decoder" in plan.stage_blocks(stages - 1)
    # a heavy encoder (long input) gets a stage to itself
    heavy = tiny_config(input_len=4096, num_layers=6)
    plan = plan_stages(heavy, 3)
    assert plan.stage_blocks(0) == ("encoder",)
    costs = block_costs(heavy)
    assert costs[0] > 10 * costs[1]


def test_plan_uses_measured_costs_and_rejects_bad_ones():
    config = tiny_config(num_layers=4)
    measured = [1.0, 1.0, 1.0, 1.0, 10.0, 1.0]  # processor 3 is slow
    plan = plan_stages(config, 3, costs=measured)
    assert plan.source == "measured"
    assert "processor.3" in plan.stage_blocks(1) or "processor.3" in plan.stage_blocks(2)
    assert max(plan.stage_costs) == 11.0 or max(plan.stage_costs) == 10.0
    with pytest.raises(ConfigError, match="costs"):
        plan_stages(config, 3, costs=[1.0, 2.0])
    with pytest.raises(ConfigError, match="at most 6"):
        plan_stages(config, 7)


def test_shared_weights_stay_in_one_stage():
    config = tiny_config(num_layers=4, share_weights=True)
    plan = plan_stages(config, 3)
    assert plan.bounds == ((0, 1), (1, 5), (5, 6))
    with pytest.raises(ConfigError, match="share_weights"):
        plan_stages(config, 4)


def test_schedule_names():
    assert normalise_schedule("1F1B") == "1f1b"
    assert normalise_schedule("Interleaved1F1B") == "interleaved"
    for refused in ("ZBVZeroBubble", "dualpipev", "zero-bubble"):
        with pytest.raises(ConfigError, match="refused"):
            normalise_schedule(refused)
    with pytest.raises(ConfigError, match="expected one of"):
        normalise_schedule("pipedream")


def test_stage_keys_partition_the_single_process_keys():
    config = tiny_config(num_layers=3, input_pos_enc="sinusoid")
    model = Perceiver(config)
    plan = plan_stages(config, 3)
    stage_keys = [set(cut_stage(model, *b).state_dict()) for b in plan.bounds]
    assert set().union(*stage_keys) == set(model.state_dict())
    assert sum(len(k) for k in stage_keys) == len(model.state_dict())


def test_stage_modules_chain_to_the_full_forward():
    config = tiny_config(num_layers=3)
    model = Perceiver(config).eval()
    x, mask, out, _ = make_batch(config, 4, mask=True, output_array=True, dense=False)
    stages = [cut_stage(model, *b) for b in plan_stages(config, 4).bounds]
    latents = stages[0](input_array=x, attention_mask=mask)
    for stage in stages[1:-1]:
        latents = stage(latents)
    logits = stages[-1](latents, output_array=out, attention_mask=mask)
    torch.testing.assert_close(logits, model(x, mask, out), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------- distributed
CASES = [
    # name, schedule, stages, microbatches, mask, output array, dense targets, sentinels, config changes
    ("gpipe", "gpipe", 2, 4, False, False, False, False, {}),
    ("gpipe-mask-output", "gpipe", 2, 2, True, True, False, False, {}),
    ("1f1b", "1f1b", 2, 4, False, False, False, False, {}),
    ("1f1b-mask-output", "1f1b", 2, 4, True, True, False, False, {}),
    ("1f1b-dense", "1f1b", 2, 2, True, False, True, False, {"decoder_reduction": None}),
    ("1f1b-eot", "1f1b", 2, 2, True, False, False, False, {"decoder_reduction": "eot", "output_len": 12}),
    ("1f1b-sentinels", "1f1b", 2, 4, False, False, False, True, {}),
    ("1f1b-conv-stem", "1f1b", 2, 4, False, False, False, False,
     {"input_pos_shape": [3, 4], "input_pos_enc": "fourier", "fourier_num_bands": 2,
      "input_stem": {"channels": [4, 6], "strides": [1, 2]}}),
    ("interleaved-4-stages", "interleaved", 4, 4, True, True, False, False, {}),
    ("interleaved-sentinels", "interleaved", 4, 2, False, False, False, True, {"input_type": "tokens",
                                                                                "input_num_tokens": 11}),
]


def _case_batch(config, mask, out, dense, sentinels):
    x, attention_mask, output_array, target = make_batch(config, 8, mask=mask, output_array=out, dense=dense)
    if config.input_type == "tokens":
        x = torch.randint(0, config.input_num_tokens, (8, config.input_len), generator=torch.Generator().manual_seed(1))
    ref_mask, ref_out = attention_mask, output_array
    if sentinels:  # the all-tensor batch of a sentinel-aware collator: [b] sentinels for mask and outputs
        from gperc_core.data.collate import Collator
        from gperc_core.plugins.specs import InputArray

        batch = Collator(sentinels=True)([InputArray(array=x[i], target=int(target[i])) for i in range(len(x))])
        assert batch["attention_mask"].shape == (8,) and batch["output_array"].shape == (8,)
        assert torch.equal(batch["attention_mask"], mask_sentinel(8))
        x, attention_mask, output_array, target = (batch["input_array"], batch["attention_mask"],
                                                   batch["output_array"], batch["target"])
    return x, attention_mask, output_array, target, ref_mask, ref_out


def fused_batch(batch: int = 8):
    """A multimodal (fused) config and batch: raw "audio" frames with a mask, "text" token ids without one."""
    from gperc_core.model.fusion import fused_config

    config = fused_config(tiny_config(), {"audio": {"input_len": 6, "input_dim": 3, "input_type": "raw"},
                                          "text": {"input_len": 5, "input_dim": 1, "input_type": "tokens",
                                                   "input_num_tokens": 9}})
    gen = torch.Generator().manual_seed(4)
    x = {"audio": torch.randn(batch, 6, 3, generator=gen), "text": torch.randint(0, 9, (batch, 5), generator=gen)}
    mask = {"audio": torch.arange(6)[None, :] < torch.randint(1, 7, (batch,), generator=gen)[:, None], "text": None}
    target = torch.randint(0, config.num_classes, (batch,), generator=gen)
    return config, x, mask, target


def _fused_case(build_pipeline):
    from gperc_core.model.fusion import ModalityFusion

    config, x, mask, target = fused_batch()
    reference = ModalityFusion(config)
    ref_loss = F.cross_entropy(reference(x, mask), target, label_smoothing=0.1)
    ref_loss.backward()
    ref_grads = {k: p.grad for k, p in reference.named_parameters() if p.grad is not None}
    handle = build_pipeline(config, schedule="1f1b", microbatches=2, label_smoothing=0.1)
    loss = handle.step(x, target, mask)
    grads = {k: p.grad for k, p in handle.named_parameters() if p.grad is not None}
    return {"loss_diff": abs(loss.item() - ref_loss.item()),
            "grad_diff": max((grads[k] - ref_grads[k]).abs().max().item() for k in grads),
            "grad_keys": sorted(grads), "ref_keys": sorted(ref_grads),
            "missing_here": sorted(k for k in ref_grads if k in dict(handle.named_parameters()) and k not in grads),
            "logit_diff": (handle.predict(x, mask) - reference(x, mask).detach()).abs().max().item(),
            "ensemble_diff": _fused_ensemble_diff(build_pipeline, config, x, mask)}


def _fused_ensemble_diff(build_pipeline, config, x, mask) -> float:
    """How far a pipeline's prediction with ``modality_ensemble`` is from the single-process model's in
    evaluation (the mean log-probabilities given both modalities and each alone)."""
    from gperc_core.model.fusion import ModalityFusion

    ensemble = config.replace(modality_ensemble=True)
    reference = ModalityFusion(ensemble).eval()
    handle = build_pipeline(ensemble, schedule="1f1b", microbatches=2)
    return (handle.predict(x, mask) - reference(x, mask).detach()).abs().max().item()


def _equivalence_worker(ctx, cases):
    from gperc_core.parallel.pipeline import build_pipeline

    report = {}
    for name, schedule, stages, micro, mask, out, dense, sentinels, changes in cases:
        config = tiny_config(**changes)
        x, attention_mask, output_array, target, ref_mask, ref_out = _case_batch(config, mask, out, dense, sentinels)
        reference = Perceiver(config)
        ref_loss = reference_loss(reference, x, ref_mask, ref_out, target)
        ref_loss.backward()
        ref_grads = {k: p.grad for k, p in reference.named_parameters() if p.grad is not None}
        handle = build_pipeline(config, num_stages=stages, schedule=schedule, microbatches=micro)
        loss = handle.step(x, target, attention_mask, output_array)
        grads = {k: p.grad for k, p in handle.named_parameters() if p.grad is not None}
        grad_diff = max((grads[k] - ref_grads[k]).abs().max().item() for k in grads) if grads else 0.0
        logits = handle.predict(x, attention_mask, output_array)
        ref_logits = reference(x, ref_mask, ref_out).detach()
        report[name] = {
            "loss_diff": abs(loss.item() - ref_loss.item()),
            "grad_diff": grad_diff,
            "grad_keys": sorted(grads),
            "ref_keys": sorted(ref_grads),
            "missing_here": sorted(k for k in ref_grads if k in dict(handle.named_parameters()) and k not in grads),
            "logit_diff": (logits - ref_logits).abs().max().item(),
        }
    report["fused-1f1b-label-smoothing"] = _fused_case(build_pipeline)
    # errors before any communication: both ranks raise the same InputError
    config = tiny_config()
    handle = build_pipeline(config, schedule="1f1b", microbatches=4)
    x, _, _, target = make_batch(config, 8, mask=False, output_array=False, dense=False)
    errors = []
    for bad in ((x[:6], target[:6]), (x, target[:4])):
        try:
            handle.step(*bad)
        except InputError as exc:
            errors.append(str(exc))
    handle.step(x, target)
    try:
        handle.step(x[:4], target[:4])
    except InputError as exc:
        errors.append(str(exc))
    report["errors"] = errors
    # allow_reshape: a smaller last batch rebuilds the schedule instead of failing; gperc's API entry point
    from gperc_core.models import get_distributed_model

    handle = get_distributed_model(config, microbatches=2, allow_reshape=True)
    reshaped = []
    for rows in (8, 4, 8):
        reference = Perceiver(config)
        expected = reference_loss(reference, x[:rows], None, None, target[:rows]).item()
        handle.zero_grad()
        reshaped.append(abs(handle.step(x[:rows], target[:rows]).item() - expected))
    report["reshape"] = {"type": type(handle).__name__, "diffs": reshaped, "schedule": handle.schedule_name}
    return report


@pytest.fixture(scope="module")
def equivalence_reports():
    return spawn_workers(_equivalence_worker, 2, args=(CASES,), timeout_s=60)


@pytest.mark.parametrize("case", [c[0] for c in CASES] + ["fused-1f1b-label-smoothing"])
def test_pipelined_loss_and_gradients_equal_single_process(equivalence_reports, case):
    per_rank = [r[case] for r in equivalence_reports]
    for rank, r in enumerate(per_rank):
        assert r["loss_diff"] < ATOL, f"rank {rank}: loss differs by {r['loss_diff']}"
        assert r["grad_diff"] < ATOL, f"rank {rank}: a gradient differs by {r['grad_diff']}"
        assert r["logit_diff"] < ATOL, f"rank {rank}: predicted logits differ by {r['logit_diff']}"
        if case.startswith("fused"):
            assert r["ensemble_diff"] < ATOL, f"rank {rank}: the modality ensemble differs by {r['ensemble_diff']}"
        assert not r["missing_here"], f"rank {rank}: parameters without gradient {r['missing_here']}"
    covered = set().union(*(r["grad_keys"] for r in per_rank))
    assert covered == set(per_rank[0]["ref_keys"])
    assert sum(len(r["grad_keys"]) for r in per_rank) == len(covered), "a parameter lives on two ranks"


def test_bad_batches_fail_on_every_rank_before_communication(equivalence_reports):
    for rank, report in enumerate(equivalence_reports):
        errors = report["errors"]
        assert len(errors) == 3, f"rank {rank}: {errors}"
        assert "divisible by microbatches=4, got 6" in errors[0]
        assert "target" in errors[1] and "[8]" in errors[1]
        assert "set up for batch 8" in errors[2] and "got batch 4" in errors[2]


def test_allow_reshape_rebuilds_and_the_gperc_entry_point(equivalence_reports):
    for report in equivalence_reports:
        r = report["reshape"]
        assert r["type"] == "PipelineHandle" and r["schedule"] == "1f1b"
        assert max(r["diffs"]) < ATOL, r["diffs"]


def test_measured_block_times_feed_the_planner():
    from gperc_core.parallel.pipeline import measure_block_times

    config = tiny_config(num_layers=3)
    model = Perceiver(config)
    x, mask, out, _ = make_batch(config, 4, mask=True, output_array=True, dense=False)
    times = measure_block_times(model, x, mask, out, repeats=1)
    assert len(times) == config.num_layers + 2 and all(t > 0 for t in times)
    assert all(p.grad is None for p in model.parameters())
    plan = plan_stages(config, 2, costs=times)
    assert plan.source == "measured" and plan.costs == tuple(times)


def test_build_pipeline_needs_a_process_group():
    from gperc_core.parallel.pipeline import build_pipeline

    with pytest.raises(ConfigError, match="process group"):
        build_pipeline(tiny_config())
    with pytest.raises(ConfigError, match="refused"):
        build_pipeline(tiny_config(), schedule="dualpipev")
