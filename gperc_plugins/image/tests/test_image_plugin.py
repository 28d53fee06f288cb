"""The image plugin through the plugin manager: registration, hooks, collation, a Perceiver learning digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gperc_plugin_image.plugin as image_plugin
from gperc_core import Collator, InputError, Perceiver, PerceiverConfig, TaskError, get_plugin_manager
from gperc_plugin_image.datasets import load_digits, load_digits_segmentation


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(entry_points=False, plugins=[image_plugin])


def test_registers_modality_and_datasets_stamped(pm):
    spec = pm.modality("image")
    assert spec.input_type == "raw" and spec.plugin == image_plugin.__name__ and "representation" in spec.options
    assert {"fashion-mnist", "digits", "digits-segmentation"} <= set(pm.datasets)
    assert pm.dataset("digits-segmentation").num_classes == 11


def test_hooks_ignore_other_modalities(pm):
    assert pm.hook.gperc_input_array(modality="audio", sample=np.zeros((4, 4)), options={}, tokenizer=None) is None
    assert pm.hook.gperc_output_array(modality="audio", options={"task": "segmentation"}, output_dim=16) is None
    assert pm.hook.gperc_output_array(modality="image", options={}, output_dim=16) is None


def test_bad_sample_through_the_hook_names_the_plugin(pm):
    with pytest.raises(InputError, match="gperc-plugin-image: sample: expected an image with 3 channel"):
        pm.hook.gperc_input_array(modality="image", sample=np.zeros((4, 4, 1), np.uint8), options={"channels": 3},
                                  tokenizer=None)
    with pytest.raises(TaskError, match=r"options\['image_shape'\]"):
        pm.hook.gperc_output_array(modality="image", options={"task": "segmentation"}, output_dim=16)


def test_read_file_png_and_npy(tmp_path):
    from torchvision.io import write_png

    image = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8)
    write_png(image.permute(2, 0, 1).contiguous(), str(tmp_path / "x.png"))
    read = image_plugin.read_image_file(str(tmp_path / "x.png"))
    assert read.shape == (5, 7, 3) and np.array_equal(read, image.numpy())
    np.save(tmp_path / "x.npy", image.numpy())
    assert np.array_equal(image_plugin.read_image_file(str(tmp_path / "x.npy")), image.numpy())
    with pytest.raises(InputError, match="gperc-plugin-image: path"):
        image_plugin.read_image_file(str(tmp_path / "missing.png"))


def _batch(pm, dataset, options, n):
    examples = []
    for i in range(n):
        sample = dataset[i]
        array = pm.hook.gperc_input_array(modality="image", sample=sample["image"], options=options, tokenizer=None)
        array.target = sample["target"]
        examples.append(array)
    return Collator()(examples)


def _fit(model, batch, steps, output_array=None):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        logits = model(batch["input_array"], batch["attention_mask"], output_array)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["target"].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return logits.detach(), float(loss.detach())


def test_tiny_perceiver_learns_a_handful_of_digits(pm):
    torch.manual_seed(0)
    options = {"num_bands": 4, "image_shape": [8, 8, 1], "normalize": [0.305, 0.376]}
    batch = _batch(pm, load_digits("train", {}), options, 16)
    m, c = batch["input_array"].shape[1:]
    assert (m, c) == (64, 1) and batch["attention_mask"] is None and batch["target"].shape == (16,)
    config = PerceiverConfig(input_len=m, input_dim=c, input_pos_enc="fourier", input_pos_shape=[8, 8],
                             fourier_num_bands=4, latent_len=8, latent_dim=32,
                             output_dim=32, ffw_latent=64, ffw_output=64, n_classes=10, dropout=0.0, num_layers=1)
    logits, _ = _fit(Perceiver(config), batch, steps=60)
    assert (logits.argmax(-1) == batch["target"]).float().mean() >= 0.9


def test_segmentation_queries_drive_per_pixel_logits(pm):
    torch.manual_seed(0)
    options = {"num_bands": 4, "image_shape": [8, 8], "task": "segmentation"}
    batch = _batch(pm, load_digits_segmentation("train", {}), options, 8)
    queries = pm.hook.gperc_output_array(modality="image", options=options, output_dim=32)
    assert queries.shape == (64, 32)
    config = PerceiverConfig(input_len=64, input_dim=1, input_pos_enc="fourier", input_pos_shape=[8, 8],
                             fourier_num_bands=4, latent_len=8, latent_dim=32,
                             output_len=64, output_dim=32, ffw_latent=64, ffw_output=64, n_classes=11,
                             decoder_reduction=None, dropout=0.0, num_layers=1)
    model = Perceiver(config)
    output = queries.unsqueeze(0).expand(8, -1, -1)
    first, _ = _fit(model, batch, steps=1, output_array=output)
    logits, loss = _fit(model, batch, steps=40, output_array=output)
    assert logits.shape == (8, 64, 11) and batch["target"].shape == (8, 64)
    start = float(torch.nn.functional.cross_entropy(first.reshape(-1, 11), batch["target"].reshape(-1)))
    assert loss < 0.7 * start


def test_query_pixels_queries_carry_each_pixel_after_its_fourier_features(pm):
    options = {"num_bands": 4, "image_shape": [8, 8], "task": "segmentation", "query_pixels": True,
               "normalize": [0.3, 0.4]}
    sample = load_digits_segmentation("train", {})[0]
    array = pm.hook.gperc_input_array(modality="image", sample=sample["image"], options=options, tokenizer=None)
    assert array.output.shape == (64, 19)  # 2 x (2 x 4 + 1) Fourier channels + 1 pixel channel
    assert torch.equal(array.output[:, 18:], array.array)  # the pixel, normalised as the input array is
    static = pm.hook.gperc_output_array(modality="image", options=options, output_dim=19)
    assert torch.equal(static[:, :18], array.output[:, :18]) and not static[:, 18:].any()
    plain = pm.hook.gperc_input_array(modality="image", sample=sample["image"], options={**options, "query_pixels": False},
                                      tokenizer=None)
    assert plain.output is None


@pytest.mark.parametrize("options, output_dim, match", [
    ({"task": "segmentation", "image_shape": [8, 8], "num_bands": 4, "query_pixels": True}, 64,
     r"output_dim: expected 19 with options\['query_pixels'\].*got 64; set model.output_dim = 19"),
    ({"image_shape": [8, 8], "num_bands": 4, "query_pixels": True}, 19,
     r"options\['query_pixels'\]: expected task 'segmentation'.*got task 'classification'"),
    ({"task": "segmentation", "image_shape": [8, 8], "query_pixels": "yes"}, 19,
     r"options\['query_pixels'\]: expected true or false, got 'yes'"),
])
def test_bad_query_pixels_settings_name_the_option(pm, options, output_dim, match):
    sample = load_digits_segmentation("train", {})[0]["image"]
    with pytest.raises(TaskError, match=match):
        if options.get("task") == "segmentation":
            pm.hook.gperc_output_array(modality="image", options=options, output_dim=output_dim)
        pm.hook.gperc_input_array(modality="image", sample=sample, options=options, tokenizer=None)


def test_shipped_image_cards_use_documented_options_and_registered_datasets(pm):
    from gperc_core.data.registry import load_registry

    from gperc_core.data.options import resolve_modality

    assert not [c for c in load_registry().values() if c.name.startswith("image/")]   # the core ships none
    cards = [c for c in load_registry(pm).values() if c.name.startswith("image/")]     # the plugin does
    assert {c.name for c in cards} >= {"image/fashion-mnist", "image/digits", "image/digits-segmentation"}
    for card in cards:
        assert card.dataset in pm.datasets, card.name
        assert card.plugin == image_plugin.__name__ and card.source == f"plugin:{card.plugin}"
        assert set(card.options.get("image", {})) <= set(image_plugin.OPTIONS), card.name
        resolve_modality(pm.modality("image"), card.options.get("image", {}), {}, card.source)  # typed, known
        image_plugin.ArrayOptions(card.options.get("image", {}))          # values are valid too
