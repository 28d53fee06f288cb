"""Weight averaging (``training.ema_decay``): the average it keeps, that validation, the best weights and
the run's model use it, exact resume with it, and bad settings."""

from __future__ import annotations

import pytest
import torch

from gperc_core import create_task
from gperc_core.errors import CheckpointError, ConfigError
from gperc_core.io import checkpoint as ckpt
from gperc_core.io import runs
from gperc_core.train.ema import WeightEMA
from gperc_core.train.trainer import Trainer

from taskfakes import fake_pm

FAST = {"training.epochs": 2, "training.batch_size": 16, "training.max_train_samples": 64,
        "training.max_eval_samples": 16, "training.progress": False, "training.lr": 1e-2}


@pytest.fixture(scope="module")
def pm():
    return fake_pm()


def make(pm, out, **extra):
    return Trainer(create_task("blob/blobs", pm=pm, **{**FAST, **extra}), out)


def test_the_average_follows_the_formula_and_swapping_restores_the_weights():
    p = torch.nn.Parameter(torch.zeros(3))
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    ema = WeightEMA([("p", p), ("frozen", frozen)], decay=0.9)
    assert list(ema.averages) == ["p"]                            # only trained parameters
    expected = torch.zeros(3)
    for t, value in enumerate([1.0, 2.0, 3.0, 4.0] + [5.0] * 40):
        with torch.no_grad():
            p.fill_(value)
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * value
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(1000) == 0.9
    assert torch.allclose(ema.averages["p"], expected) and ema.updates == 44
    trained = p.detach().clone()
    with ema.swapped():
        assert torch.equal(p.detach(), ema.averages["p"])
    assert torch.equal(p.detach(), trained)


def test_validation_best_weights_and_the_model_are_the_averaged_weights(pm, tmp_path):
    trainer = make(pm, tmp_path, **{"training.ema_decay": 0.8, "training.epochs": 1})
    result = trainer.fit()
    assert result["best_step"] == trainer.step == 4                 # one epoch: one validation, at the end
    last = {k: v.clone() for k, v in ckpt.model_state(trainer.model).items()}
    averaged = trainer.ema.state()
    for folder in (tmp_path, tmp_path / "best"):                    # the run's model and the chosen weights
        saved = ckpt.load_tensors(folder / "model.safetensors")
        assert all(torch.equal(saved[k], averaged[k]) for k in averaged)
        assert any(not torch.equal(saved[k], last[k]) for k in averaged)   # not the trained weights
    with trainer.ema.swapped():
        again = trainer.evaluate()
    assert again["accuracy"] == result["last_validation"]["accuracy"]  # validation read the averages
    latest = runs.latest_checkpoint(tmp_path)
    assert (latest / runs.AVERAGES_FILE).is_file()
    assert runs.read_checkpoint(latest)["state"]["ema_updates"] == trainer.step


def test_exact_resume_continues_the_average(pm, tmp_path):
    extra = {"training.ema_decay": 0.9, "model.dropout": 0.2}
    straight = make(pm, tmp_path / "a", **extra)
    expected = straight.fit()
    half = make(pm, tmp_path / "b", **extra)
    assert half.fit(max_steps=3)["step"] == 3
    resumed = make(pm, tmp_path / "b", **extra)
    assert resumed.load_checkpoint() == 3 and resumed.ema.updates == 3
    result = resumed.fit()
    a, b = straight.ema.state(), resumed.ema.state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result["last_validation"]["accuracy"] == expected["last_validation"]["accuracy"]
    assert result["eval"]["accuracy"] == expected["eval"]["accuracy"]


def test_a_checkpoint_without_averages_is_refused_and_bad_decays_name_the_field(pm, tmp_path):
    make(pm, tmp_path).fit(max_steps=2)
    with pytest.raises(CheckpointError, match="expected the weight averages of training.ema_decay=0.9"):
        make(pm, tmp_path, **{"training.ema_decay": 0.9}).load_checkpoint()
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match=r"training.ema_decay: expected a number in \(0, 1\) or None"):
            make(pm, tmp_path / "x", **{"training.ema_decay": bad})
