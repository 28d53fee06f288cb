"""Image arrays: pixels and patches with their position grid (the model's Fourier features), input validation, ImageConfig arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gperc_core import ConfigError, InputError, TaskError, fourier_features
from gperc_plugin_image import ImageConfig
from gperc_plugin_image.arrays import ArrayOptions, as_image, feature_channels, patch_array, pixel_array, query_array


def _image(h=5, w=6, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def test_pixels_hold_scaled_channels_and_declare_their_grid():
    img = _image()
    array = pixel_array(as_image(img))
    assert array.shape == (30, 3)                                   # no position channels: the model adds them
    assert torch.allclose(array, torch.from_numpy(img.reshape(30, 3)).float() / 255)
    grid = ArrayOptions({"num_bands": 3}).grid(5, 6)
    assert (grid.shape, grid.num_bands, grid.max_resolution, grid.channels) == ((5, 6), 3, None, feature_channels(2, 3))


@pytest.mark.parametrize("options, h, w", [({"num_bands": 3}, 5, 6),
                                           ({"representation": "patches", "patch_size": 3, "num_bands": 2,
                                             "max_resolution": [4, 5]}, 7, 8)])
def test_model_fourier_features_equal_the_old_per_sample_ones(options, h, w):
    """The model computes, once, exactly the features the plugin used to append to every sample."""
    from gperc_core import PerceiverConfig, Perceiver

    geometry = ArrayOptions(options)
    image = geometry.image(_image(h=h, w=w, c=2))
    array, grid = geometry.array(image), geometry.grid(h, w)
    old = torch.cat([array, fourier_features(grid.shape, grid.num_bands, geometry.max_resolution)], dim=1)
    config = PerceiverConfig(input_len=array.shape[0], input_dim=array.shape[1], input_pos_enc="fourier",
                             input_pos_shape=list(grid.shape), fourier_num_bands=grid.num_bands,
                             fourier_max_resolution=list(grid.max_resolution) if grid.max_resolution else None)
    embedded = Perceiver(config).embeddings.embed_input(array.unsqueeze(0).expand(2, -1, -1))
    assert torch.equal(embedded[0], old) and torch.equal(embedded[1], old)


def test_float_images_are_kept_and_grey_gets_one_channel():
    img = np.linspace(-1, 2, 20, dtype=np.float32).reshape(4, 5)
    image = as_image(img)
    assert image.shape == (4, 5, 1) and torch.equal(image[..., 0], torch.from_numpy(img))
    assert as_image(torch.from_numpy(img).double()).dtype == torch.float32


def test_patches_are_row_major_and_zero_padded():
    img = as_image(_image(h=5, w=6, c=2))
    array = patch_array(img, patch_size=4)
    assert array.shape == (2 * 2, 4 * 4 * 2)
    assert torch.equal(array[0, :32], img[:4, :4].reshape(-1))          # top-left patch, (row, col, channel)
    bottom_right = torch.zeros(4, 4, 2)
    bottom_right[:1, :2] = img[4:, 4:]
    assert torch.equal(array[3, :32], bottom_right.reshape(-1))
    assert ArrayOptions({"representation": "patches", "patch_size": 4}).grid(5, 6).shape == (2, 2)


@pytest.mark.parametrize("sample, fragment", [
    (np.zeros((4, 4), dtype=np.int64), "dtype uint8 or float"),
    (np.zeros((4, 4), dtype=bool), "dtype uint8 or float"),
    (np.zeros(7, dtype=np.uint8), "[H, W] or [H, W, C]"),
    (np.zeros((2, 4, 4, 1), dtype=np.uint8), "[H, W] or [H, W, C]"),
    (np.zeros((0, 4), dtype=np.uint8), "every axis > 0"),
    (np.zeros((3, 32, 32), dtype=np.uint8), "channels last"),
    (np.full((2, 2), np.nan, dtype=np.float32), "finite"),
    ([[1, 2], [3, 4]], "numpy array, torch tensor or PIL image"),
    ("picture.png", "numpy array, torch tensor or PIL image"),
])
def test_bad_samples_are_input_errors_naming_the_plugin(sample, fragment):
    with pytest.raises(InputError, match="gperc-plugin-image: sample: expected") as info:
        as_image(sample)
    assert fragment in str(info.value)


def test_options_check_channels_and_shape():
    rgb = _image(c=3)
    with pytest.raises(InputError, match=r"1 channel\(s\).*got shape \[5, 6, 3\]"):
        ArrayOptions({"channels": 1}).image(rgb)
    with pytest.raises(InputError, match=r"image of shape \[28, 28\]"):
        ArrayOptions({"image_shape": [28, 28, 3]}).image(rgb)
    assert ArrayOptions({"image_shape": [5, 6, 3]}).image(rgb).shape == (5, 6, 3)


@pytest.mark.parametrize("options, name", [
    ({"representation": "voxels"}, "representation"), ({"num_bands": 0}, "num_bands"),
    ({"patch_size": 2.5}, "patch_size"), ({"image_shape": [28]}, "image_shape"),
    ({"max_resolution": [8]}, "max_resolution"), ({"channels": -1}, "channels"),
])
def test_bad_options_are_task_errors(options, name):
    with pytest.raises(TaskError, match=rf"gperc-plugin-image: options\['{name}'\]: expected"):
        ArrayOptions(options)


@pytest.mark.parametrize("options", [{}, {"representation": "patches", "patch_size": 3, "num_bands": 5}])
def test_geometry_matches_the_arrays(options):
    geometry = ArrayOptions(options)
    array = geometry.array(geometry.image(_image(h=7, w=8, c=2)))
    assert tuple(array.shape) == geometry.geometry(7, 8, 2)


def test_query_array_fits_output_dim():
    queries = query_array(8, 8, output_dim=32, num_bands=16)
    bands = (32 // 2 - 1) // 2
    assert queries.shape == (64, 32)
    assert torch.equal(queries[:, : feature_channels(2, bands)], fourier_features((8, 8), bands))
    assert not queries[:, feature_channels(2, bands):].any()
    with pytest.raises(TaskError, match="output_dim: expected at least 6"):
        query_array(8, 8, output_dim=4)


def test_image_config_keeps_gperc_arithmetic():
    config = ImageConfig((28, 28, 1), latent_len=32, latent_dim=64, n_classes=10, ffw_ratio=2.0)
    assert (config.input_len, config.input_dim, config.output_len, config.output_dim) == (784, 1, 1, 64)
    assert (config.ffw_latent, config.ffw_output, config.n_classes) == (128, 128, 10)
    assert config.decoder_reduction == "mean" and config.decoder_residual is False and config.task == "classification"
    assert ImageConfig.from_json(config.to_json()) == config


def test_image_config_for_plugin_arrays_and_segmentation():
    config = ImageConfig([8, 8, 1], 16, 32, 11, task="segmentation", num_bands=4, dropout=0.0)
    m, c = ArrayOptions({"num_bands": 4}).geometry(8, 8, 1)
    assert (config.input_len, config.input_dim, config.input_pos_enc) == (m, c, "fourier")
    assert (config.input_pos_shape, config.fourier_num_bands, config.input_embed_dim) == ([8, 8], 4, 1 + 18)
    assert (config.output_len, config.decoder_reduction, config.dropout) == (64, None, 0.0)
    patches = ImageConfig([28, 28, 3], 16, 32, 10, num_bands=4, representation="patches", patch_size=7)
    assert (patches.input_len, patches.input_dim) == ArrayOptions(
        {"representation": "patches", "patch_size": 7, "num_bands": 4}).geometry(28, 28, 3)
    assert ImageConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("kwargs, name", [
    ({"image_shape": (28, 28)}, "image_shape"), ({"task": "detection"}, "task"), ({"ffw_ratio": 0}, "ffw_ratio"),
    ({"num_bands": 0}, "num_bands"),
])
def test_image_config_bad_arguments(kwargs, name):
    args = {"image_shape": (28, 28, 1), "latent_len": 8, "latent_dim": 16, "n_classes": 10, **kwargs}
    with pytest.raises(ConfigError, match=name):
        ImageConfig(**args)


@pytest.mark.parametrize("representation", ["pixels", "patches"])
def test_normalize_standardises_and_augmentation_pads_with_black(representation):
    from gperc_core import InputArray
    from gperc_plugin_image.augment import augment_array

    image = torch.rand(8, 8, 1)
    plain_options = {"representation": representation, "patch_size": 4, "augment": ["crop"]}
    options = {**plain_options, "normalize": [0.3, 0.4]}
    plain, normal = ArrayOptions(plain_options), ArrayOptions(options)
    assert torch.allclose(normal.array(image), (plain.array(image) - 0.3) / 0.4)
    outs = [augment_array(InputArray(array=g.array(image), position=g.grid(8, 8)), o, torch.Generator().manual_seed(3))
            for g, o in ((plain, plain_options), (normal, options))]
    assert (outs[0].array == 0).any()  # the crop padded with black
    assert torch.allclose((outs[0].array - 0.3) / 0.4, outs[1].array, atol=1e-6)


@pytest.mark.parametrize("value", [0.5, [0.5], [0.5, 0], [[0.1, 0.2], [0.3]], ["a", 1], True])
def test_bad_normalize_names_the_option(value):
    with pytest.raises(TaskError, match=r"options\['normalize'\]: expected"):
        ArrayOptions({"normalize": value})
    with pytest.raises(TaskError, match=r"options\['normalize'\]: expected 1 or 3"):
        ArrayOptions({"normalize": [[0.1, 0.2], [0.3, 0.4]], "channels": 3})
