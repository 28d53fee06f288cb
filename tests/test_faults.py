"""Fault injection and fuzzing: kill -9 then --resume, a full disk at the final save, corrupted files,
concurrent writers, hostile configs (refused before allocation), and Hypothesis-generated task cards,
--set values and config JSON. Each case ends in a named gperc error or a clean recovery."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gperc_core.api import resume, train
from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import CheckpointError, GpercError, RunLockedError
from gperc_core.io import checkpoint as ckpt
from gperc_core.io import lock, runs
from gperc_core.io.preflight import read_header
from gperc_core.model.perceiver import Perceiver

from taskfakes import fake_pm

TESTS = Path(__file__).parent
OVERRIDES = {"training.max_train_samples": 24, "training.max_eval_samples": 12, "training.batch_size": 4,
             "training.epochs": 2, "training.checkpoint_every": 1, "training.log_every": 1,
             "training.progress": False, "training.bf16": False, "training.device": "cpu"}
CHILD = textwrap.dedent("""
    import sys, time
    from gperc_core.api import train
    from gperc_core.io import lock
    from taskfakes import fake_pm
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "hold":
        lock.acquire(out)
        print("held", flush=True)
        time.sleep(60)
    else:
        train("blob/blobs", out, overrides=%r, pm=fake_pm())
""" % OVERRIDES)


def _child(mode: str, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_tensors(run / ckpt.WEIGHTS_FILE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the tiny fake task (12 steps, a checkpoint at every step)."""
    out = tmp_path_factory.mktemp("faults") / "straight"
    train("blob/blobs", out, overrides=OVERRIDES, pm=fake_pm())
    return out


# --------------------------------------------------------------------- concurrent writers
def test_second_writer_fails_at_once_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = _child("hold", run)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(RunLockedError, match=rf"PID {holder.pid} on host .*, started 20\d\d-") as info:
            train("blob/blobs", run, overrides=OVERRIDES, pm=fake_pm())
        assert time.perf_counter() - t0 < 2 and str(run) in str(info.value)
        assert sorted(p.name for p in run.iterdir()) == [lock.LOCK_FILE]  # the second writer wrote nothing
        with pytest.raises(RunLockedError):
            lock.acquire(run)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock.read_holder(run)["pid"] == holder.pid  # the dead holder's record is still there
    with lock.run_lock(run):  # the kernel dropped its lock: taken over at once
        assert lock.read_holder(run)["pid"] == os.getpid() and lock.holds(run)
    assert not (run / lock.LOCK_FILE).exists() and not lock.holds(run)


def test_readers_take_no_lock_and_write_nothing(reference):
    from gperc_core.api import evaluate

    before = {p: p.stat().st_mtime_ns for p in reference.rglob("*")}
    lock.acquire(reference)  # a writer is running: reading still works
    try:
        assert evaluate(reference, device="cpu", pm=fake_pm())["samples"] == 12
    finally:
        lock.release(reference)
    assert {p: p.stat().st_mtime_ns for p in reference.rglob("*")} == before


# --------------------------------------------------------------------- kill -9 and resume
def test_kill_at_random_moments_then_resume_is_bit_identical(reference, tmp_path):
    expected = _weights(reference)
    rng = random.Random(13)
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        child = _child("train", run)
        target = rng.randint(2, 20)  # metrics lines: 12 train + 2 eval + up to 2 more
        deadline = time.time() + 60
        metrics = run / runs.METRICS_FILE
        while child.poll() is None and time.time() < deadline:
            if metrics.is_file() and metrics.read_bytes().count(b"\n") >= target:
                time.sleep(rng.uniform(0, 0.03))
                break
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait()
        kept = metrics.read_bytes() if metrics.is_file() else b""
        if runs.latest_checkpoint(run) is None:
            train("blob/blobs", run, overrides=OVERRIDES, pm=fake_pm())  # nothing to resume: start again
        else:
            assert resume(run, pm=fake_pm())["step"] == 12
        assert metrics.read_bytes().startswith(kept.rstrip(b"\n").rsplit(b"\n", 1)[0])  # earlier lines kept
        got = _weights(run)
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)


# --------------------------------------------------------------------- full disk
def test_full_disk_at_the_final_save_is_named_and_resume_finishes(reference, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = ckpt.atomic_write_bytes

    def full(path, data):
        if Path(path) == run / ckpt.WEIGHTS_FILE:  # the final model (checkpoints go to run/checkpoints/)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    with pytest.raises(CheckpointError, match=r"final model .* \(disk full\); the checkpoint .*step-00000012 is intact"):
        train("blob/blobs", run, overrides=OVERRIDES, pm=fake_pm())
    assert not (run / ckpt.WEIGHTS_FILE).exists() and not (run / lock.LOCK_FILE).exists()
    monkeypatch.setattr(ckpt, "atomic_write_bytes", real)
    assert resume(run, pm=fake_pm())["step"] == 12
    expected, got = _weights(reference), _weights(run)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


# --------------------------------------------------------------------- corrupted files
def _corrupt(path: Path, how: str, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[:rng.randrange(len(data))]
    else:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "checkpoint", "metrics.jsonl"])
def test_corrupted_files_are_named_errors_or_recover(reference, tmp_path, name):
    import shutil

    from gperc_core.api import evaluate

    rng = random.Random(name)
    for trial in range(4):
        run = tmp_path / f"t{trial}"
        shutil.copytree(reference, run)
        if name == "checkpoint":
            files = sorted(p for p in runs.latest_checkpoint(run).iterdir())
            target = files[trial % len(files)]
        else:
            target = run / name
        _corrupt(target, "truncate" if trial % 2 else "flip", rng)
        try:
            if name == "checkpoint":
                resume(run, overrides={"training.epochs": 3}, pm=fake_pm())
            elif name == "metrics.jsonl":
                resume(run, overrides={"training.epochs": 3}, pm=fake_pm())
                lines = (run / runs.METRICS_FILE).read_bytes().splitlines()
                assert json.loads(lines[-1])["step"] == 18  # appended on a line of its own
            else:
                evaluate(run, device="cpu", pm=fake_pm())
        except GpercError as exc:
            assert str(target.name) in str(exc) or str(target.parent.name) in str(exc), exc
        if name == "model.safetensors" and trial % 2 == 0:
            with pytest.raises(CheckpointError, match="model.safetensors"):  # any flip is detected (SHA-256)
                ckpt.load_tensors(target)


# --------------------------------------------------------------------- hostile configs
def test_hostile_config_is_refused_without_allocating(tmp_path):
    """latent_len beside small weights: refused by name in a process that cannot allocate 1 GiB."""
    Perceiver(PerceiverConfig(input_len=8, input_dim=4, latent_len=4, latent_dim=16, n_classes=3)).save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    script = textwrap.dedent(f"""
        import json, resource, sys
        from pathlib import Path
        from gperc_core.errors import CheckpointError
        from gperc_core.model.build import load_any_model
        folder = Path({str(tmp_path)!r})
        peak = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (peak + 512 * 2 ** 20, resource.RLIM_INFINITY))
        try:
            bytearray(2 ** 30)
            sys.exit("the memory limit is not in force")
        except MemoryError:
            pass
        for latent_len in (2 ** 24, 10 ** 9):
            (folder / "config.json").write_text(json.dumps({{**{config!r}, "latent_len": latent_len}}))
            try:
                load_any_model(folder)
            except CheckpointError as exc:
                print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.strip().splitlines()
    assert "latent_len: expected 4, got 16777216" in first and "[16777216, 16]" in first
    assert "latent_len: expected at most 16,777,216" in second and "1000000000" in second


def test_header_promising_more_than_the_file_holds(tmp_path):
    Perceiver(PerceiverConfig(input_len=8, input_dim=4, n_classes=3)).save(tmp_path)
    path = tmp_path / "model.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [10 ** 6, 10 ** 6]
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    with pytest.raises(CheckpointError, match=rf"tensor '{name}': data_offsets|tensor '{name}': expected \d+ bytes"):
        read_header(path)
    with pytest.raises(CheckpointError):
        Perceiver.from_pretrained(tmp_path)


def test_hostile_task_json_is_refused_before_building(reference, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    record = json.loads((run / runs.TASK_FILE).read_text())
    record["overrides"]["model"] = {**record["overrides"].get("model", {}), "latent_len": 10 ** 9}
    (run / runs.TASK_FILE).write_text(json.dumps(record))
    with pytest.raises(GpercError, match=r"latent_len.*1000000000"):
        resume(run, pm=fake_pm())
    record["overrides"]["model"]["latent_len"] = 64
    (run / runs.TASK_FILE).write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"latent_len: checkpoint \d+ vs now 64"):
        resume(run, pm=fake_pm())


# --------------------------------------------------------------------- fuzzing
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
FIELDS = st.sampled_from(sorted(PerceiverConfig().keys()))


@FUZZ
@given(st.dictionaries(FIELDS, JSON, max_size=4))
def test_fuzzed_config_json(tmp_path_factory, values):
    folder = tmp_path_factory.mktemp("cfg")
    Perceiver(PerceiverConfig(input_len=8, input_dim=4, n_classes=3)).save(folder)
    config = {**json.loads((folder / "config.json").read_text()), **values}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        Perceiver.from_pretrained(folder)
    except GpercError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["name", "modalities", "dataset", "model", "training", "options",
                                        "fusion", "pairing", "train_split", "eval_split", "bogus"]), JSON, max_size=4),
       st.dictionaries(st.sampled_from([f"model.{k}" for k in ("latent_len", "latent_dim", "num_heads", "dropout")]
                                       + ["training.lr", "training.batch_size", "training.epochs", "nonsense"]),
                       st.text(max_size=12), max_size=3))
def test_fuzzed_task_cards_and_set_values(card_changes, set_values):
    from gperc_core.data.cards import parse_assignments
    from gperc_core.data.registry import validate_card
    from gperc_core.data.tasks import create_task

    pm = fake_pm()
    base = create_task("blob/blobs", pm=pm).card.to_dict()
    try:
        card = validate_card({**base, **card_changes}, source="fuzz.toml")
        overrides = parse_assignments(f"{k}={v}" for k, v in set_values.items())
        task = create_task("blob/blobs", pm=pm, card=card, **overrides)
        task.training.validate()
        (task.config or task.infer_config()).validate()
    except GpercError:
        pass
