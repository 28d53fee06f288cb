"""bench/gpu.sh and bench/gpu.py (issue 11's GPU check) in their CPU mode: every part runs on tiny
sizes (gloo instead of NCCL) and writes its JSON; the entry-point writer; the spawn device switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import gpu  # noqa: E402


@pytest.mark.slow
def test_gpu_sh_dry_run_writes_every_part(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(BENCH / "gpu.sh"), "--dry-run"], capture_output=True, text=True, env=env,
                          timeout=400, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] and summary["device"] == "cpu"
    assert {p: s["status"] for p, s in summary["parts"].items()} == dict.fromkeys(gpu.PARTS, "ok")
    core = json.loads((tmp_path / "core.json").read_text())
    gperc = [r for r in core["runs"] if r["impl"] == "gperc"]
    assert {r["precision"] for r in gperc} == {"fp32", "bf16"} and all(r["status"] == "ok" for r in gperc)
    assert all(r["status"] in ("ok", "skipped") for r in core["runs"])
    train = json.loads((tmp_path / "train.json").read_text())
    assert train["step"] >= 1 and train["samples_per_s"] > 0 and "accuracy" in train["eval"]
    dist = json.loads((tmp_path / "dist.json").read_text())
    assert [r["backend"] for r in dist["ranks"]] == ["gloo", "gloo"]
    assert all(r["ddp_grad_diff"] < 1e-4 and r["pipeline_grad_diff"] < 1e-4 for r in dist["ranks"])
    assert "python:" in (tmp_path / "log.txt").read_text()


def test_failing_part_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu.QUICK_TIMEOUTS, "env", 0.01)  # the env part cannot finish in 10 ms
    args = gpu.parse_args(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    record = gpu.run_part(args, "env")
    assert record["status"] == "failed" and "timed out" in record["reason"]
    assert json.loads((tmp_path / "env.json").read_text())["status"] == "failed"


def test_dev_metadata_declares_the_entry_points(tmp_path):
    written = gpu.write_dev_metadata(tmp_path)
    assert "gperc-core 0.1.0" in written and any(w.startswith("gperc-plugin-image") for w in written)
    image = next(tmp_path.glob("gperc_plugin_image-*.dist-info"))
    assert "image = gperc_plugin_image.plugin" in (image / "entry_points.txt").read_text()
    code = ("import importlib.metadata as m; print(sorted(e.name for e in m.entry_points(group='gperc')))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path)}, timeout=60).stdout
    assert "image" in out and "text" in out


def test_spawn_workers_device_switch_is_checked(monkeypatch):
    import torch

    from gperc_core.errors import ConfigError
    from gperc_core.parallel.distributed import SPAWN_DEVICE_ENV, spawn_workers

    monkeypatch.setenv(SPAWN_DEVICE_ENV, "tpu")
    with pytest.raises(ConfigError, match="GPERC_SPAWN_DEVICE"):
        spawn_workers(print, 2)
    if torch.cuda.device_count() < 2:
        with pytest.raises(ConfigError, match="one GPU per rank"):
            spawn_workers(print, 2, device="cuda")
