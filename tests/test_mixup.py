"""Mixup (``training.mixup``, `gperc_core.train.mixup`): the mixed inputs, masks and soft targets, a loss
that equals the mix of the two hard-target losses, a draw that depends only on (seed, step), exact resume,
a pipeline that trains like one process, and the tasks and settings it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gperc_core import create_task
from gperc_core.errors import ConfigError, TaskError
from gperc_core.model.sentinels import IGNORE_INDEX, mask_sentinel, output_sentinel
from gperc_core.parallel.distributed import spawn_workers
from gperc_core.train.loss import MaskedCrossEntropy
from gperc_core.train.mixup import Mixup, check_mixable, mix_batch
from gperc_core.train.trainer import Trainer

from taskfakes import fake_pm
from test_pipeline import ATOL

FAST = {"training.epochs": 2, "training.batch_size": 16, "training.max_train_samples": 64,
        "training.max_eval_samples": 16, "training.progress": False, "training.lr": 1e-2}


def _batch(b: int = 6, m: int = 5, c: int = 3, classes: int = 4) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"input_array": torch.randn(b, m, c, generator=g), "attention_mask": None, "output_array": None,
            "target": torch.randint(0, classes, (b,), generator=g)}


def test_inputs_and_targets_are_the_convex_combination_of_the_pair():
    batch, perm, lam = _batch(), torch.tensor([2, 0, 1, 5, 3, 4]), 0.3
    mixed = mix_batch(batch, 4, lam, perm)
    x = batch["input_array"]
    torch.testing.assert_close(mixed["input_array"], lam * x + (1 - lam) * x[perm])
    soft = mixed["target"]
    assert soft.shape == (6, 4) and soft.dtype == torch.float32
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(6))
    for row in range(6):
        a, b = int(batch["target"][row]), int(batch["target"][perm[row]])
        expected = torch.zeros(4)
        expected[a] += lam
        expected[b] += 1 - lam
        torch.testing.assert_close(soft[row], expected)
    assert mixed["attention_mask"] is None and batch["target"].dim() == 1   # the input batch is not changed


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_soft_target_loss_is_the_mix_of_the_two_hard_losses(smoothing):
    batch, perm, lam = _batch(), torch.randperm(6, generator=torch.Generator().manual_seed(1)), 0.7
    mixed = mix_batch(batch, 4, lam, perm)
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
    loss = MaskedCrossEntropy(smoothing)
    ours = loss.total(logits, mixed["target"])
    ref = lam * loss.total(logits, batch["target"]) + (1 - lam) * loss.total(logits, batch["target"][perm])
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref)
    assert loss.count(mixed["target"]) == 6


def test_unlabelled_rows_carry_no_loss():
    batch = _batch()
    batch["target"][1] = IGNORE_INDEX                        # e.g. a padding row of a distributed step
    perm = torch.tensor([1, 0, 2, 3, 4, 5])                    # row 0 is mixed with the unlabelled row
    mixed = mix_batch(batch, 4, 0.5, perm)
    assert mixed["target"][1].sum() == 0 and mixed["target"][0].sum() == 0
    loss = MaskedCrossEntropy(0.1)
    assert loss.count(mixed["target"]) == 4
    logits = torch.randn(6, 4)
    expected = MaskedCrossEntropy(0.1).total(logits[2:], mixed["target"][2:])
    torch.testing.assert_close(loss.total(logits, mixed["target"]), expected)


def test_masks_become_the_union_and_sentinels_stay():
    batch = _batch(b=3, m=4)
    batch["attention_mask"] = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    mixed = mix_batch(batch, 4, 0.5, torch.tensor([1, 2, 0]))
    assert mixed["attention_mask"].tolist() == [[True, True, False, False], [True, True, True, False],
                                                [True, True, True, False]]
    batch["attention_mask"] = mask_sentinel(3)
    assert torch.equal(mix_batch(batch, 4, 0.5, torch.tensor([1, 2, 0]))["attention_mask"], mask_sentinel(3))


def test_each_modality_of_a_fused_batch_is_mixed_with_the_same_pairing():
    g = torch.Generator().manual_seed(3)
    batch = {"input_array": {"a": torch.randn(4, 2, 3, generator=g), "b": torch.randn(4, 5, 1, generator=g)},
             "attention_mask": {"a": None, "b": torch.tensor([[1, 1, 0, 0, 0]] * 4, dtype=torch.bool)},
             "target": torch.tensor([0, 1, 2, 1])}
    perm, lam = torch.tensor([3, 2, 1, 0]), 0.25
    mixed = mix_batch(batch, 3, lam, perm)
    for name in ("a", "b"):
        x = batch["input_array"][name]
        torch.testing.assert_close(mixed["input_array"][name], lam * x + (1 - lam) * x[perm])
    assert mixed["attention_mask"]["a"] is None and mixed["attention_mask"]["b"][:, :2].all()


def test_the_draw_depends_only_on_seed_and_step():
    mixup = Mixup(0.4, num_classes=4, seed=7)
    lam, perm = mixup.draw(5, 8)
    again = Mixup(0.4, num_classes=4, seed=7).draw(5, 8)
    assert lam == again[0] and torch.equal(perm, again[1])
    assert 0.0 < lam < 1.0 and sorted(perm.tolist()) == list(range(8))
    others = [mixup.draw(step, 8) for step in range(6, 12)] + [Mixup(0.4, 4, seed=8).draw(5, 8)]
    assert all(other[0] != lam for other in others)
    lams = torch.tensor([Mixup(0.4, 4).draw(step, 2)[0] for step in range(2000)])
    assert abs(lams.mean().item() - 0.5) < 0.03                 # Beta(a, a) is symmetric about 1/2
    assert abs(lams.var().item() - 1 / (4 * (2 * 0.4 + 1))) < 0.01  # its variance 1 / (4 (2a + 1))


def test_what_cannot_be_mixed_is_refused_by_name():
    ids = _batch()
    ids["input_array"] = torch.zeros(6, 5, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"training\.mixup: expected floating-point input arrays.*int64"):
        check_mixable(ids)
    queries = _batch()
    queries["output_array"] = torch.zeros(6, 2, 3)
    with pytest.raises(ConfigError, match=r"training\.mixup: .*output array"):
        check_mixable(queries)
    queries["output_array"] = output_sentinel(6)
    check_mixable(queries)                                      # the sentinel means no output array
    dense = _batch()
    dense["target"] = torch.zeros(6, 5, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"training\.mixup: expected one integer class id per sample.*\[6, 5\]"):
        check_mixable(dense)
    for alpha in (0, -1.0, True, "0.2"):
        with pytest.raises(ConfigError, match=r"training\.mixup: expected a number > 0"):
            Mixup(alpha, 4)
    with pytest.raises(ConfigError, match="num_classes=1"):
        Mixup(0.2, 1)


def test_bad_settings_and_tasks_are_refused_before_training(tmp_path):
    pm = fake_pm()
    with pytest.raises(ConfigError, match=r"training\.mixup: expected a number >= 0 \(0: off\), got -0\.5"):
        create_task("blob/blobs", pm=pm, **{**FAST, "training.mixup": -0.5})
    with pytest.raises(TaskError, match=r"training\.mixup: expected float, got str"):
        create_task("blob/blobs", pm=pm, **{**FAST, "training.mixup": "a lot"})
    with pytest.raises(ConfigError, match=r"training\.mixup: expected floating-point input arrays.*token ids"):
        Trainer(create_task("seq/letters", pm=pm, **{**FAST, "training.mixup": 0.4}), tmp_path / "ids")


def test_training_mixes_and_resumes_exactly(tmp_path):
    pm = fake_pm()
    extra = {**FAST, "training.mixup": 0.4, "training.label_smoothing": 0.1}
    plain = Trainer(create_task("blob/blobs", pm=pm, **FAST), tmp_path / "plain")
    straight = Trainer(create_task("blob/blobs", pm=pm, **extra), tmp_path / "a")
    assert plain.mixup is None and straight.mixup.alpha == 0.4
    batch = next(iter(straight.train_batches(0)))[1]
    assert straight.mixup(batch, 0)["target"].shape == (batch["target"].shape[0], 3)
    expected = straight.fit()
    assert expected["last_validation"]["loss"] != plain.fit()["last_validation"]["loss"]
    half = Trainer(create_task("blob/blobs", pm=pm, **extra), tmp_path / "b")
    assert half.fit(max_steps=3)["step"] == 3
    resumed = Trainer(create_task("blob/blobs", pm=pm, **extra), tmp_path / "b")
    assert resumed.load_checkpoint() == 3
    result = resumed.fit()
    assert result["last_validation"]["loss"] == expected["last_validation"]["loss"]


# ------------------------------------------------------------------------------------------- pipeline
PIPE = {"training.epochs": 1, "training.batch_size": 10, "training.max_train_samples": 40,
        "training.max_eval_samples": 12, "training.progress": False, "training.label_smoothing": 0.1,
        "model.dropout": 0.0, "model.num_layers": 2, "training.mixup": 0.4}


def three_steps(trainer: Trainer) -> dict:
    """Train ``trainer`` 3 steps; its full state, its validation metrics and whether it is the main process."""
    for step, batch in trainer.train_batches(0):
        if step >= 3:
            break
        trainer.train_step(batch)
    return {"state": {k: v.detach().cpu().clone() for k, v in trainer.strategy.full_state_dict().items()},
            "eval": trainer.evaluate(), "is_main": trainer.is_main}


def _pipeline_worker(ctx, root: str):
    from gperc_core.parallel.distributed import build_layout
    from gperc_core.parallel.options import ParallelOptions
    from gperc_core.parallel.pipelined import Pipelined

    options = ParallelOptions(pipeline_stages=2, microbatches=2)
    task = create_task("blob/blobs", pm=fake_pm(), **PIPE)
    return three_steps(Trainer(task, Path(root) / "pipe", strategy=Pipelined(ctx, build_layout(2, ctx), options)))


def test_a_pipeline_mixes_like_one_process(tmp_path):
    torch.manual_seed(0)
    single = three_steps(Trainer(create_task("blob/blobs", pm=fake_pm(), **PIPE), tmp_path / "single"))
    main = [r for r in spawn_workers(_pipeline_worker, 2, args=(str(tmp_path),), timeout_s=90) if r["is_main"]][0]
    assert set(main["state"]) == set(single["state"])
    diff = max((main["state"][k] - single["state"][k]).abs().max().item() for k in single["state"])
    assert diff < ATOL, f"weights differ by {diff} after 3 mixed steps"
