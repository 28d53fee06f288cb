"""Users' own data, no plugin code: image and audio folders, a csv, save_to_disk folders; splits,
class names, training a few steps through the CLI / API, predict printing the folder labels, and
unreadable files (named; skipped with a warning or failing, per ``on_error``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from gperc_core import TaskError, UserDataWarning, api, create_task
from gperc_core.cli import main

datasets = pytest.importorskip("datasets")
soundfile = pytest.importorskip("soundfile")
Image = pytest.importorskip("PIL.Image")

TINY = {"model.latent_len": 4, "model.latent_dim": 8, "model.num_heads": 1, "model.num_layers": 1,
        "model.ffw_latent": 8, "model.ffw_output": 8, "training.epochs": 1, "training.batch_size": 4,
        "training.bf16": False}
CLI_TINY = [a for k, v in TINY.items() for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPERC_CACHE", str(tmp_path / "cache"))


def write_png(path, value, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(value))
    pixels = np.clip(value + rng.integers(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def image_folder(root, per_class=5, split_dirs=False):
    for label, value in (("cat", 30), ("dog", 220)):
        for i in range(per_class):
            if split_dirs:
                write_png(root / ("test" if i == 0 else "train") / label / f"{i}.png", value + i)
            else:
                write_png(root / label / f"{i}.png", value + i)
    return root


def write_wav(path, freq, rate=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(rate // 8) / rate
    soundfile.write(path, (0.3 * np.sin(2 * math.pi * freq * t)).astype(np.float32), rate)


def test_image_folder_splits_by_seeded_fraction_with_folder_class_names(tmp_path):
    root = image_folder(tmp_path / "imgs", per_class=10)
    task = create_task("image/folder", **{"options.image.root": str(root), "options.image.test_fraction": 0.3})
    data = task.data
    train, test = data.raw_split("image-folder", "train"), data.raw_split("image-folder", "test")
    assert len(train) + len(test) == 20 and 0 < len(test) < 20
    assert not set(train.paths) & set(test.paths)
    assert train.classes == test.classes == ["cat", "dog"] and task.class_names == ["cat", "dog"]
    sample = train[0]
    assert sample["image"].shape == (8, 8, 3) and sample["image"].dtype == np.uint8
    assert sample["target"] == (0 if "/cat/" in train.paths[0] else 1)
    other = create_task("image/folder", **{"options.image.root": str(root), "options.image.test_fraction": 0.3,
                                           "options.image.split_seed": 1})
    assert set(other.data.raw_split("image-folder", "test").paths) != set(test.paths)
    assert train.fingerprint and train.fingerprint != test.fingerprint


def test_image_folder_train_test_folders(tmp_path):
    root = image_folder(tmp_path / "imgs", per_class=3, split_dirs=True)
    task = create_task("image/folder", **{"options.image.root": str(root)})
    train, test = task.data.raw_split("image-folder", "train"), task.data.raw_split("image-folder", "test")
    assert (len(train), len(test)) == (4, 2)
    assert all("/test/" in p for p in test.paths) and all("/train/" in p for p in train.paths)
    assert [s["target"] for s in test] == [0, 1]


def test_image_folder_trains_through_the_cli_and_predict_prints_folder_labels(tmp_path, capsys):
    root = image_folder(tmp_path / "imgs", per_class=4, split_dirs=True)
    run = tmp_path / "run"
    assert main(["train", "image/folder", "--quiet", "--out", str(run), "--set", f"options.image.root={root}",
                 *CLI_TINY]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), str(root / "test" / "dog" / "0.png")]) == 0
    label = capsys.readouterr().out.strip().split("\t")[1].split()[0]
    assert label in ("cat", "dog")


def test_audio_folder_trains_with_folder_labels(tmp_path):
    for label, freq in (("high", 2000), ("low", 300)):
        for i in range(4):
            write_wav(tmp_path / "clips" / label / f"{i}.wav", freq + 10 * i)
    task = create_task("audio/folder", **{"options.audio.root": str(tmp_path / "clips"), "options.audio.duration": 0.125,
                                          "options.audio.sample_rate": 8000, "options.audio.test_fraction": 0.4,
                                          **TINY})
    result = api.train(task, tmp_path / "run")
    assert result["step"] >= 1 and task.class_names == ["high", "low"]
    predictions = api.predict(tmp_path / "run", [str(tmp_path / "clips" / "low" / "0.wav")], device="cpu")
    assert predictions[0]["predictions"][0]["label"] in ("high", "low")


def test_text_csv_with_named_columns_and_test_file(tmp_path):
    rows = [("good fine great", "pos"), ("bad awful poor", "neg")] * 6
    (tmp_path / "train.csv").write_text("review,sentiment\n" + "".join(f"{t},{y}\n" for t, y in rows))
    (tmp_path / "test.csv").write_text("review,sentiment\ngreat good,pos\npoor bad,neg\n")
    overrides = {"options.text.path": str(tmp_path / "train.csv"), "options.text.test_path": str(tmp_path / "test.csv"),
                 "options.text.column": "review", "options.text.label_column": "sentiment",
                 "options.text.tokenizer": "bytes", **TINY}
    task = create_task("text/files", **overrides)
    train, test = task.data.raw_split("text-files", "train"), task.data.raw_split("text-files", "test")
    assert (len(train), len(test)) == (12, 2) and train.classes == ["neg", "pos"]
    assert test[0] == {"text": "great good", "target": 1}
    result = api.train(task, tmp_path / "run")
    assert result["step"] >= 1
    (tmp_path / "review.txt").write_text("good great\n")
    predictions = api.predict(tmp_path / "run", [str(tmp_path / "review.txt")], device="cpu")
    assert predictions[0]["predictions"][0]["label"] in ("neg", "pos")


def test_text_files_missing_column_is_named(tmp_path):
    (tmp_path / "t.csv").write_text("sentence,label\nhello,a\n")
    with pytest.raises(TaskError, match=r"options\['column'\]: expected a column .* got 'text' \(columns: "
                                        r"\['sentence', 'label'\]\)"):
        create_task("text/files", **{"options.text.path": str(tmp_path / "t.csv"), "options.text.tokenizer": "bytes"})


def test_save_to_disk_dataset_dict_for_text_and_images(tmp_path):
    labels = datasets.ClassLabel(names=["no", "yes"])
    text = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["yes yes", "no no"] * 4, "label": [1, 0] * 4},
                                            features=datasets.Features({"text": datasets.Value("string"),
                                                                        "label": labels})),
        "test": datasets.Dataset.from_dict({"text": ["yes", "no"], "label": [1, 0]},
                                           features=datasets.Features({"text": datasets.Value("string"),
                                                                       "label": labels}))})
    text.save_to_disk(str(tmp_path / "text"))
    task = create_task("text/from-disk", **{"options.text.path": str(tmp_path / "text"),
                                             "options.text.tokenizer": "bytes", **TINY})
    assert len(task.data.raw_split("text-from-disk", "test")) == 2 and task.data.raw_split(
        "text-from-disk", "train").classes == ["no", "yes"]
    assert api.train(task, tmp_path / "run")["step"] >= 1

    root = image_folder(tmp_path / "imgs", per_class=5)
    images = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=str(tmp_path / "hf"))["train"]
    images.save_to_disk(str(tmp_path / "images"))  # one Dataset: split by test_fraction
    task = create_task("image/from-disk", **{"options.image.path": str(tmp_path / "images")})
    train, test = task.data.raw_split("image-from-disk", "train"), task.data.raw_split("image-from-disk", "test")
    assert len(train) + len(test) == 10 and train.classes == ["cat", "dog"]
    assert train[0]["image"].shape == (8, 8, 3)


@pytest.fixture()
def broken_folder(tmp_path):
    root = image_folder(tmp_path / "imgs", per_class=3, split_dirs=True)
    bad = root / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root, bad


def test_unreadable_file_fails_naming_its_path(broken_folder):
    root, bad = broken_folder
    with pytest.raises(TaskError, match=f"cannot read '{bad}'.*on_error='skip'"):
        create_task("image/folder", **{"options.image.root": str(root)})


def test_unreadable_file_skipped_with_a_warning_counting_it(broken_folder, tmp_path):
    root, bad = broken_folder
    with pytest.warns(UserDataWarning, match=f"skipped 1 unreadable file\\(s\\) of 5 .*{bad.name}"):
        task = create_task("image/folder", **{"options.image.root": str(root), "options.image.on_error": "skip",
                                              **TINY})
    train = task.data.raw_split("image-folder", "train")
    assert len(train) == 4 and str(bad) not in train.paths
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserDataWarning)
        assert api.train(task, tmp_path / "run")["step"] >= 1


def test_corrupt_wav_named_and_bad_on_error_value_refused(tmp_path):
    for label in ("a", "b"):
        for i in range(2):
            write_wav(tmp_path / "clips" / label / f"{i}.wav", 500)
    (tmp_path / "clips" / "b" / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(TaskError, match="cannot read '.*bad.wav'"):
        create_task("audio/folder", **{"options.audio.root": str(tmp_path / "clips")})
    with pytest.raises(TaskError, match="on_error"):
        create_task("audio/folder", **{"options.audio.root": str(tmp_path / "clips"), "options.audio.on_error": "ignore"})


def test_missing_root_names_the_option():
    with pytest.raises(TaskError, match=r"dataset 'image-folder' options\['root'\]: expected a folder"):
        create_task("image/folder")


def test_cached_conversion_follows_changes_to_the_users_files(tmp_path):
    """A folder dataset is volatile: its converted-sample cache entry is keyed on the files, so an
    added image is converted on the next run instead of a stale entry being reused."""
    from gperc_core.data import cache

    root = image_folder(tmp_path / "imgs", per_class=5, split_dirs=True)
    options = {"options.image.root": str(root)}
    # the training part is a view of the one entry of the training split (its validation part held out)
    first = create_task("image/folder", **options).data.converted("train")["image"].base
    assert len(first) == 8 and isinstance(first, cache.CachedSamples)
    again = create_task("image/folder", **options).data.converted("train")["image"].base
    assert isinstance(again, cache.CachedSamples) and len(again) == 8  # the same files: the entry is reused
    write_png(root / "train" / "cat" / "new.png", 40)
    changed = create_task("image/folder", **options).data.converted("train")["image"].base
    assert len(changed) == 9
