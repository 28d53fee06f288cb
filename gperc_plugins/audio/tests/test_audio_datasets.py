"""Audio datasets: a WAV folder written by the test, and spoken digits synthesised (2 digits) into tmp."""

import json
import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import torch

from gperc_core import TaskError
from gperc_plugin_audio import synth
from gperc_plugin_audio.datasets import load_audio_folder, load_spoken_digits
from gperc_plugin_audio.plugin import gperc_input_array

HAVE_SYNTHS = shutil.which("espeak-ng") is not None and shutil.which("flite") is not None
needs_synths = pytest.mark.skipif(not HAVE_SYNTHS, reason="needs espeak-ng and flite: apt-get install espeak-ng flite")


def have_festival_ked() -> bool:
    """festival is installed and has the ked voice (festvox-kdlpc16k)."""
    if shutil.which("festival") is None:
        return False
    return subprocess.run(["festival", "--batch", "(voice_ked_diphone)"], capture_output=True).returncode == 0


HAVE_KED = HAVE_SYNTHS and have_festival_ked()
needs_ked = pytest.mark.skipif(not HAVE_KED, reason="needs festival's ked voice: apt-get install festival festvox-kdlpc16k")

TINY = {"digits": [1, 2], "espeak_accents": ["en-us"], "espeak_variants": ["m1"], "espeak_speeds": [150],
        "espeak_pitches": [50], "flite_stretches": [1.0], "flite_pitches": [120], "test_voice": "rms",
        "train_flite_voices": ["awb"]}


def write_tone(path, freq, rate=8000):
    t = np.arange(rate // 4) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, (0.3 * np.sin(2 * math.pi * freq * t)).astype(np.float32), rate)


def test_audio_folder_hash_split(tmp_path):
    for label, freq in (("high", 2000), ("low", 300)):
        for i in range(10):
            write_tone(tmp_path / label / f"{i}.wav", freq + i)
    (tmp_path / "notes.txt").write_text("ignored")
    train, test = load_audio_folder("train", {"root": str(tmp_path)}), load_audio_folder("test", {"root": str(tmp_path)})
    assert len(train) + len(test) == 20 and len(test) > 0
    assert not set(train.paths) & set(test.paths)
    assert train.classes == ["high", "low"]
    sample = train[0]
    assert sample["target"] == (0 if "high" in sample["audio"]["path"] else 1)
    assert gperc_input_array(modality="audio", sample=sample["audio"], options={}).array.shape[1] == 40


def test_audio_folder_with_split_folders(tmp_path):
    for split in ("train", "test"):
        for label in ("a", "b"):
            write_tone(tmp_path / split / label / "x.wav", 500)
    assert len(load_audio_folder("test", {"root": str(tmp_path)})) == 2


@pytest.mark.parametrize("options, message", [({}, "options\\['root'\\]: expected a folder"),
                                              ({"root": "/no/such/dir"}, "options\\[.root.\\]: expected a folder")])
def test_audio_folder_bad_root(options, message):
    with pytest.raises(TaskError, match="audio plugin: dataset 'audio-folder' " + message):
        load_audio_folder("train", options)


def test_audio_folder_bad_split(tmp_path):
    with pytest.raises(TaskError, match="split: expected one of"):
        load_audio_folder("validation", {"root": str(tmp_path)})


def test_missing_synthesisers_name_the_apt_command(tmp_path, monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda tool: None)
    with pytest.raises(TaskError, match="apt-get install espeak-ng flite"):
        load_spoken_digits("train", {**TINY, "cache_dir": str(tmp_path)})


def test_missing_festival_names_its_voice_package(tmp_path, monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda tool: None if tool == "festival" else f"/usr/bin/{tool}")
    with pytest.raises(TaskError, match="expected the synthesisers .*'festival'.* festvox-kdlpc16k"):
        load_spoken_digits("train", {**TINY, "cache_dir": str(tmp_path), "train_festival_voices": ["ked"]})


def test_plan_digest_of_plans_without_festival_is_unchanged():
    # the card's plan hashed to this before festival voices existed: its cached manifest stays valid
    assert synth.SynthesisPlan(flite_voices=("awb", "kal16", "rms", "slt")).digest() == "ad297ed87de1"
    assert synth.SynthesisPlan(festival_voices=("ked",)).digest() != synth.SynthesisPlan().digest()


def test_festival_clips_of_a_plan():
    plan = synth.SynthesisPlan(digits=(8,), espeak_accents=(), flite_voices=(), festival_voices=("ked",),
                               flite_stretches=(1.2,), flite_pitches=(90, 150))
    clips = plan.clips()
    assert [c.file for c in clips] == ["festival/ked_d1.2_f90_8.wav", "festival/ked_d1.2_f150_8.wav"]
    out = synth.Path("/tmp/out.wav")
    command = clips[1].command(out)
    assert command[:3] == ["festival", "--batch", "(voice_ked_diphone)"]
    assert "(Parameter.set 'Duration_Stretch 1.2)" in command and "(target_f0_mean 150)" in command[4]
    assert command[-1] == f'(utt.save.wave (SynthText "eight") "{out}" \'riff)'
    odd = synth.Path('/tmp/a "quoted" dir\\x/out.wav')
    assert clips[1].command(odd)[-1] == '(utt.save.wave (SynthText "eight") "/tmp/a \\"quoted\\" dir\\\\x/out.wav" \'riff)'


@pytest.mark.parametrize("options, message", [({"test_voice": "bob"}, "test_voice"),
                                              ({"train_festival_voices": ["bob"]}, "train_festival_voices"),
                                              ({"train_festival_voices": "ked"}, "train_festival_voices"),
                                              ({"festival_voices": ["bob"]}, "festival_voices"),
                                              ({"train_flite_voices": ["rms"]}, "train_flite_voices"),
                                              ({"digits": [12]}, "digits"), ({"digits": 3}, "expected a list"),
                                              ({"validation_voice": "rms"}, "validation_voice"),
                                              ({"validation_voice": "awb"}, "validation_voice")])
def test_bad_spoken_digit_options(tmp_path, options, message):
    with pytest.raises(TaskError, match=message):
        load_spoken_digits("train", {**TINY, "cache_dir": str(tmp_path), **options})


def test_validation_split_needs_a_validation_voice(tmp_path):
    with pytest.raises(TaskError, match="split: expected one of"):
        load_spoken_digits("validation", {**TINY, "cache_dir": str(tmp_path)})


@needs_synths
def test_spoken_digits_validation_voice_is_held_out(tmp_path):
    options = {**TINY, "cache_dir": str(tmp_path), "validation_voice": "slt"}
    splits = {name: load_spoken_digits(name, options) for name in ("train", "validation", "test")}
    assert {m["voice"] for m in splits["validation"].meta} == {"slt"}
    assert {m["voice"] for m in splits["train"].meta} == {"en-us+m1", "awb"}
    assert {m["voice"] for m in splits["test"].meta} == {"rms"}
    assert sorted(splits["validation"].targets) == [1, 2]


@needs_synths
def test_spoken_digits_synthesised_split_by_voice_and_reused(tmp_path, monkeypatch):
    options = {**TINY, "cache_dir": str(tmp_path)}
    train, test = load_spoken_digits("train", options), load_spoken_digits("test", options)
    assert len(train) == 4 and len(test) == 2  # 2 digits x (espeak en-us+m1, flite awb) / x flite rms
    assert {m["voice"] for m in test.meta} == {"rms"}
    assert {m["voice"] for m in train.meta} == {"en-us+m1", "awb"}
    assert sorted(test.targets) == [1, 2]
    manifests = list(tmp_path.glob("manifest-*.json"))
    assert len(manifests) == 1 and len(json.loads(manifests[0].read_text())["clips"]) == 6

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a rerun must reuse the manifest, not synthesise again")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert load_spoken_digits("test", options).paths == test.paths
    arrays = [gperc_input_array(modality="audio", sample=test[i]["audio"], options={"duration": 1.0, "trim": True})
              for i in range(len(test))]
    assert all(tuple(a.array.shape) == (100, 40) and bool(torch.isfinite(a.array).all()) for a in arrays)


@needs_ked
def test_spoken_digits_festival_voice_joins_the_train_split(tmp_path):
    options = {**TINY, "cache_dir": str(tmp_path), "train_festival_voices": ["ked"]}
    train, test = load_spoken_digits("train", options), load_spoken_digits("test", options)
    assert [m["voice"] for m in train.meta].count("ked") == 2
    assert {m["synth"] for m in train.meta} == {"espeak-ng", "flite", "festival"}
    assert {m["voice"] for m in test.meta} == {"rms"}
    ked = [p for p, m in zip(train.paths, train.meta) if m["voice"] == "ked"]
    data, rate = soundfile.read(ked[0])
    assert rate == 16000 and 0.2 < len(data) / rate < 2.0 and np.abs(data).max() > 0.05


@needs_synths
def test_spoken_digits_task_builds_and_runs(tmp_path):
    import torch.nn.functional as F

    from gperc_core import create_task

    overrides = {f"options.audio.{k}": v for k, v in TINY.items()}
    overrides["options.audio.train_festival_voices"] = []  # the card's ked voice is tested on its own (needs_ked)
    task = create_task("audio/spoken-digits", **overrides, **{"options.audio.cache_dir": str(tmp_path)},
                       latent_len=4, latent_dim=16, num_layers=1, num_heads=2, ffw_latent=16, ffw_output=16)
    c = task.config  # 40 mels; the model adds the 4-band Fourier time features of the 150 frames
    assert (c.input_dim, c.input_len, c.n_classes) == (40, 150, 10)
    assert (c.input_pos_enc, c.input_pos_shape, c.fourier_num_bands, c.input_embed_dim) == ("fourier", [150], 4, 49)
    # 4 training clips: one of each digit is held out as the validation split
    assert len(task.split("train")) == 2 and sorted(task.split("validation").target.tolist()) == [1, 2]
    batch = task.split("train").batch(torch.arange(2))
    assert tuple(batch["input_array"].shape) == (2, 150, 40) and sorted(batch["target"].tolist()) == [1, 2]
    model = task.build_model()
    loss = F.cross_entropy(model(batch["input_array"], batch["attention_mask"]), batch["target"])
    loss.backward()
    assert bool(torch.isfinite(loss)) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
