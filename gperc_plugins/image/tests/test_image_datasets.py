"""Image datasets: IDX reading, Fashion-MNIST folder layouts, digits splits, segmentation, augmentation."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from gperc_core import TaskError
from gperc_plugin_image import datasets as ds
from gperc_plugin_image.augment import augmentation_names, build_augmentation

DEBIAN = ds.FASHION_DEBIAN_DIR / "t10k-images-idx3-ubyte.gz"
needs_fashion = pytest.mark.skipif(not DEBIAN.exists(), reason=f"Fashion-MNIST not installed: {ds.FASHION_APT}")


def _write_idx(path, array, gz=True):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def _fake_fashion(folder, n=6, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
        arrays[prefix] = images, labels
    return arrays


@pytest.fixture(autouse=True)
def _fresh_cache():
    ds._fashion_arrays.cache_clear()
    yield
    ds._fashion_arrays.cache_clear()


def test_read_idx_plain_and_gzip_and_corrupt(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", array)
    _write_idx(tmp_path / "a", array, gz=False)
    assert np.array_equal(ds.read_idx(tmp_path / "a.gz"), array)
    assert np.array_equal(ds.read_idx(tmp_path / "a"), array)
    (tmp_path / "short").write_bytes((tmp_path / "a").read_bytes()[:-3])
    with pytest.raises(TaskError, match="truncated or corrupted"):
        ds.read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(TaskError, match="expected an IDX file"):
        ds.read_idx(tmp_path / "junk")


@pytest.mark.parametrize("gz", [True, False])
def test_torchvision_layout_from_option_and_env(tmp_path, monkeypatch, gz):
    arrays = _fake_fashion(tmp_path / "FashionMNIST" / "raw", gz=gz)
    data = ds.load_fashion_mnist("test", {"root": str(tmp_path)})
    images, labels = arrays["t10k"]
    assert len(data) == 6 and data[2]["image"].shape == (28, 28, 1)
    assert np.array_equal(data[2]["image"][..., 0], images[2]) and data[2]["target"] == int(labels[2])
    monkeypatch.setenv(ds.FASHION_ENV, str(tmp_path))
    monkeypatch.setattr(ds, "FASHION_DEBIAN_DIR", tmp_path / "nowhere")
    assert ds.fashion_mnist_dir({}) == tmp_path / "FashionMNIST" / "raw"


def test_missing_fashion_mnist_names_the_apt_package(tmp_path, monkeypatch):
    monkeypatch.delenv(ds.FASHION_ENV, raising=False)
    monkeypatch.setattr(ds, "FASHION_DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(TaskError, match="apt-get install dataset-fashion-mnist"):
        ds.load_fashion_mnist("train", {"image": {"root": str(tmp_path)}})


def test_unknown_split_and_bad_limit(tmp_path):
    _fake_fashion(tmp_path)
    with pytest.raises(TaskError, match="split: expected one of"):
        ds.load_fashion_mnist("validation", {"root": str(tmp_path)})
    with pytest.raises(TaskError, match="max_samples"):
        ds.load_digits("train", {"max_samples": 0})


@needs_fashion
def test_real_fashion_mnist_smoke():
    data = ds.load_fashion_mnist("test", {"max_samples": 5})
    assert len(data) == 5
    sample = data[0]
    assert sample["image"].shape == (28, 28, 1) and sample["image"].dtype == np.uint8
    assert 0 <= sample["target"] < 10 and data.classes[sample["target"]] in ds.FASHION_CLASSES
    assert len(ds.load_fashion_mnist("train", {})) == 60000


def test_digits_split_is_fixed_and_stratified():
    train, test = ds.load_digits("train", {}), ds.load_digits("test", {})
    assert (len(train), len(test)) == (1347, 450) and test.classes[3] == "3"
    counts = np.bincount(test.targets, minlength=10)
    totals = counts + np.bincount(train.targets, minlength=10)
    assert np.all(np.abs(counts - 0.25 * totals) <= 1)
    image = test[0]["image"]
    assert image.shape == (8, 8, 1) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    assert np.array_equal(ds.load_digits("test", {}).images, test.images)


def test_digits_segmentation_targets_mark_the_ink_with_the_label():
    data = ds.load_digits_segmentation("test", {"max_samples": 3})
    assert data.classes[0] == "background" and len(data.classes) == 11
    cls, seg = ds.load_digits("test", {}), data[1]
    target = seg["target"]
    assert target.shape == (64,) and target.dtype == torch.long
    ink = torch.from_numpy(seg["image"].reshape(64) * 16 >= ds.SEGMENTATION_THRESHOLD)
    assert torch.equal(target[ink], torch.full((int(ink.sum()),), cls[1]["target"] + 1))
    assert not target[~ink].any()


def test_augmentation_per_epoch_keeps_shape_and_dtype():
    # the datasets no longer augment: the gperc_transform hook does, on training samples, per epoch
    from gperc_plugin_image.augment import augment_array
    from gperc_plugin_image.plugin import gperc_input_array

    torch.manual_seed(0)
    train = ds.load_digits("train", {"augment": ["crop", "rotate"]})
    test = ds.load_digits("test", {"augment": True})
    assert train.augment is None and test.augment is None
    for options in ({"augment": ["crop", "rotate"]}, {"augment": True, "representation": "patches", "patch_size": 3}):
        converted = gperc_input_array("image", train[0]["image"], options)
        views = [augment_array(converted, options, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
        assert views[0].array.shape == converted.array.shape and views[0].array.dtype == torch.float32
        assert views[0].position == converted.position
        assert torch.equal(views[0].array, views[1].array) and not torch.equal(views[0].array, views[2].array)
    assert augment_array(converted, {"augment": False}, torch.Generator()) is None
    augment = build_augmentation(["flip", "erase", "affine"], 6, 5)
    image = torch.randint(0, 256, (6, 5, 3), dtype=torch.uint8)
    assert augment(image).shape == (6, 5, 3) and augment(image).dtype == torch.uint8
    assert augmentation_names(False) == () and augmentation_names(True) == ("crop",)
    with pytest.raises(TaskError, match=r"options\['augment'\]"):
        augmentation_names(["mixup"])


SEG_OPTIONS = {"task": "segmentation", "image_shape": [8, 8, 1], "num_bands": 4, "normalize": [0.305, 0.376],
               "query_pixels": True}


def _segmentation_sample(options):
    from gperc_plugin_image.plugin import gperc_input_array

    sample = ds.load_digits_segmentation("train", {})[5]
    array = gperc_input_array(modality="image", sample=sample["image"], options=options)
    array.target = torch.as_tensor(sample["target"])
    return array


def test_segmentation_flip_moves_targets_and_pixel_queries_with_the_pixels():
    from gperc_plugin_image.augment import augment_array

    options = {**SEG_OPTIONS, "augment": ["flip"]}
    array = _segmentation_sample(options)
    flipped = [augment_array(array, options, torch.Generator().manual_seed(s)) for s in range(8)]
    mirror = lambda t: t.reshape(8, 8, *t.shape[1:]).flip(1).reshape(t.shape)  # noqa: E731
    seen = set()
    for out in flipped:
        was_flipped = not torch.equal(out.array, array.array)
        seen.add(was_flipped)
        expect = mirror if was_flipped else (lambda t: t)
        assert torch.equal(out.array, expect(array.array))
        assert torch.equal(out.target, expect(array.target))  # labels follow their pixels
        assert torch.equal(out.output[:, 18:], out.array)  # the queries carry the moved pixels ...
        assert torch.equal(out.output[:, :18], array.output[:, :18])  # ... at the fixed positions
    assert seen == {True, False}


def test_segmentation_affine_keeps_targets_valid_and_background_outside():
    from gperc_plugin_image.augment import augment_array

    options = {**SEG_OPTIONS, "augment": ["affine"]}
    array = _segmentation_sample(options)
    label = int(array.target.max())
    for seed in range(5):
        out = augment_array(array, options, torch.Generator().manual_seed(seed))
        assert out.target.shape == array.target.shape and out.target.dtype == array.target.dtype
        assert set(out.target.unique().tolist()) <= {0, label}  # nearest: no blended classes
        assert (out.target == label).any()


def test_segmentation_refuses_erase():
    from gperc_plugin_image.augment import augment_array

    options = {**SEG_OPTIONS, "augment": ["erase"]}
    with pytest.raises(TaskError, match=r"options\['augment'\]: expected no 'erase' for segmentation"):
        augment_array(_segmentation_sample(options), options, torch.Generator().manual_seed(0))


def test_augmentation_touches_no_global_rng(monkeypatch):
    # torch.manual_seed would reseed the CUDA generators too (and costs ~0.3 ms a call): only the CPU
    # stream, inside fork_rng, is seeded, and the caller's CPU stream is left as it was
    from gperc_plugin_image.augment import augment_array
    from gperc_plugin_image.plugin import gperc_input_array

    def refuse(seed):
        raise AssertionError("torch.manual_seed called: it reseeds every device's generator")

    options = {"augment": ["flip", "crop"]}
    converted = gperc_input_array("image", ds.load_digits("train", {})[0]["image"], options)
    monkeypatch.setattr(torch, "manual_seed", refuse)
    before = torch.get_rng_state()
    first = augment_array(converted, options, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first.array, augment_array(converted, options, torch.Generator().manual_seed(5)).array)
