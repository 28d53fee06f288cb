"""Deep ensembles (`model.ensemble_size`): members are the single models of their seeds, each is trained on
its own loss, evaluation reads the mean of their probabilities, checkpoints and DDP work, the pipeline and
bad settings are refused by name."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gperc_core import create_task
from gperc_core.config.bounds import check_model_bounds
from gperc_core.errors import ConfigError
from gperc_core.model.ensemble import Ensemble, member_config, member_seed, mixture_log_probs
from gperc_core.model.build import load_any_model, model_for_config
from gperc_core.model.perceiver import Perceiver
from gperc_core.parallel.distributed import spawn_workers
from gperc_core.train.loss import MaskedCrossEntropy
from gperc_core.train.trainer import Trainer, evaluate_model

from taskfakes import fake_pm
from test_mixup import three_steps
from test_pipeline import ATOL, make_batch, tiny_config

K = 3
FAST = {"training.epochs": 2, "training.batch_size": 16, "training.max_train_samples": 64,
        "training.max_eval_samples": 16, "training.progress": False, "model.ensemble_size": K}


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------------------- the model
def test_a_config_of_several_members_builds_an_ensemble_of_single_models():
    config = tiny_config(ensemble_size=K)
    model = model_for_config(config)
    assert isinstance(model, Ensemble) and len(model.members) == K
    assert isinstance(model_for_config(tiny_config()), Perceiver)           # the default, 1, is one model
    # member 0 is the single model of the config's seed; member k that of its own seed
    single = _weights(Perceiver(tiny_config()))
    assert all(torch.equal(v, single[k]) for k, v in _weights(model.members[0]).items())
    for k in range(K):
        assert model.members[k].config == member_config(config, k)
        assert model.members[k].config.ensemble_size == 1 and model.members[k].config.seed == member_seed(7, k)
    assert len({member_seed(7, k) for k in range(K)}) == K
    w1, w2 = _weights(model.members[1]), _weights(model.members[2])
    assert not torch.equal(w1["embeddings.latent"], w2["embeddings.latent"])  # independently initialised
    assert model.num_parameters() == K * Perceiver(tiny_config()).num_parameters()


def test_training_returns_every_members_logits_and_evaluation_their_mean_probability():
    config = tiny_config(ensemble_size=K)
    model = model_for_config(config)
    x, mask, _, _ = make_batch(config, 5, mask=True, output_array=False, dense=False)
    own = [member.eval()(x, mask) for member in model.members]
    stacked = model.train()(x, mask)
    assert stacked.shape == (K * 5, config.num_classes)
    for k in range(K):
        assert torch.allclose(stacked[k * 5:(k + 1) * 5], own[k], atol=1e-6)   # dropout 0: train == eval
    mixed = model.eval()(x, mask)
    probs = torch.stack([F.softmax(o, -1) for o in own]).mean(0)
    assert torch.allclose(mixed.exp(), probs, atol=1e-6)
    assert torch.allclose(torch.logsumexp(mixed, -1), torch.zeros(5), atol=1e-5)   # a log-probability
    assert torch.allclose(mixture_log_probs([own[0]]), F.log_softmax(own[0], -1), atol=1e-6)
    # per-query outputs (no decoder reduction) and the attentions of member 0
    dense = model_for_config(tiny_config(ensemble_size=2, decoder_reduction=None)).eval()
    out, attentions = dense(x, mask, return_attentions=True)
    assert out.shape == (5, 3, 5)
    ref = dense.members[0](x, mask, return_attentions=True)[1]
    assert len(attentions) == len(ref) and all(torch.equal(a, b) for a, b in zip(attentions, ref))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("soft", [False, True])
def test_each_member_gets_the_gradient_of_its_own_loss(smoothing, soft):
    """The ensemble's loss is the mean of the members' losses, so member k's gradient is 1/K of the
    gradient it gets trained alone on the batch (its direction under AdamW: the update of a lone model)."""
    config = tiny_config(ensemble_size=K)
    model = model_for_config(config).train()
    x, mask, _, target = make_batch(config, 6, mask=True, output_array=False, dense=False)
    if soft:  # mixup's class probabilities, one row unlabelled
        target = 0.7 * F.one_hot(target, config.num_classes).float() + 0.3 / config.num_classes
        target[2] = 0.0
    loss = MaskedCrossEntropy(smoothing, members=K)
    total = loss.mean(model(x, mask), target)
    total.backward()
    alone = MaskedCrossEntropy(smoothing)
    losses = []
    for k in range(K):
        lone = Perceiver(member_config(config, k))
        own = alone.mean(lone(x, mask), target)
        own.backward()
        losses.append(own.item())
        grads = dict(model.members[k].named_parameters())
        for name, p in lone.named_parameters():
            assert torch.allclose(grads[name].grad * K, p.grad, atol=1e-5), f"member {k}: {name}"
    assert total.item() == pytest.approx(sum(losses) / K, rel=1e-5)
    assert loss.count(target) == K * alone.count(target)


def test_per_query_targets_are_repeated_for_every_member():
    config = tiny_config(ensemble_size=2, decoder_reduction=None)
    model = model_for_config(config).train()
    x, mask, _, target = make_batch(config, 4, mask=False, output_array=False, dense=True)
    value = MaskedCrossEntropy(members=2).mean(model(x, mask), target)
    alone = [MaskedCrossEntropy().mean(m(x, mask), target).item() for m in model.members]
    assert value.item() == pytest.approx(sum(alone) / 2, rel=1e-5)
    with pytest.raises(ValueError, match=r"logits: expected 2 x 4 = 8 rows .* got 4"):
        MaskedCrossEntropy(members=2).mean(model.members[0](x, mask), target)
    with pytest.raises(ValueError, match="members: expected a positive integer, got 0"):
        MaskedCrossEntropy(members=0)


def test_bad_sizes_are_refused_by_name():
    for bad in (0, -2, 2.0, "3", True):
        with pytest.raises(ConfigError, match=r"ensemble_size: expected a positive integer"):
            tiny_config(ensemble_size=bad)
    with pytest.raises(ConfigError, match=r"ensemble_size: expected 1 with encoder_only=True .*got 2"):
        tiny_config(ensemble_size=2, encoder_only=True)
    with pytest.raises(ConfigError, match=r"ensemble_size: expected 1 for one model .*got 2"):
        Perceiver(tiny_config(ensemble_size=2))
    with pytest.raises(ConfigError, match=r"ensemble_size: expected at least 2 for an Ensemble .*got 1"):
        Ensemble(tiny_config())
    with pytest.raises(ConfigError, match=r"config.json: ensemble_size: expected at most 4,096"):
        check_model_bounds({"ensemble_size": 10 ** 6}, where="config.json: ")


def test_a_pipeline_refuses_an_ensemble_before_any_communication():
    from gperc_core.parallel.pipeline import build_pipeline

    with pytest.raises(ConfigError, match=r"ensemble_size: expected 1 for a pipeline-parallel model .*got 2"):
        build_pipeline(tiny_config(ensemble_size=2), num_stages=2)
    # the trainer's pipeline strategy refuses it first, before measuring block costs on the model
    from gperc_core.config.training import TrainingConfig
    from gperc_core.parallel.options import ParallelOptions
    from gperc_core.parallel.pipelined import Pipelined

    strategy = Pipelined.__new__(Pipelined)  # no process group: prepare must refuse before it needs one
    strategy.options = ParallelOptions(pipeline_stages=2, microbatches=2, balance="measured")
    with pytest.raises(ConfigError, match=r"ensemble_size: expected 1 for a pipeline-parallel model"):
        strategy.prepare(lambda: pytest.fail("built the model"), tiny_config(ensemble_size=2), TrainingConfig(),
                         MaskedCrossEntropy(members=2), {})


def test_saved_ensembles_and_members_load_back(tmp_path):
    config = tiny_config(ensemble_size=K)
    model = model_for_config(config).eval()
    x, mask, _, _ = make_batch(config, 4, mask=True, output_array=False, dense=False)
    model.save(tmp_path / "ensemble")
    loaded = load_any_model(tmp_path / "ensemble").eval()
    assert isinstance(loaded, Ensemble) and loaded.config == config
    assert torch.equal(loaded(x, mask), model(x, mask))
    assert isinstance(Ensemble.from_pretrained(tmp_path / "ensemble"), Ensemble)
    model.save_member(2, tmp_path / "member-2")
    member = load_any_model(tmp_path / "member-2").eval()
    assert isinstance(member, Perceiver) and member.config.seed == member_seed(config.seed, 2)
    assert torch.equal(member(x, mask), model.members[2](x, mask))
    with pytest.raises(IndexError, match=r"k: expected a member index in \[0, 3\), got 3"):
        model.save_member(3, tmp_path / "nope")


# ------------------------------------------------------------------------------------------- the trainer
def test_the_trainer_trains_an_ensemble_and_chooses_it_on_validation(tmp_path):
    pm = fake_pm()
    trainer = Trainer(create_task("blob/blobs", pm=pm, **FAST), tmp_path / "run")
    assert isinstance(trainer.model, Ensemble) and trainer.loss.members == K
    batch = next(iter(trainer.train_batches(0)))[1]
    before = _weights(trainer.model)
    loss = trainer.train_step(batch)
    assert math.isfinite(loss)
    after = _weights(trainer.model)
    for k in range(K):
        key = f"members.{k}.embeddings.latent"
        assert not torch.equal(before[key], after[key])                 # every member learns
    trainer.fit()
    best = load_any_model(tmp_path / "run" / "best").eval()
    assert isinstance(best, Ensemble) and len(best.members) == K
    # the checkpoint was chosen on the mixture's validation figures: the saved weights reproduce them
    again = evaluate_model(best, trainer.eval_data, device=torch.device("cpu"))
    assert again["accuracy"] == pytest.approx(trainer.best["accuracy"], abs=1e-6)
    assert again["loss"] == pytest.approx(trainer.best["loss"], rel=1e-4)
    # member 0 starts as the single model of the same seed
    single = Trainer(create_task("blob/blobs", pm=pm, **{**FAST, "model.ensemble_size": 1}), tmp_path / "single")
    first = _weights(single.model)
    assert all(torch.equal(first[k], before[f"members.0.{k}"]) for k in first)


def _ddp_worker(ctx, root: str):
    from gperc_core.parallel.ddp import DataParallel
    from gperc_core.parallel.distributed import build_layout

    trainer = Trainer(create_task("blob/blobs", pm=fake_pm(), **DDP), Path(root) / "ddp",
                      strategy=DataParallel(ctx, build_layout(1, ctx)))
    return three_steps(trainer)


DDP = {"training.epochs": 1, "training.batch_size": 10, "training.max_train_samples": 40,
       "training.max_eval_samples": 12, "training.progress": False, "training.label_smoothing": 0.1,
       "model.dropout": 0.0, "model.num_layers": 2, "model.ensemble_size": 2}


def test_ddp_trains_an_ensemble_like_one_process(tmp_path):
    torch.manual_seed(0)
    single = three_steps(Trainer(create_task("blob/blobs", pm=fake_pm(), **DDP), tmp_path / "single"))
    for report in spawn_workers(_ddp_worker, 2, args=(str(tmp_path),), timeout_s=90):
        assert set(report["state"]) == set(single["state"])
        diff = max((report["state"][k] - single["state"][k]).abs().max().item() for k in single["state"])
        assert diff < ATOL, f"weights differ by {diff} after 3 steps"
        assert abs(report["eval"]["loss"] - single["eval"]["loss"]) < ATOL
