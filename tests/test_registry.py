"""Task cards: schema validation (errors name the file and the key), loading, the plugin index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gperc_core.errors import TaskError
from gperc_core.data.registry import (card_files, install_hint, load_index, load_registry, registry_dir,
                                 validate_card)

GOOD = """
name = "toy/blobs"
description = "toy"
modalities = ["toy"]
dataset = "blobs"
objective = "classification"
baseline = { accuracy = 0.5, method = "chance" }
[options.toy]
scale = 2
[model]
latent_dim = 32
[training]
epochs = 3
lr = 1e-3
"""


def make_registry(tmp_path: Path, text: str, rel: str = "toy/blobs.toml") -> Path:
    root = tmp_path / "registry"
    root.mkdir()
    shutil.copy(registry_dir() / "schema.toml", root / "schema.toml")
    shutil.copy(registry_dir() / "index.toml", root / "index.toml")
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)
    return root


def test_shipped_cards_are_valid():
    cards = load_registry()
    assert len(cards) == len(card_files())
    for name, card in cards.items():
        assert card.name == name and "/" in name and card.modalities
    assert set(cards) == {"multimodal/av-digits"}      # the core keeps only the cards that combine plugins
    assert cards["multimodal/av-digits"].multimodal


def test_plugins_ship_their_cards_and_every_indexed_task_is_shipped():
    from gperc_core.plugins.manager import get_plugin_manager

    pm = get_plugin_manager(allow=["image", "audio", "text", "graph"], strict=True)
    cards = load_registry(pm)
    assert cards["image/digits"].plugin == "image" and cards["image/digits"].source == "plugin:image"
    assert cards["graph/mutag"].plugin == "graph" and cards["audio/spoken-digits"].plugin == "audio"
    indexed = {task: entry.name for entry in load_index() for task in entry.tasks}
    shipped = {name: card.plugin for name, card in cards.items() if card.plugin is not None}
    assert indexed == shipped                 # the index names every card the plugins ship, and only those


def test_no_shipped_card_forces_bf16_on():
    """A card leaves bf16 to auto (on where the device has native bf16) or turns it off: forced on, a CPU
    without native bf16 emulates it at about a seventh of the fp32 speed (gperc_core.train.device)."""
    from gperc_core.plugins.manager import get_plugin_manager

    cards = load_registry(get_plugin_manager(allow=["image", "audio", "text", "graph"], strict=True))
    forced = [name for name, card in cards.items() if card.training.get("bf16") is True]
    assert forced == []
    assert "bf16" not in cards["text/wordnet-supersense"].training   # auto: its width 128 gets bf16 where native


def test_a_known_task_whose_plugin_is_missing_names_the_install_line():
    from gperc_core.data.tasks import describe_tasks, find_card

    from taskfakes import fake_pm

    with pytest.raises(TaskError, match=r"'image/digits' comes from the 'image' plugin, which is not installed: "
                                        r"pip install gperc-plugin-image"):
        find_card("image/digits", fake_pm())
    rows = {r["name"]: r for r in describe_tasks("*", fake_pm())}
    assert rows["image/digits"]["installed"] is False
    assert rows["image/digits"]["install"] == "pip install gperc-plugin-image"
    assert rows["multimodal/av-digits"]["install"] == "pip install gperc-plugin-audio && pip install gperc-plugin-image"
    assert rows["blob/blobs"]["installed"] is True and rows["blob/blobs"]["install"] is None


def test_the_removed_metrics_key_of_old_records_is_ignored():
    card = validate_card({"name": "x/y", "modalities": ["x"], "dataset": "d", "metrics": ["accuracy"]}, "old task.json")
    assert "metrics" not in card.to_dict() and not hasattr(card, "metrics")


def test_good_card_loads(tmp_path):
    cards = load_registry(directory=make_registry(tmp_path, GOOD))
    card = cards["toy/blobs"]
    assert card.model == {"latent_dim": 32} and card.training == {"epochs": 3, "lr": 1e-3}
    assert card.options == {"toy": {"scale": 2}} and card.dataset_for("toy") == "blobs"
    assert card.source.endswith("blobs.toml") and card.plugin is None


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace("objective", "colour = \"red\"\nobjective"),
     "colour"),
    (lambda t: t.replace('dataset = "blobs"\n', ""), "dataset"),
    (lambda t: t.replace('modalities = ["toy"]', 'modalities = "toy"'), "modalities"),
    (lambda t: t.replace('"classification"', '"regression"'), "objective"),
    (lambda t: t.replace("latent_dim = 32", "latnt_dim = 32"), "model.latnt_dim"),
    (lambda t: t.replace("epochs = 3", 'epochs = "three"'), "training.epochs"),
    (lambda t: t.replace("epochs = 3", "epoch = 3"), "training.epoch"),
    (lambda t: t.replace("[options.toy]", "[options.sound]"), "options.sound"),
])
def test_bad_cards_name_file_and_key(tmp_path, edit, key):
    root = make_registry(tmp_path, edit(GOOD))
    with pytest.raises(TaskError) as err:
        load_registry(directory=root)
    assert "blobs.toml" in str(err.value) and key in str(err.value)


def test_card_name_must_match_its_path(tmp_path):
    root = make_registry(tmp_path, GOOD, rel="toy/other.toml")
    with pytest.raises(TaskError, match="'toy/other'"):
        load_registry(directory=root)


def test_invalid_toml_names_the_file(tmp_path):
    root = make_registry(tmp_path, "name = ")
    with pytest.raises(TaskError, match="blobs.toml: not valid TOML"):
        load_registry(directory=root)


def test_plugin_card_duplicate_names_both_sources(tmp_path):
    root = make_registry(tmp_path, GOOD)

    class FakePM:
        task_cards = [{"name": "toy/blobs", "modalities": ["toy"], "dataset": "x", "plugin": "toyplug"}]

    with pytest.raises(TaskError) as err:
        load_registry(FakePM(), directory=root)
    assert "blobs.toml" in str(err.value) and "plugin:toyplug" in str(err.value)


def test_plugin_cards_are_validated_and_stamped():
    card = validate_card({"name": "x/y", "modalities": ["x"], "dataset": "d", "plugin": "p"}, "plugin:p")
    assert card.objective == "classification" and (card.train_split, card.eval_split) == ("train", "test")
    with pytest.raises(TaskError, match="plugin:p: name"):
        validate_card({"name": "xy", "modalities": ["x"], "dataset": "d"}, "plugin:p")


def test_pairing_replaces_dataset():
    card = validate_card({"name": "multimodal/t", "modalities": ["a", "b"],
                          "pairing": {"a": "da", "b": "db", "by": "target"}}, "inline")
    assert card.dataset_for("a") == "da" and card.dataset_for("b") == "db"
    with pytest.raises(TaskError, match="pairing.b"):
        validate_card({"name": "multimodal/t", "modalities": ["a", "b"], "pairing": {"a": "da"}}, "inline")
    with pytest.raises(TaskError, match="pairing.by"):
        validate_card({"name": "multimodal/t", "modalities": ["a"], "pairing": {"a": "da", "by": "index"}}, "inline")


def test_index_gives_install_hints():
    names = {e.name: e for e in load_index()}
    assert {"image", "audio", "text", "graph"} <= set(names)
    assert "image/fashion-mnist" in names["image"].tasks
    assert install_hint("audio") == "pip install gperc-plugin-audio"
    assert install_hint("smell") == "pip install gperc-plugin-smell"
