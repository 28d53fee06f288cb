"""Failure behaviour: a rank that raises, dies or hangs ends every rank within the process-group
timeout, and the survivors' messages name the failed rank and its error."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gperc_core.parallel.distributed import PEER_FAILED_EXIT, RankFailure, spawn_workers

from test_pipeline import make_batch, tiny_config


def _failing_worker(ctx, mode: str):
    from gperc_core.parallel.pipeline import build_pipeline

    config = tiny_config()
    handle = build_pipeline(config, schedule="1f1b", microbatches=4)
    x, _, _, target = make_batch(config, 8, mask=False, output_array=False, dense=False)
    handle.step(x, target)  # one good step: the pipeline is up and connected
    if ctx.rank == 1:
        calls = {"n": 0}

        def hook(module, args, kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                if mode == "raise":
                    raise RuntimeError("injected failure on purpose")
                if mode == "die":
                    os._exit(17)
                time.sleep(600)  # "hang": stuck without ever answering

        handle.modules[0].register_forward_pre_hook(hook, with_kwargs=True)
    handle.step(x, target)
    return "finished"


def _run(mode: str, timeout_s: float, log_dir: Path) -> tuple[float, str, dict[int, str]]:
    start = time.monotonic()
    with pytest.raises(RankFailure) as info:
        spawn_workers(_failing_worker, 2, args=(mode,), timeout_s=timeout_s, join_timeout_s=timeout_s + 30,
                      log_dir=str(log_dir))
    elapsed = time.monotonic() - start
    logs = {r: (log_dir / f"rank{r}.log").read_text() for r in range(2)}
    return elapsed, str(info.value), logs


def test_a_rank_that_raises_ends_every_rank_naming_it(tmp_path):
    elapsed, message, logs = _run("raise", 20.0, tmp_path)
    assert "rank 1: RuntimeError" in message and "injected failure on purpose" in message
    assert "rank 0 stopping because rank 1" in logs[0] and "injected failure on purpose" in logs[0]
    # rank 0 ends either by its watchdog (exit code PEER_FAILED_EXIT) or because its receive failed
    assert f"exit codes {{0: {PEER_FAILED_EXIT}}}" in message or "rank 0 stopping because rank 1" in message
    assert elapsed < 20.0 + 10.0, f"took {elapsed:.1f}s for a 20s timeout"


def test_a_rank_that_dies_or_hangs_ends_the_others_within_the_timeout(tmp_path):
    for mode in ("die", "hang"):
        log_dir = tmp_path / mode
        log_dir.mkdir()
        elapsed, message, logs = _run(mode, 3.0, log_dir)
        assert "rank 0:" in message and "a peer was killed or hung" in message, message
        assert "gperc: rank 0:" in logs[0]
        if mode == "hang":  # the hung rank is ended by the watchdog once rank 0 has posted its failure
            assert "rank 1 stopping because rank 0" in logs[1]
        assert elapsed < 3.0 + 12.0, f"{mode}: took {elapsed:.1f}s for a 3s timeout"
