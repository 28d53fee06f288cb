"""Tests of the core benchmark harness (bench/run.py, bench/core/): FLOP count, goal checks,
the per-process limits, the worker, and the results file. Tiny shapes only; no peers needed.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q bench/tests``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from core import flops, report, runner, worker  # noqa: E402
from core.shapes import SHAPES, Shape, get_shape  # noqa: E402

import run as bench_run  # noqa: E402


def test_flops_match_a_hand_count():
    s = Shape("t", b=2, m=10, c=3, n=4, d=8, h=2, layers=1)
    f = 32
    enc = 2 * 2 * 4 * 8 * 8 + 2 * 2 * 10 * 3 * 8 + 2 * 2 * 4 * 10 * 8 + 2 * 2 * 4 * 8 * f
    proc = 4 * 2 * 4 * 8 * 8 + 2 * 2 * 4 * 4 * 8 + 2 * 2 * 4 * 8 * f
    dec = 2 * 2 * 1 * 8 * 8 + 2 * 2 * 4 * 8 * 8 + 2 * 2 * 1 * 4 * 8 + 2 * 2 * 1 * 8 * f + 2 * 1 * 8 * 10
    assert flops.forward_flops_per_sample(s) == {"encoder": enc, "processor": proc, "decoder": dec}
    assert flops.train_step_flops(s) == 3 * 2 * (enc + proc + dec)


def test_encoder_flops_are_linear_in_input_length():
    long, huge = SHAPES["long"], SHAPES["huge"]
    e_long = flops.forward_flops_per_sample(long)["encoder"]
    e_huge = flops.forward_flops_per_sample(huge)["encoder"]
    fixed = flops.forward_flops_per_sample(Shape("z", 1, 0, 32, 256, 512, 8, 4))["encoder"]
    assert (e_huge - fixed) == 16 * (e_long - fixed)


def test_counted_flops_include_the_cpu_attention_kernels():
    """Issue 11: the torch FLOP counter skipped the CPU flash-attention kernels, so gperc's fp32 step
    counted no attention products while its bf16 step (written-out attention) did. Counted with
    them, fp32 and bf16 agree on the same path, up to the flash backward's recomputed scores."""
    import torch

    from core import impl_gperc

    s = Shape("t", b=2, m=64, c=16, n=16, d=32, h=2, layers=1)
    torch.manual_seed(0)
    model, forward = impl_gperc.build(s)
    for block in model.modules():
        if hasattr(block, "_use_input_space"):
            block._use_input_space = lambda n, m: False  # the same (projected) path in both precisions
    x, y = torch.randn(s.b, s.m, s.c), torch.randint(0, s.classes, (s.b,))
    fp32 = flops.counted_step_flops(model, forward, x, y, "fp32")
    bf16 = flops.counted_step_flops(model, forward, x, y, "bf16")
    assert fp32["_scaled_dot_product_flash_attention_for_cpu"] > 0
    assert fp32["_scaled_dot_product_flash_attention_for_cpu_backward"] > 0
    attention_fp32 = sum(v for k, v in fp32.items() if "attention" in k)
    assert bf16["bmm"] > 0 and "_scaled_dot_product_flash_attention_for_cpu" not in bf16
    # explicit bf16 attention: forward 2 products, backward 4; the flash backward recomputes the scores (5)
    assert bf16["bmm"] == pytest.approx(attention_fp32 * 6 / 7, rel=0.02)
    assert fp32["total"] - attention_fp32 == bf16["total"] - bf16["bmm"]


def test_unknown_shape_names_the_known_ones():
    with pytest.raises(ValueError, match="cifar"):
        get_shape("cifra")


def _rec(impl, shape, precision, sps=None, rss=1000.0, reason="out of memory"):
    if sps is None:
        return {"impl": impl, "shape": shape, "precision": precision, "status": "failed", "reason": reason,
                "peak_rss_mb": rss}
    b = get_shape(shape).b
    return {"impl": impl, "shape": shape, "precision": precision, "status": "ok", "samples_per_s": sps,
            "median_s": b / sps, "peak_rss_mb": rss, "base_rss_mb": 400.0}


def test_goals_met_missed_and_missing():
    records = [_rec("gperc", "cifar", "fp32", 13.0), _rec("krasserm", "cifar", "fp32", 10.0),
               _rec("gperc", "cifar", "bf16", 14.0), _rec("krasserm", "cifar", "bf16", 10.0),
               _rec("gperc", "long", "fp32", 3.0, rss=900), _rec("krasserm", "long", "fp32", 1.0, rss=4000),
               _rec("gperc", "huge", "fp32", 0.05, rss=3000), _rec("krasserm", "huge", "fp32"),
               _rec("lucidrains", "huge", "fp32"), _rec("hf", "huge", "fp32")]
    goals = {g["goal"].split(":")[0]: g for g in report.check_goals(records)}
    assert goals["cifar fp32"]["met"] is True and goals["cifar fp32"]["measured"] == "1.3x"
    assert goals["cifar bf16"]["met"] is False
    assert goals["long fp32"]["met"] is True
    assert goals["long bf16"]["met"] is None
    assert goals["huge fp32"]["met"] is True
    assert goals["huge bf16"]["met"] is None
    records += [_rec("gperc", "huge", "bf16", 0.05, rss=3000),
                _rec("hf", "huge", "bf16", 0.01, rss=20000)]  # a peer that trains: goal not met
    assert {g["goal"].split(":")[0]: g for g in report.check_goals(records)}["huge bf16"]["met"] is False


def test_derived_columns_and_table():
    records = [_rec("gperc", "cifar", "fp32", 16.0), _rec("krasserm", "cifar", "fp32", 8.0),
               _rec("hf", "cifar", "fp32", 4.0), _rec("lucidrains", "cifar", "fp32")]
    peaks = {"fp32": {"gflops": 50.0, "gflops_cpu_time": 100.0}, "bf16": {"gflops": 300.0}}
    report.add_derived(records, peaks)
    g, k = records[0], records[1]
    assert g["ratio_to_best_peer"] == 2.0 and k["ratio_to_best_peer"] == 2.0  # krasserm vs best other peer (hf)
    assert g["gflops"] == pytest.approx(g["train_gflop"] * 16.0 / 32, rel=1e-3)
    assert g["peak_share"] == pytest.approx(g["gflops"] / 100.0, rel=1e-3)
    core = {"runs": records, "goals": report.check_goals(records), "matmul_peak": peaks, "method": "m"}
    text = report.markdown(core)
    assert "| cifar | fp32 | gperc | 16.00 |" in text
    assert "lucidrains perceiver-pytorch | failed: out of memory" in text
    assert report.short_reason("RuntimeError: DefaultCPUAllocator: you tried to allocate 8589934592 bytes. "
                               "Error code 12") == "out of memory (an allocation of 8.0 GiB failed)"
    assert "## Goals" in text


def test_runner_returns_the_childs_record():
    code = "import json; print('noise'); print(json.dumps({'status': 'ok', 'x': 1}))"
    r = runner.run_child([sys.executable, "-c", code], timeout_s=30, rss_limit_mb=0)
    assert r["status"] == "ok" and r["x"] == 1 and "wall_s" in r


def test_runner_records_timeout_memory_and_crash():
    r = runner.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=1, rss_limit_mb=0)
    assert r["status"] == "failed" and r["reason"].startswith("timeout")
    grow = "import time\nx = []\nwhile True:\n    x.append(bytearray(50_000_000)); time.sleep(0.05)"
    r = runner.run_child([sys.executable, "-c", grow], timeout_s=60, rss_limit_mb=300)
    assert r["status"] == "failed" and r["reason"].startswith("out of memory"), r
    r = runner.run_child([sys.executable, "-c", "raise SystemExit('boom')"], timeout_s=30, rss_limit_mb=0)
    assert r["status"] == "failed" and "boom" in r["reason"]


def test_worker_measures_a_gperc_step():
    args = worker.parse_args(["--impl", "gperc", "--shape", "tiny", "--warmup", "1", "--steps", "2",
                              "--threads", "1"])
    r = worker.measure(args)
    assert r["status"] == "ok" and len(r["step_times_s"]) == 2 and len(r["step_cpu_s"]) == 2
    assert r["samples_per_s"] > 0 and r["peak_rss_mb"] >= r["base_rss_mb"] > 0
    assert r["parameters"] > 0 and r["loss"] > 0


def test_worker_reports_failure_instead_of_crashing():
    # 0.5 GB of address space cannot even import torch: the worker must still print a failed record
    r = runner.run_child([sys.executable, str(BENCH / "core" / "worker.py"), "--impl", "gperc", "--shape", "tiny",
                          "--mem-limit-gb", "0.5"], timeout_s=120, rss_limit_mb=0)
    assert r["status"] == "failed" and r["reason"], r


def test_results_file_keeps_other_keys(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"tasks": {"a": 1}}))
    bench_run.update_results(path, "core", {"runs": []})
    bench_run.update_results(path, "core", {"runs": [1]})
    assert json.loads(path.read_text()) == {"tasks": {"a": 1}, "core": {"runs": [1]}}


def test_merge_replaces_records_of_the_same_run():
    old = [_rec("gperc", "long", "fp32", 1.0), _rec("krasserm", "cifar", "fp32", 1.0)]
    new = [_rec("gperc", "long", "fp32", 2.0), _rec("gperc", "cifar", "bf16", 3.0)]
    merged = bench_run.merge(old, new)
    assert [(r["impl"], r["shape"], r["precision"]) for r in merged] == [
        ("krasserm", "cifar", "fp32"), ("gperc", "cifar", "bf16"), ("gperc", "long", "fp32")]
    assert merged[2]["samples_per_s"] == 2.0


def test_pool_combines_rounds_of_one_run():
    a = {**_rec("gperc", "cifar", "fp32", 8.0, rss=900), "step_times_s": [4.0, 4.0], "step_cpu_s": [3.0, 3.0]}
    b = {**_rec("gperc", "cifar", "fp32", 4.0, rss=1000), "step_times_s": [8.0, 8.0, 8.0], "step_cpu_s": [5.0]}
    p = bench_run.pool(a, b)
    assert p["step_times_s"] == [4.0, 4.0, 8.0, 8.0, 8.0] and p["median_s"] == 8.0
    assert p["samples_per_s"] == 4.0 and p["peak_rss_mb"] == 1000 and p["rounds"] == 2
    assert bench_run.pool(a, _rec("gperc", "cifar", "fp32")) is a  # a failed round keeps the good one
