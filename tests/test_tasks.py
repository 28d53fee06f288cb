"""create_task / list_tasks, overrides, config inference, pairing and fusion, on a tiny in-memory plugin."""

from __future__ import annotations

import pytest
import torch

from gperc_core import InputArray, ModalityFusion, Perceiver, create_task, hookimpl, list_tasks
from gperc_core.errors import ConfigError, InputError, TaskError
from gperc_core.model.fusion import fused_config, subset_masks
from gperc_core.model.build import load_any_model
from gperc_core.data.tasks import pair_by_target, parse_assignments, parse_value

from taskfakes import CharTokenizer, FakePlugin, fake_pm


@pytest.fixture(scope="module")
def pm():
    return fake_pm()


def test_list_tasks_fnmatch(pm):
    assert list_tasks("seq/*", pm=pm) == ["seq/letters", "seq/letters-dense"]
    assert "multimodal/av-digits" in list_tasks("multimodal/*", pm=pm)
    assert list_tasks("nothing/*", pm=pm) == []


def test_unknown_task_suggests_close_names(pm):
    with pytest.raises(TaskError, match="did you mean 'blob/blobs'"):
        create_task("blob/blbs", pm=pm)


def test_task_of_missing_plugin_gives_install_line(pm):
    with pytest.raises(TaskError, match="pip install gperc-plugin-image"):
        create_task("image/digits", pm=pm)
    with pytest.raises(TaskError, match="needs modality 'image'.*pip install gperc-plugin-image"):
        create_task("multimodal/av-digits", pm=pm)


def test_inferred_config_raw(pm):
    task = create_task("blob/blobs", pm=pm)
    c = task.config
    assert (c.input_type, c.input_dim, c.input_len, c.n_classes, c.latent_dim) == ("raw", 2, 8, 3, 16)
    assert c.output_dim == c.latent_dim and task.class_names == ["zero", "one", "two"]
    train = task.split("train")
    assert len(train) + len(task.split("validation")) == 96 and train.inputs["blob"].shape == (len(train), 8, 2)
    assert train.masks["blob"].sum(1).min() >= 4  # variable lengths are masked


def test_inferred_config_tokens_and_dense(pm):
    task = create_task("seq/letters", pm=pm)
    assert task.config.input_type == "tokens" and task.config.input_num_tokens == 4  # a, b, c + padding
    dense = create_task("seq/letters-dense", pm=pm)
    c = dense.config
    assert c.decoder_reduction is None and c.output_len == 9 and c.n_classes >= 3
    batch = dense.split("test").batch(torch.arange(5))
    assert batch["target"].shape == (5, 9) and (batch["target"] == -100).any()
    logits = dense.build_model()(batch["input_array"], batch["attention_mask"])
    assert logits.shape == (5, 9, c.n_classes)


def test_overrides_dotted_plain_and_sections(pm):
    task = create_task("blob/blobs", pm=pm, **{"model.latent_dim": 32, "training.lr": 1e-2}, num_layers=3,
                       epochs=4, model={"latent_len": 8})
    assert (task.config.latent_dim, task.config.num_layers, task.config.latent_len) == (32, 3, 8)
    assert (task.training.lr, task.training.epochs) == (1e-2, 4)
    assert isinstance(task.training.lr, float)


@pytest.mark.parametrize("overrides, error, text", [
    ({"model.latnt_dim": 3}, TaskError, "did you mean model.latent_dim"),
    ({"colour": 1}, TaskError, "unknown key"),
    ({"training.lr": "fast"}, TaskError, "training.lr: expected float, got str 'fast'"),
    ({"training.epochs": 2.5}, TaskError, "training.epochs: expected int"),
    ({"latent_dim": "abc"}, ConfigError, "latent_dim: expected a positive integer, got 'abc'"),
    ({"model.input_dim": 5}, ConfigError, "model.input_dim: expected 2"),
    ({"options.smell.x": 1}, TaskError, "unknown key"),
])
def test_bad_overrides(pm, overrides, error, text):
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        create_task("blob/blobs", pm=pm, **overrides)


def test_parse_values():
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3 and parse_value("true") is True
    assert parse_value("[28, 28]") == [28, 28] and parse_value("patches") == "patches"
    assert parse_assignments(["model.latent_dim=64", "options.image.representation=patches"]) == {
        "model.latent_dim": 64, "options.image.representation": "patches"}
    with pytest.raises(TaskError, match="key=value"):
        parse_assignments(["latent_dim"])


def test_options_reach_the_plugin_hooks(pm):
    seen = []

    class Spy(FakePlugin):
        __name__ = "spy"

        @hookimpl
        def gperc_input_array(self, modality, sample, options, tokenizer):
            seen.append((dict(options), tokenizer))
            return super().gperc_input_array(modality, sample, options, tokenizer)

    from gperc_core.plugins.manager import get_plugin_manager

    spy_pm = get_plugin_manager(plugins=[Spy()], entry_points=False, strict=True)
    task = create_task("seq/letters", pm=spy_pm, **{"options.seq.flavour": "x", "training.max_train_samples": 10,
                                                     "training.max_eval_samples": 5})
    assert len(seen) == 15  # the config is inferred from the training split (10) and its held-out validation part (5)
    task.split("test")
    assert len(seen) == 20 and all(s["flavour"] == "x" and "tokenizer" not in s for s, _ in seen)
    # the tokenizer is its own hook argument: the one gperc_tokenizer built on the training corpus
    assert all(isinstance(t, CharTokenizer) for _, t in seen) and len({id(t) for _, t in seen}) == 1


def test_pair_by_target_is_deterministic_and_label_consistent():
    a = [0, 1, 2, 0, 1, 2, 0, 0]
    b = [2, 2, 1, 0, 1]
    pairs = pair_by_target({"a": a, "b": b})
    assert len(pairs["a"]) == len(a) == len(pairs["b"])
    assert [a[i] for i in pairs["a"]] == [b[j] for j in pairs["b"]]
    assert torch.equal(pair_by_target({"a": a, "b": b})["b"], pairs["b"])
    # classes missing from one dataset are dropped
    pairs = pair_by_target({"a": [0, 1, 3], "b": [0, 1]})
    assert pairs["a"].tolist() == [0, 1]


def test_multimodal_task_pairs_and_fuses(pm):
    task = create_task("multi/blob-seq", pm=pm)
    c = task.config
    assert set(c.fusion) == {"blob", "seq"} and c.input_dim == 16 and c.input_len == 8 + 9
    assert c.fusion["seq"]["input_type"] == "tokens"
    data = task.split("train")
    batch = data.batch(torch.arange(6))
    assert batch["input_array"]["blob"].shape == (6, 8, 2) and batch["input_array"]["seq"].shape == (6, 9)
    model = task.build_model()
    assert isinstance(model, ModalityFusion)
    fused, mask = model.fuse(batch["input_array"], batch["attention_mask"])
    assert fused.shape == (6, 17, 16) and mask.shape == (6, 17)
    assert torch.equal(mask[:, :8], batch["attention_mask"]["blob"])
    assert model(batch["input_array"], batch["attention_mask"]).shape == (6, 3)


def test_fusion_modality_embedding_and_errors():
    config = fused_config({"latent_dim": 8, "latent_len": 2, "num_heads": 2, "output_dim": 8, "n_classes": 2,
                           "dropout": 0.0},
                          {"a": {"input_len": 3, "input_dim": 4, "input_type": "raw"},
                           "b": {"input_len": 2, "input_dim": 8, "input_type": "tokens", "input_num_tokens": 5}})
    model = ModalityFusion(config)
    x = {"a": torch.zeros(1, 3, 4), "b": torch.zeros(1, 2, dtype=torch.long)}
    fused, mask = model.fuse(x)
    assert mask is None
    # zero raw input: the projection bias plus the modality embedding, different per modality
    assert torch.allclose(fused[0, 0], model.projections["a"].bias + model.modality_embedding[0])
    with pytest.raises(InputError, match=r"input_array\['a'\]: expected a float tensor \[batch, 3, 4\]"):
        model({"a": torch.zeros(1, 3, 5), "b": x["b"]})
    with pytest.raises(InputError, match="one array per modality"):
        model({"a": x["a"]})
    with pytest.raises(ConfigError, match="fusion"):
        ModalityFusion(config.replace(fusion={}))


def test_modality_dropout_hides_one_modality_in_training_only():
    config = fused_config({"latent_dim": 8, "latent_len": 2, "num_heads": 2, "output_dim": 8, "n_classes": 2},
                          {"a": {"input_len": 3, "input_dim": 4, "input_type": "raw"},
                           "b": {"input_len": 2, "input_dim": 4, "input_type": "raw"}}, modality_dropout=0.9)
    model = ModalityFusion(config)
    x = {"a": torch.randn(64, 3, 4), "b": torch.randn(64, 2, 4)}
    _, mask = model.train().fuse(x)
    hidden_a, hidden_b = ~mask[:, :3].any(1), ~mask[:, 3:].any(1)
    assert hidden_a.any() and hidden_b.any() and not (hidden_a & hidden_b).any()
    assert (mask[:, :3].all(1) | hidden_a).all()  # a modality is hidden whole or not at all
    assert model.eval().fuse(x)[1] is None
    with pytest.raises(ConfigError, match="modality_dropout"):
        ModalityFusion(config.replace(modality_dropout=1.5))
    only_b = ModalityFusion(config.replace(modality_dropout={"b": 0.9})).train()
    _, mask = only_b.fuse(x)
    assert mask[:, :3].all() and (~mask[:, 3:].any(1)).any()
    with pytest.raises(ConfigError, match="modality_dropout.c"):
        ModalityFusion(config.replace(modality_dropout={"c": 0.5}))


def test_modality_ensemble_averages_the_log_probabilities_of_each_subset_in_evaluation_only():
    config = fused_config({"latent_dim": 8, "latent_len": 2, "num_heads": 2, "output_dim": 8, "n_classes": 3,
                           "dropout": 0.0},
                          {"a": {"input_len": 3, "input_dim": 4, "input_type": "raw"},
                           "b": {"input_len": 2, "input_dim": 5, "input_type": "tokens", "input_num_tokens": 7}},
                          modality_dropout=0.5, modality_ensemble=True)
    torch.manual_seed(0)
    model = ModalityFusion(config).eval()
    x = {"a": torch.randn(6, 3, 4), "b": torch.randint(0, 7, (6, 2))}
    mask = {"a": torch.tensor([[True, True, False]] * 6), "b": None}
    plain = ModalityFusion(config.replace(modality_ensemble=False))
    plain.load_state_dict(model.state_dict())
    plain.eval()
    full = plain(x, mask)
    only_a = plain.perceiver(*plain.fuse(x, subset_masks(["a", "b"], x, mask, "a")))
    only_b = plain.perceiver(*plain.fuse(x, subset_masks(["a", "b"], x, mask, "b")))
    # a subset pass masks the other modality out whole: b alone equals b with a hidden through its mask
    hide_a = {"a": torch.zeros(6, 3, dtype=torch.bool), "b": None}
    torch.testing.assert_close(only_b, plain(x, hide_a))
    expected = sum(torch.log_softmax(t, -1) for t in (full, only_a, only_b)) / 3
    out = model(x, mask)
    torch.testing.assert_close(out, expected)
    logits, attentions = model(x, mask, return_attentions=True)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(attentions, plain(x, mask, return_attentions=True)[1])  # the full pass's
    # training is one pass with modality dropout, as without the ensemble
    torch.manual_seed(1)
    trained = model.train()(x, mask)
    torch.manual_seed(1)
    torch.testing.assert_close(trained, plain.train()(x, mask))


def test_modality_ensemble_is_checked_and_set_from_a_card(pm):
    with pytest.raises(ConfigError, match="modality_ensemble: expected true or false, got 'yes'"):
        fused_config({"latent_dim": 8}, {"a": {"input_len": 3, "input_dim": 4}, "b": {"input_len": 2, "input_dim": 4}},
                     modality_ensemble="yes")
    with pytest.raises(ConfigError, match="modality_ensemble: expected a fused model of at least two modalities"):
        fused_config({"latent_dim": 8}, {"a": {"input_len": 3, "input_dim": 4}}, modality_ensemble=True)
    task = create_task("multi/blob-seq", pm=pm, **{"fusion.modality_ensemble": True})
    assert task.config.modality_ensemble is True
    assert create_task("multi/blob-seq", pm=pm).config.modality_ensemble is False


def test_fused_model_saves_and_loads(pm, tmp_path):
    task = create_task("multi/blob-seq", pm=pm)
    model = task.build_model().eval()
    batch = task.split("test").batch(torch.arange(4))
    model.save(tmp_path)
    again = load_any_model(tmp_path).eval()
    assert isinstance(again, ModalityFusion)
    torch.testing.assert_close(again(batch["input_array"], batch["attention_mask"]),
                               model(batch["input_array"], batch["attention_mask"]))
    plain = create_task("blob/blobs", pm=pm).build_model()
    plain.save(tmp_path / "p")
    assert isinstance(load_any_model(tmp_path / "p"), Perceiver)


def test_batches_trim_padding(pm):
    data = create_task("blob/blobs", pm=pm).split("train")
    lengths = data.masks["blob"].sum(1)
    short = torch.nonzero(lengths <= 5).flatten()[:4]
    batch = data.batch(short)
    assert batch["input_array"].shape[1] == int(lengths[short].max())
    assert data.batch(short, trim=False)["input_array"].shape[1] == 8


# --------------------------------------------------------------------- declared, typed options
class TypedPlugin(FakePlugin):
    """The fake plugin with declared options: typed ones on ``blob``, the old description form on ``seq``."""

    __name__ = "typed"

    @hookimpl
    def gperc_register_modalities(self):
        from gperc_core import ModalitySpec, Option

        from taskfakes import read_blob_file

        return [ModalitySpec("blob", "2-D point clouds", read_file=read_blob_file, options={
                    "scale": Option(float, 1.0, "multiply the points"),
                    "mode": Option(str, "plain", "how to read them", choices=("plain", "centred")),
                    "limit": Option(int, None, "keep at most this many points")}),
                ModalitySpec("seq", "letter strings", input_type="tokens", options={"flavour": "old-style description"})]


@pytest.fixture(scope="module")
def typed_pm():
    from gperc_core.plugins.manager import get_plugin_manager

    return get_plugin_manager(plugins=[TypedPlugin()], entry_points=False, strict=True)


QUICK_DATA = {"training.max_train_samples": 12, "training.max_eval_samples": 6}


def test_declared_defaults_are_filled_in(typed_pm):
    task = create_task("blob/blobs", pm=typed_pm, **QUICK_DATA)
    assert task.options["blob"] == {"scale": 1.0, "mode": "plain"}          # no default: absent
    task = create_task("blob/blobs", pm=typed_pm, **{"options.blob.scale": 2, "options.blob.limit": 5}, **QUICK_DATA)
    assert task.options["blob"] == {"scale": 2, "mode": "plain", "limit": 5}   # an int is a float


@pytest.mark.parametrize("key, fragment", [
    ("options.blob.scael", "options.blob.scael: unknown option of modality 'blob' (did you mean 'scale'? "
                           "known options: limit, mode, scale)"),
    ("options.seq.flavor", "options.seq.flavor: unknown option of modality 'seq' (did you mean 'flavour'? "
                           "known options: flavour)"),
])
def test_an_unknown_option_is_an_error_with_a_did_you_mean(typed_pm, key, fragment):
    name = "blob/blobs" if ".blob." in key else "seq/letters"
    with pytest.raises(TaskError) as err:
        create_task(name, pm=typed_pm, **{key: 2})
    assert fragment in str(err.value)


def test_an_unknown_option_of_a_card_names_the_card(typed_pm):
    from gperc_core.data.registry import find_card

    card = find_card("blob/blobs", typed_pm)
    card.options = {"blob": {"scal": 2.0}}
    with pytest.raises(TaskError, match=r"plugin:typed: options\.blob\.scal: unknown option of modality 'blob' "
                                        r"\(did you mean 'scale'\?"):
        create_task("blob/blobs", pm=typed_pm, card=card)


@pytest.mark.parametrize("value, fragment", [
    ("big", "options.blob.scale: expected float, got str 'big'"),
    (True, "options.blob.scale: expected float, got bool True"),
])
def test_an_option_of_the_wrong_type_is_an_error(typed_pm, value, fragment):
    with pytest.raises(TaskError) as err:
        create_task("blob/blobs", pm=typed_pm, **{"options.blob.scale": value})
    assert fragment in str(err.value)
    with pytest.raises(TaskError, match=r"options\.blob\.mode: expected one of \['plain', 'centred'\], got 'odd'"):
        create_task("blob/blobs", pm=typed_pm, **{"options.blob.mode": "odd"})


def test_a_plugin_declaring_no_options_keeps_its_options_unchecked(pm):
    task = create_task("blob/blobs", pm=pm, **{"options.blob.anything": 1}, **QUICK_DATA)
    assert task.options["blob"] == {"anything": 1}


# --------------------------------------------------------------------- declared position grids
class GridPlugin(FakePlugin):
    """The fake plugin whose blobs are cut to 4 points on a declared 1-D grid (no position channels)."""

    __name__ = "grid"

    @hookimpl
    def gperc_input_array(self, modality, sample, options, tokenizer):
        from gperc_core import PositionGrid

        if modality == "blob":
            return InputArray(array=torch.as_tensor(sample[:4], dtype=torch.float32),
                              position=PositionGrid(shape=(4,), num_bands=2))
        return super().gperc_input_array(modality, sample, options, tokenizer)


def test_a_declared_grid_becomes_the_models_fourier_features():
    from gperc_core import fourier_features
    from gperc_core.plugins.manager import get_plugin_manager

    grid_pm = get_plugin_manager(plugins=[GridPlugin()], entry_points=False, strict=True)
    single = create_task("blob/blobs", pm=grid_pm, **QUICK_DATA)
    assert (single.config.input_dim, single.config.input_pos_enc, single.config.input_pos_shape) == (2, "fourier", [4])
    assert single.split("test").batch(torch.arange(3))["input_array"].shape == (3, 4, 2)
    fused = create_task("multi/blob-seq", pm=grid_pm, **QUICK_DATA)
    assert fused.config.fusion["blob"]["input_dim"] == 2 + 5           # the fused model reads the features
    blob = fused.split("test").batch(torch.arange(3))["input_array"]["blob"]
    assert blob.shape == (3, 4, 7) and torch.equal(blob[0, :, 2:], fourier_features((4,), 2))
    assert fused.build_model()(fused.split("test").batch(torch.arange(3))["input_array"]).shape[0] == 3
