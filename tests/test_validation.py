"""The validation split (issue 10): held out of the training split (disjoint, seeded, stratified) or
the dataset's own; per-epoch evaluation, best-checkpoint choice and early stopping on it; the test
split evaluated once, at the end, with the best weights; resume keeps the best; card keys checked."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from gperc_core import create_task
from gperc_core.data.cards import validate_card
from gperc_core.data.datasets import held_out
from gperc_core.errors import ConfigError, TaskError
from gperc_core.io import checkpoint as ckpt
from gperc_core.train.trainer import Trainer

from taskfakes import fake_pm

FAST = {"training.epochs": 5, "training.batch_size": 16, "training.max_train_samples": 32,
        "training.max_eval_samples": 16, "training.progress": False}


@pytest.fixture(scope="module")
def pm():
    return fake_pm()


# --------------------------------------------------------------------- the split
def test_held_out_is_disjoint_complete_deterministic_and_stratified():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    parts = held_out(100, 0.1, 0, labels)
    train, val = parts["train"].tolist(), parts["validation"].tolist()
    assert not set(train) & set(val) and sorted(train + val) == list(range(100))
    assert Counter(labels[i] for i in val) == {0: 5, 1: 3, 2: 2}  # 10 % of each class
    again = held_out(100, 0.1, 0, labels)
    assert torch.equal(again["validation"], parts["validation"])
    assert not torch.equal(held_out(100, 0.1, 1, labels)["validation"], parts["validation"])
    assert len(held_out(10, 0.25, 0)["validation"]) == 2  # no labels (dense targets): not stratified
    assert Counter(labels[i] for i in held_out(100, 0.01, 0, labels)["validation"].tolist()) == {0: 1, 1: 1, 2: 1}
    assert len(held_out(3, 0.1, 0)["validation"]) == 1 and len(held_out(2, 0.1, 0, [0, 1])["validation"]) == 1
    with pytest.raises(TaskError, match=r"validation\.fraction.*1 training samples, got 0\.1 \(0 held out\)"):
        held_out(1, 0.1, 0)


def test_task_splits_partition_the_training_split(pm):
    task = create_task("blob/blobs", pm=pm)
    data = task.data
    assert task.split_names == {"train": "train", "validation": "validation", "test": "test"}
    train, val = data.split_index("train")["blobs"].tolist(), data.split_index("validation")["blobs"].tolist()
    assert not set(train) & set(val) and sorted(train + val) == list(range(96)) and len(val) == 10
    # never trained on: the training loader reads only the training part
    assert len(task.train_loader()) == len(train)
    targets = [s["target"] for s in [data.raw_split("blobs", "train")[i] for i in range(96)]]
    counts, held = Counter(targets), Counter(targets[i] for i in val)
    assert all(abs(held[c] - 0.1 * counts[c]) <= 0.5 for c in counts)  # stratified
    other = create_task("blob/blobs", pm=pm, **{"validation.seed": 1, "validation.fraction": 0.25})
    val2 = other.data.split_index("validation")["blobs"].tolist()
    assert len(val2) == 24 and val2 != val and other.card.validation == {"fraction": 0.25, "seed": 1}
    assert other.record()["card"]["validation"] == {"fraction": 0.25, "seed": 1}  # a run rebuilds the same split


def test_paired_task_holds_out_each_dataset_before_pairing(monkeypatch):
    """A paired task holds each dataset's validation part out of its own training split, so no sample of
    the validation split is also paired into the training split (pairing reuses the smaller dataset's
    samples: holding out paired positions leaked 372 of av-digits' 380 validation images)."""
    import taskfakes

    full = taskfakes.load_letters
    monkeypatch.setattr(taskfakes, "load_letters", lambda split, options: taskfakes._Split(
        full(split, options).samples[: 40 if split == "train" else None]))  # fewer than the 96 blobs: reused
    data = create_task("multi/blob-seq", pm=taskfakes.fake_pm()).data
    train, val = data.split_index("train"), data.split_index("validation")
    for dataset in ("blobs", "letters"):
        parts = data.holdout(dataset)
        assert set(train[dataset].tolist()) <= set(parts["train"].tolist())
        assert set(val[dataset].tolist()) <= set(parts["validation"].tolist())
        assert not set(train[dataset].tolist()) & set(val[dataset].tolist())
    for part in (train, val):  # still paired by target
        blobs, letters = data.raw_split("blobs", "train"), data.raw_split("letters", "train")
        assert all(blobs[int(b)]["target"] == letters[int(s)]["target"] for b, s in zip(part["blobs"], part["letters"]))
    assert len(data.converted("validation")["blob"]) == len(val["blobs"])


def test_paired_task_reads_a_modalitys_own_validation_split(pm):
    """``validation.splits``: one modality's validation samples come from its dataset's own split (a
    held-out voice), the others' are held out of their training split; the training part keeps every
    training sample of the named dataset."""
    task = create_task("multi/blob-seq", pm=pm, **{"validation.splits.seq": "validation"})
    data = task.data
    assert task.card.validation == {"splits": {"seq": "validation"}} and data.source_split("validation", "letters") == "validation"
    train, val = data.split_index("train"), data.split_index("validation")
    assert set(train["letters"].tolist()) == set(range(96)) and set(val["letters"].tolist()) <= set(range(30))
    assert len(set(val["letters"].tolist())) == 30  # all of its own split is used (blobs is the anchor)
    assert not set(train["blobs"].tolist()) & set(val["blobs"].tolist())
    own = data.raw_split("letters", "validation")
    blobs = data.raw_split("blobs", "train")
    assert all(blobs[int(b)]["target"] == own[int(s)]["target"] for b, s in zip(val["blobs"], val["letters"]))
    converted = data.converted("validation")["seq"]
    assert converted.rows([0])[0].array.tolist() == data.tokenizer("seq").encode(own[int(val["letters"][0])]["seq"])
    assert task.record()["card"]["validation"] == {"splits": {"seq": "validation"}}
    from gperc_core.data.cards import validate_card
    assert validate_card(task.record()["card"], source="task.json").validation_sources == {"letters": "validation"}


def test_splits_override_keeps_the_cards_other_entries():
    from gperc_core.data.cards import apply_split_overrides

    card = validate_card({"name": "multi/blob-seq", "modalities": ["blob", "seq"],
                          "pairing": {"blob": "blobs", "seq": "letters"},
                          "validation": {"fraction": 0.2, "splits": {"seq": "validation"}}}, source="card.toml")
    new = apply_split_overrides(card, {"validation": {"splits": {"blob": "dev"}}})
    assert new.validation == {"fraction": 0.2, "splits": {"seq": "validation", "blob": "dev"}}
    assert new.validation_sources == {"letters": "validation", "blobs": "dev"}
    assert card.validation["splits"] == {"seq": "validation"}  # the card itself is unchanged


def test_metric_override_and_split_override_keep_each_other():
    from gperc_core.data.cards import apply_split_overrides

    card = validate_card({"name": "blob/blobs", "modalities": ["blob"], "dataset": "blobs",
                          "validation": {"split": "dev", "metric": "loss"}}, source="card.toml")
    assert card.selection_metric == "loss"
    assert apply_split_overrides(card, {"validation": {"split": "other"}}).validation == {"split": "other",
                                                                                           "metric": "loss"}
    new = apply_split_overrides(card, {"validation": {"metric": "accuracy"}})
    assert new.validation == {"split": "dev", "metric": "accuracy"} and new.selection_metric == "accuracy"
    assert validate_card({"name": "blob/blobs", "modalities": ["blob"], "dataset": "blobs"},
                         source="card.toml").selection_metric == "accuracy"


@pytest.mark.parametrize("table, message", [
    ({"validation": {"fraction": 1.5}}, r"validation\.fraction: expected a number in \(0, 1\), got 1\.5"),
    ({"validation": {"fraction": "x"}}, r"validation\.fraction: expected number, got str 'x'"),
    ({"validation": {"seed": -1}}, r"validation\.seed: expected an integer >= 0, got -1"),
    ({"validation": {"size": 3}},
     r"validation\.size: unknown key \(expected one of \['fraction', 'metric', 'seed', 'split', 'splits'\]\)"),
    ({"validation": {"metric": "f1"}}, r"validation\.metric: expected one of \['accuracy', 'loss'\], got 'f1'"),
    ({"validation": {"metric": 1}}, r"validation\.metric: expected string, got int 1"),
    ({"validation": {"splits": {"blob": "validation"}}}, r"validation\.splits: expected a paired multimodal task"),
    ({"validation": {"splits": "validation"}}, r"validation\.splits: expected table, got str 'validation'"),
    ({"validation": {"split": "train"}}, r"validation\.split: expected a split other than .* got 'train'"),
    ({"validation": {"split": "dev", "seed": 1}}, r"validation\.seed: expected no seed with validation\.split"),
    ({"cross_validation": {"fold": 1}}, r"cross_validation\.folds: expected the number of folds"),
    ({"cross_validation": {"folds": 5, "fold": 5}}, r"cross_validation\.fold: expected an integer in \[0, 5\), got 5"),
    ({"cross_validation": {"folds": 1}}, r"cross_validation\.folds: expected an integer >= 2, got 1"),
    ({"goal": {"accuracy": 1.5}}, r"goal\.accuracy: expected a number in \[0, 1\], got float 1\.5"),
    ({"goal": {"f1": 0.5}}, r"goal\.f1: unknown metric"),
    ({"goal": "0.9"}, r"goal: expected table, got str"),
])
def test_bad_card_values_name_key_expected_and_actual(table, message):
    card = {"name": "blob/blobs", "modalities": ["blob"], "dataset": "blobs", **table}
    with pytest.raises(TaskError, match=message):
        validate_card(card, source="card.toml")


def test_bad_overrides_name_key_expected_and_actual(pm):
    with pytest.raises(TaskError, match=r"override validation\.fraction: expected a number in \(0, 1\), got 0"):
        create_task("blob/blobs", pm=pm, **{"validation.fraction": 0})
    with pytest.raises(TaskError, match=r"override 'validation\.frac'.*did you mean validation\.fraction"):
        create_task("blob/blobs", pm=pm, **{"validation.frac": 0.2})
    with pytest.raises(TaskError, match=r"cross_validation\.fold: task 'blob/blobs' has no \[cross_validation\]"):
        create_task("blob/blobs", pm=pm, **{"cross_validation.fold": 1})
    with pytest.raises(TaskError, match=r"cross_validation: expected modality 'blob'.*fold options"):
        create_task("blob/blobs", pm=pm, **{"cross_validation.folds": 3})
    with pytest.raises(TaskError, match=r"validation\.splits\.seq: expected the name of a split other than the "
                                        r"training split 'train' and the test split 'test', got 'test'"):
        create_task("multi/blob-seq", pm=pm, **{"validation.splits.seq": "test"})
    with pytest.raises(TaskError, match=r"override 'validation\.splits\.image': unknown key"):
        create_task("multi/blob-seq", pm=pm, **{"validation.splits.image": "validation"})
    with pytest.raises(TaskError, match=r"split 'dev': dataset 'letters' has splits"):
        create_task("multi/blob-seq", pm=pm, **{"validation.splits.seq": "dev"}).data.split_index("validation")
    with pytest.raises(ConfigError, match=r"early_stopping_patience: expected a positive integer or None, got 0"):
        create_task("blob/blobs", pm=pm, **{"training.early_stopping_patience": 0})


# --------------------------------------------------------------------- the trainer
class Scripted:
    """Replace ``trainer.evaluate``: the validation split gets the scripted accuracies in turn (and the
    weights at each evaluation are kept), the test split is counted and sees the weights it is given."""

    def __init__(self, trainer, accuracies, losses=None):
        self.trainer, self.accuracies = trainer, list(accuracies)
        self.losses = list(losses) if losses is not None else None
        self.weights, self.test_calls, self.test_weights = [], 0, None
        self.real = trainer.evaluate
        trainer.evaluate = self

    def __call__(self, data=None):
        state = {k: v.clone() for k, v in ckpt.model_state(self.trainer.model).items()}
        metrics = self.real(data)
        if data is None or data is self.trainer.eval_data:
            self.weights.append(state)
            if self.losses is not None:
                metrics = {**metrics, "loss": self.losses.pop(0)}
            return {**metrics, "accuracy": self.accuracies.pop(0)}
        assert data is self.trainer.test_data
        self.test_calls += 1
        self.test_weights = state
        return metrics


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_selection_on_validation_and_test_once_with_the_best_weights(pm, tmp_path):
    trainer = Trainer(create_task("blob/blobs", pm=pm, **FAST), tmp_path)
    script = Scripted(trainer, [0.5, 0.9, 0.6, 0.8, 0.7])  # best at epoch 2
    result = trainer.fit()
    spe = trainer.steps_per_epoch
    assert script.test_calls == 1 and result["best_step"] == 2 * spe
    assert result["validation"]["accuracy"] == 0.9 and result["validation"]["split"] == "validation"
    assert result["test"] is result["eval"] and result["test"]["split"] == "test" and result["test"]["name"] == "test"
    assert result["test"]["best_step"] == 2 * spe and result["test"]["validation_accuracy"] == 0.9
    assert same(script.test_weights, script.weights[1])  # the test saw the epoch-2 weights
    saved = ckpt.load_tensors(tmp_path / "model.safetensors")
    assert same(saved, script.weights[1]) and same(ckpt.load_tensors(tmp_path / "best" / "model.safetensors"), saved)
    assert same(ckpt.model_state(trainer.model), script.weights[-1])  # the last weights are put back
    last = json.loads((tmp_path / "best" / "validation.json").read_text())
    assert last["step"] == 2 * spe
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in records if r["split"] != "train"] == ["validation"] * 5 + ["test"]
    # the checkpoint keeps the last weights (a resume continues training from them), not the best
    from gperc_core.io import runs

    ck = runs.read_checkpoint(runs.latest_checkpoint(tmp_path))
    assert not same(ck["weights"], script.weights[1]) and ck["state"]["best"]["step"] == 2 * spe


@pytest.mark.parametrize("metric, best_epoch", [("accuracy", 2), ("loss", 4)])
def test_selection_metric_accuracy_or_loss(pm, tmp_path, metric, best_epoch):
    overrides = {**FAST, "validation.metric": metric} if metric != "accuracy" else FAST
    trainer = Trainer(create_task("blob/blobs", pm=pm, **overrides), tmp_path)
    # accuracy ties at 0.9 go to the lower loss (epoch 2); the lowest loss is epoch 4's
    script = Scripted(trainer, [0.9, 0.9, 0.7, 0.8, 0.9], losses=[0.5, 0.3, 0.6, 0.2, 0.3])
    result = trainer.fit()
    spe = trainer.steps_per_epoch
    assert result["best_step"] == best_epoch * spe and script.test_calls == 1
    assert same(script.test_weights, script.weights[best_epoch - 1])
    test = result["test"]
    assert test["selected_on"] == metric
    assert (test["validation_accuracy"], test["validation_loss"]) == ([0.9, 0.9, 0.7, 0.8][best_epoch - 1],
                                                                        [0.5, 0.3, 0.6, 0.2][best_epoch - 1])


def test_selection_metric_loss_ties_go_to_the_higher_accuracy(pm, tmp_path):
    trainer = Trainer(create_task("blob/blobs", pm=pm, **{**FAST, "validation.metric": "loss"}), tmp_path)
    Scripted(trainer, [0.6, 0.8, 0.7, 0.5, 0.4], losses=[0.4, 0.2, 0.2, 0.3, 0.5])
    assert trainer.fit()["best_step"] == 2 * trainer.steps_per_epoch


def test_early_stopping_stops(pm, tmp_path):
    trainer = Trainer(create_task("blob/blobs", pm=pm, **{**FAST, "training.early_stopping_patience": 2}), tmp_path)
    script = Scripted(trainer, [0.8, 0.7, 0.6, 0.9, 0.9])
    result = trainer.fit()
    spe = trainer.steps_per_epoch
    assert result["early_stopped"] and result["step"] == 3 * spe and result["best_step"] == spe
    assert script.test_calls == 1 and same(script.test_weights, script.weights[0])
    # resuming an early-stopped run trains no further
    again = Trainer(create_task("blob/blobs", pm=pm, **{**FAST, "training.early_stopping_patience": 2}), tmp_path)
    assert again.load_checkpoint() == 3 * spe and again.stopped_early
    assert again.fit()["step"] == 3 * spe


def test_resume_keeps_the_best(pm, tmp_path):
    task = create_task("blob/blobs", pm=pm, **FAST)
    first = Trainer(task, tmp_path)
    script = Scripted(first, [0.9, 0.2])
    spe = first.steps_per_epoch
    first.fit(max_steps=2 * spe)  # stops at an epoch end: no extra evaluation
    best_weights = script.weights[0]
    resumed = Trainer(create_task("blob/blobs", pm=pm, **FAST), tmp_path)
    assert resumed.load_checkpoint() == 2 * spe
    assert resumed.best["step"] == spe and resumed.best["accuracy"] == 0.9 and resumed.bad_evals == 1
    later = Scripted(resumed, [0.3, 0.4, 0.5])  # never better than the first epoch's 0.9
    result = resumed.fit()
    assert result["best_step"] == spe and later.test_calls == 1 and same(later.test_weights, best_weights)


def test_cli_says_which_split_it_reports(tmp_path, capsys, monkeypatch):
    import gperc_core.plugins.manager as plugins
    from gperc_core.cli import main

    monkeypatch.setattr(plugins, "_default", fake_pm())
    run = tmp_path / "run"
    assert main(["train", "blob/blobs", "--out", str(run), "--quiet", "--set", "training.max_train_samples=32",
                 "--set", "training.max_eval_samples=8", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "validation split 'validation': best by accuracy: accuracy=" in out and "test split 'test': accuracy=" in out
    assert "(baseline 0.9000)" in out
    assert main(["eval", str(run), "--split", "validation"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("blob/blobs validation split 'validation':")
    assert main(["eval", str(run)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("blob/blobs test split 'test':")
