"""The image datasets: Fashion-MNIST, scikit-learn digits, a per-pixel segmentation of digits, and
your own images: ``image-folder`` (``<root>/<label>/<image>``, the `datasets` ``imagefolder``
builder) and ``image-from-disk`` (a ``save_to_disk`` folder with an image column), both through
`gperc_core.UserData`.

All load offline. A sample is ``{"image": [H, W, C] array, "target": label}``; the label is an int
for classification and a ``[H*W]`` long tensor (one class per pixel) for segmentation.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from gperc_core import DatasetSpec, TaskError, UserData

from . import PLUGIN
from .arrays import read_image_file
from .augment import augmentation_names

FASHION_APT = "apt-get install dataset-fashion-mnist"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_ENV = "GPERC_FASHION_MNIST"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
SEGMENTATION_CLASSES = ("background",) + tuple(f"ink of {d}" for d in range(10))
FASHION_PREFIX = {"train": "train", "test": "t10k"}
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0
SEGMENTATION_THRESHOLD = 5
"""A digits pixel (0..16) at or above this value is foreground."""

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class ImageDataset(torch.utils.data.Dataset):
    """Images ``[N, H, W, C]`` with their targets, optionally augmented on access by ``augment`` (the
    plugin's tasks augment per epoch through ``gperc_transform`` instead); ``classes`` names the
    classes in label order."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, augment: Callable[[Any], Any] | None = None,
                 classes: Sequence[str] = ()) -> None:
        self.images = images
        self.targets = targets
        self.augment = augment
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.images[index]
        if self.augment is not None:
            image = self.augment(image)
        target = self.targets[index]
        label = torch.from_numpy(np.array(target, dtype=np.int64)) if np.ndim(target) else int(target)
        return {"image": image, "target": label}


def image_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the image options out of ``options`` (either the image table itself or a mapping
    of modality name to table)."""
    options = dict(options or {})
    inner = options.get("image")
    return dict(inner) if isinstance(inner, Mapping) else options


def _check_split(name: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise TaskError(f"{PLUGIN}: split: expected one of {tuple(splits)} for dataset {name!r}, got {split!r}")


def _limit(options: Mapping[str, Any], n: int) -> int:
    limit = options.get("max_samples")
    if limit is None:
        return n
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise TaskError(f"{PLUGIN}: options['max_samples']: expected a positive integer, got {limit!r}")
    return min(n, limit)


def _dataset(images: np.ndarray, targets: np.ndarray, split: str, options: Mapping[str, Any],
             classes: Sequence[str]) -> ImageDataset:
    n = _limit(options, len(images))
    augmentation_names(options.get("augment"))  # checked here; applied per epoch by the gperc_transform hook
    return ImageDataset(images[:n], targets[:n], None, classes)


# ---------------------------------------------------------------------------- Fashion-MNIST
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip'd or not) into a numpy array; a malformed file is a `TaskError`."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise TaskError(f"{PLUGIN}: {path}: expected a readable IDX file, got {type(exc).__name__}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise TaskError(f"{PLUGIN}: {path}: expected an IDX file (magic 00 00 <type> <ndim>), got {data[:4]!r}")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise TaskError(f"{PLUGIN}: {path}: expected {expected} bytes for an IDX array of shape {dims}, "
                        f"got {len(data)} (truncated or corrupted)")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).copy()  # writable


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist_dir(options: Mapping[str, Any] | None = None) -> Path:
    """Return the folder holding Fashion-MNIST's IDX files.

    Looks in ``options["root"]``, then ``$GPERC_FASHION_MNIST``, then the Debian package's
    ``/usr/share/datasets/fashion-mnist``; each may be the folder of the files or a torchvision
    root (``<root>/FashionMNIST/raw``). Raises `TaskError` with the install command when none has them.
    """
    options = options or {}
    candidates = [options.get("root"), os.environ.get(FASHION_ENV), str(FASHION_DEBIAN_DIR)]
    tried = []
    for root in candidates:
        if not root:
            continue
        for folder in (Path(root).expanduser(), Path(root).expanduser() / "FashionMNIST" / "raw"):
            tried.append(str(folder))
            if _idx_file(folder, "train-images-idx3-ubyte") and _idx_file(folder, "t10k-labels-idx1-ubyte"):
                return folder
    raise TaskError(f"{PLUGIN}: dataset 'fashion-mnist': expected the IDX files (train-images-idx3-ubyte.gz ...) "
                    f"in one of {tried}, got none; install them with `{FASHION_APT}` or point options['root'] / "
                    f"${FASHION_ENV} at a torchvision FashionMNIST root")


@lru_cache(maxsize=4)
def _fashion_arrays(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = FASHION_PREFIX[split]
    images_path = _idx_file(Path(folder), f"{prefix}-images-idx3-ubyte")
    labels_path = _idx_file(Path(folder), f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise TaskError(f"{PLUGIN}: dataset 'fashion-mnist': expected {prefix}-images-idx3-ubyte[.gz] and "
                        f"{prefix}-labels-idx1-ubyte[.gz] in {folder}, got {sorted(os.listdir(folder))}")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise TaskError(f"{PLUGIN}: dataset 'fashion-mnist': expected images [N, 28, 28] and labels [N], got "
                        f"{list(images.shape)} and {list(labels.shape)}")
    return images[..., None], labels.astype(np.int64)


def load_fashion_mnist(split: str, options: Mapping[str, Any] | None = None) -> ImageDataset:
    """Fashion-MNIST: 60,000 train / 10,000 test uint8 ``[28, 28, 1]`` images, 10 classes."""
    options = image_options(options)
    _check_split("fashion-mnist", split, FASHION_PREFIX)
    images, labels = _fashion_arrays(str(fashion_mnist_dir(options)), split)
    return _dataset(images, labels, split, options, FASHION_CLASSES)


# ---------------------------------------------------------------------------- scikit-learn digits
@lru_cache(maxsize=1)
def _digits_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    raw = digits.images.astype(np.float32)  # [1797, 8, 8] values 0..16
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION,
                                           stratify=labels, random_state=DIGITS_SPLIT_SEED)
    return {split: (raw[idx], labels[idx]) for split, idx in (("train", train_idx), ("test", test_idx))}


def load_digits(split: str, options: Mapping[str, Any] | None = None) -> ImageDataset:
    """scikit-learn digits: float ``[8, 8, 1]`` images in ``[0, 1]`` (value / 16), 10 classes;
    a fixed stratified split, 25 % test (seed 0): 1,347 train / 450 test."""
    options = image_options(options)
    _check_split("digits", split, ("train", "test"))
    raw, labels = _digits_split()[split]
    return _dataset((raw / 16.0)[..., None], labels, split, options, DIGIT_CLASSES)


def segmentation_targets(raw: np.ndarray, labels: np.ndarray, threshold: int = SEGMENTATION_THRESHOLD) -> np.ndarray:
    """Return per-pixel classes ``[N, H*W]``: ``label + 1`` where the 0..16 pixel is >= ``threshold``
    (the digit's ink), 0 elsewhere (background)."""
    ink = raw.reshape(len(raw), -1) >= threshold
    return np.where(ink, labels[:, None] + 1, 0).astype(np.int64)


def load_digits_segmentation(split: str, options: Mapping[str, Any] | None = None) -> ImageDataset:
    """Digits segmentation: each of the 64 pixels of an 8x8 digit is classified as background (0) or
    as the ink of digit d (class d + 1), 11 classes; the digits split. (Augmentation, when asked,
    moves the targets with the pixels: `gperc_plugin_image.augment`.)"""
    options = image_options(options)
    _check_split("digits-segmentation", split, ("train", "test"))
    raw, labels = _digits_split()[split]
    return _dataset((raw / 16.0)[..., None], segmentation_targets(raw, labels), split, options,
                    SEGMENTATION_CLASSES)


# ---------------------------------------------------------------------------- your own images
def read_image_cell(cell: Any) -> np.ndarray:
    """Return an image cell of a `datasets` table as ``[H, W, C]``: ``{"path"}`` is read with
    `read_image_file` (as ``gperc predict`` reads files), ``{"bytes"}`` decoded by torchvision, an
    array (or PIL image) taken as is (``[H, W]`` gains one channel)."""
    if isinstance(cell, Mapping):
        if cell.get("bytes"):
            from torchvision.io import ImageReadMode, decode_image

            data = torch.frombuffer(bytearray(cell["bytes"]), dtype=torch.uint8)
            return decode_image(data, mode=ImageReadMode.UNCHANGED).permute(1, 2, 0).contiguous().numpy()
        return read_image_file(cell.get("path") or "")
    image = np.asarray(cell)
    return image[..., None] if image.ndim == 2 else image


def check_image_cell(cell: Any) -> None:
    """Raise when the image file (or bytes) of ``cell`` is not an image PIL can verify (a cheap check:
    the header and the chunks, no pixel decoding)."""
    if not isinstance(cell, Mapping):
        return
    import io

    from PIL import Image

    source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell.get("path")
    with Image.open(source) as image:
        image.verify()


IMAGE_FOLDER = UserData(plugin=PLUGIN, dataset="image-folder", modality="image", read=read_image_cell,
                        check=check_image_cell)
IMAGE_FROM_DISK = UserData(plugin=PLUGIN, dataset="image-from-disk", modality="image", read=read_image_cell,
                           check=check_image_cell)


def load_image_folder(split: str, options: Mapping[str, Any] | None = None) -> Any:
    """Your images as ``<root>/<label>/<image>`` (or ``<root>/<split>/<label>/<image>``), read by the
    `datasets` ``imagefolder`` builder; classes are the folder names (see `gperc_core.UserData`)."""
    return IMAGE_FOLDER.folder("imagefolder", split, image_options(options))


def load_image_from_disk(split: str, options: Mapping[str, Any] | None = None) -> Any:
    """A dataset saved with ``save_to_disk`` at ``options["path"]``: column ``image`` (or
    ``options["column"]``) and ``label`` (or ``options["label_column"]``)."""
    return IMAGE_FROM_DISK.saved(split, image_options(options))


DATASETS = [
    DatasetSpec(name="fashion-mnist", modalities=["image"], load=load_fashion_mnist, num_classes=10,
                description="Fashion-MNIST: 60k/10k 28x28 grey clothing images, 10 classes (Debian IDX files)",
                splits=("train", "test"), install_hint=FASHION_APT),
    DatasetSpec(name="digits", modalities=["image"], load=load_digits, num_classes=10,
                description="scikit-learn digits: 1,797 8x8 images, 10 classes, fixed stratified 75/25 split",
                splits=("train", "test"), install_hint="pip install scikit-learn==1.9.1"),
    DatasetSpec(name="digits-segmentation", modalities=["image"], load=load_digits_segmentation, num_classes=11,
                description="scikit-learn digits, per pixel: background or the ink of digit d (11 classes)",
                splits=("train", "test"), install_hint="pip install scikit-learn==1.9.1"),
    DatasetSpec(name="image-folder", volatile=True, modalities=["image"], load=load_image_folder,
                description="your images as <root>/<label>/<image> or <root>/<split>/<label>/<image> "
                            "(datasets' imagefolder builder; options: root)",
                splits=("train", "test"), install_hint="--set options.image.root=<folder of <label>/<image>>"),
    DatasetSpec(name="image-from-disk", volatile=True, modalities=["image"], load=load_image_from_disk,
                description="a datasets.save_to_disk folder with image and label columns (options: path)",
                splits=("train", "test"), install_hint="--set options.image.path=<save_to_disk folder>"),
]
