"""Parallelism as strategies of the one `Trainer`: DDP and the pipeline train exactly like one process,
their checkpoints load in one process, and a pipeline rank builds only its own stage's weights.

One spawned gloo group of 2 CPU processes runs three `Trainer` steps with DDP (world of 2) and with
a 2-stage pipeline, each from the same seed as the single-process reference run in the test
process, and writes a checkpoint from each mode (with weight averaging on, so the averages of every
stage are gathered too).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gperc_core import create_task
from gperc_core.io import checkpoint as ckpt
from gperc_core.parallel.distributed import spawn_workers
from gperc_core.train.trainer import Trainer

from taskfakes import fake_pm
from test_pipeline import ATOL, tiny_config

STEPS = 3
SETTINGS = {"training.epochs": 1, "training.batch_size": 10, "training.max_train_samples": 40,
            "training.max_eval_samples": 12, "training.progress": False, "training.grad_clip": 0.5,
            "training.label_smoothing": 0.1, "model.dropout": 0.0, "model.num_layers": 2, "training.ema_decay": 0.5}


def _task():
    return create_task("blob/blobs", pm=fake_pm(), **SETTINGS)


def _train(trainer: Trainer) -> dict:
    for step, batch in trainer.train_batches(0):
        if step >= STEPS:
            break
        trainer.train_step(batch)
    return {"state": {k: v.detach().cpu().clone() for k, v in trainer.strategy.full_state_dict().items()},
            "eval": trainer.evaluate(), "local_keys": sorted(k for k, _ in trainer.strategy.named_parameters()),
            "is_main": trainer.is_main}


def _strategies_worker(ctx, root: str):
    from gperc_core.parallel.ddp import DataParallel
    from gperc_core.parallel.distributed import build_layout
    from gperc_core.parallel.options import ParallelOptions
    from gperc_core.parallel.pipelined import Pipelined

    report = {}
    ddp = Trainer(_task(), Path(root) / "ddp", strategy=DataParallel(ctx, build_layout(1, ctx)))
    report["ddp"] = _train(ddp)
    ddp.save_checkpoint()
    options = ParallelOptions(pipeline_stages=2, microbatches=2)
    pipe = Trainer(_task(), Path(root) / "pipe", strategy=Pipelined(ctx, build_layout(2, ctx), options))
    report["pipe"] = _train(pipe)
    pipe.save_checkpoint()
    return report


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("strategies")
    torch.manual_seed(0)
    reference = Trainer(_task(), root / "single")
    single = _train(reference)
    reference.save_checkpoint()
    return root, single, reference, spawn_workers(_strategies_worker, 2, args=(str(root),), timeout_s=90)


def _max_diff(a: dict, b: dict, complete: bool = True) -> float:
    assert set(a) == set(b) if complete else set(a) <= set(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize("mode", ["ddp", "pipe"])
def test_strategy_trains_like_one_process(runs, mode):
    _, single, _, per_rank = runs
    for rank, report in enumerate(per_rank):
        r = report[mode]
        assert r["is_main"] == (rank == 0)
        # the full state is gathered on the main process; a pipeline rank holds its own stage's part
        complete = r["is_main"] or mode == "ddp"
        assert _max_diff(r["state"], single["state"], complete) < ATOL, f"rank {rank}: weights differ after {STEPS} steps"
        for key in ("loss", "accuracy"):
            assert abs(r["eval"][key] - single["eval"][key]) < ATOL, f"rank {rank}: eval {key} differs"


def test_pipeline_ranks_split_the_parameters(runs):
    _, single, _, per_rank = runs
    keys = [set(report["pipe"]["local_keys"]) for report in per_rank]
    assert not keys[0] & keys[1]
    assert keys[0] | keys[1] == set(single["local_keys"])
    assert any(k.startswith("encoder.") for k in keys[0]) and any(k.startswith("decoder.") for k in keys[1])


@pytest.mark.parametrize("mode", ["ddp", "pipe"])
def test_distributed_checkpoint_resumes_in_one_process(runs, mode):
    """Only rank 0 wrote; the checkpoint has the single-process layout (weights and optimizer state)."""
    root, _, reference, _ = runs
    folder = root / mode / "checkpoints" / f"step-{STEPS:08d}"
    assert folder.is_dir()
    resumed = Trainer(_task(), root / mode)
    assert resumed.load_checkpoint() == STEPS
    assert _max_diff(ckpt.model_state(resumed.model), ckpt.model_state(reference.model)) < ATOL
    assert _max_diff(resumed.ema.state(), reference.ema.state()) < ATOL   # weight averages of every stage
    ours, theirs = resumed.optimizer.state_dict(), reference.optimizer.state_dict()
    assert [g["params"] for g in ours["param_groups"]] == [g["params"] for g in theirs["param_groups"]]
    for index, state in theirs["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            diff = (ours["state"][index][name] - state[name]).abs().max().item()
            assert diff < ATOL, f"optimizer {name} of parameter {index} differs by {diff}"


# ------------------------------------------------------------------------------------------- meta build
def _meta_worker(ctx):
    from torch.nn.modules.module import register_module_parameter_registration_hook

    from gperc_core.parallel.pipeline import build_pipeline

    built: list[tuple[str, int]] = []

    def record(module, name, param):
        if param is not None and not param.is_meta:
            built.append((name, param.numel()))

    handle_hook = register_module_parameter_registration_hook(record)
    try:
        handle = build_pipeline(tiny_config(num_layers=3), schedule="1f1b", microbatches=2)
    finally:
        handle_hook.remove()
    params = dict(handle.named_parameters())
    return {"built_numel": sum(n for _, n in built), "own_numel": sum(p.numel() for p in params.values()),
            "keys": sorted(handle.state_dict()), "meta": [k for k, p in params.items() if p.is_meta],
            "weights": {k: p.detach().clone() for k, p in params.items()}}


def test_a_pipeline_rank_builds_only_its_own_stage():
    from gperc_core.model.perceiver import Perceiver
    from gperc_core.parallel.pipeline import plan_stages, stage_units

    config = tiny_config(num_layers=3)
    full = Perceiver(config)
    per_rank = spawn_workers(_meta_worker, 2, timeout_s=60)
    plan = plan_stages(config, 2)
    for rank, r in enumerate(per_rank):
        units = stage_units(config, *plan.bounds[rank])
        expected = sorted(k for k in full.state_dict() if any(k == u or k.startswith(u + ".") for u in units))
        assert r["keys"] == expected, f"rank {rank}: holds {r['keys']}, its stage is {expected}"
        assert not r["meta"], f"rank {rank}: parameters left on the meta device: {r['meta']}"
        # nothing but its own parameters was ever allocated: the rest of the model stayed on the meta device
        assert r["built_numel"] == r["own_numel"] < full.num_parameters(), f"rank {rank}: {r['built_numel']}"
        reference = dict(full.named_parameters())
        for key, value in r["weights"].items():
            assert torch.equal(value, reference[key]), f"rank {rank}: {key} differs from the single-process init"


# ------------------------------------------------------------------------------------------- the Python API
def test_api_train_then_resume(tmp_path):
    from gperc_core.api.training import resume, train
    from gperc_core.errors import CheckpointError

    lines: list[str] = []
    result = train("blob/blobs", tmp_path / "run", overrides={**SETTINGS, "training.max_steps": 2}, pm=fake_pm(),
                   log=lines.append)
    assert result["step"] == 2 and result["is_main"] and result["run_dir"] == tmp_path / "run"
    assert result["model"].is_file() and result["checkpoint"].name == "step-00000002"
    assert any(line.startswith("task blob/blobs:") for line in lines), lines
    again = resume(tmp_path / "run", overrides={"training.max_steps": 3}, pm=fake_pm())
    assert again["step"] == 3 and again["checkpoint"].name == "step-00000003"
    with pytest.raises(CheckpointError, match="--resume"):
        train("blob/blobs", tmp_path / "run", overrides=SETTINGS, pm=fake_pm())
