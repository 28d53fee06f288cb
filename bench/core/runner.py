"""Run one measurement in a child process with a time limit and a memory watch.

`run_child(cmd, timeout_s, rss_limit_mb)` starts ``cmd``, polls its resident set (the sum over
the process and its children, from /proc) every 0.2 s, kills it when it runs past ``timeout_s``
or its RSS passes ``rss_limit_mb``, and returns the JSON record its last stdout line holds, or a
``failed`` record saying why there is none (timeout, memory, crash with the stderr tail).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path


def _rss_mb(pid: int) -> float:
    """Return the resident set of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0.0


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def run_child(cmd: list[str], timeout_s: float, rss_limit_mb: float, env: dict | None = None,
              cwd: str | None = None) -> dict:
    """Run ``cmd`` under the limits; returns its JSON record, or a failed record with ``reason``."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                            start_new_session=True)
    peak = 0.0
    killed = ""
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
    for r in readers:
        r.start()
    try:
        while proc.poll() is None:
            rss = _rss_mb(proc.pid)
            peak = max(peak, rss)
            elapsed = time.monotonic() - start
            if elapsed > timeout_s:
                killed = f"timeout: no result within {timeout_s:.0f} s"
            elif rss_limit_mb and rss > rss_limit_mb:
                killed = f"out of memory: resident set passed the {rss_limit_mb / 1024:.1f} GiB limit"
            if killed:
                break
            time.sleep(0.2)
    finally:  # also when the parent is interrupted: never leave a child running
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for r in readers:
        r.join(timeout=10)
    out, err = "".join(out_chunks), "".join(err_chunks)
    wall = round(time.monotonic() - start, 1)
    record = None if killed else _last_json(out)
    if record is None:
        reason = killed or f"crashed with exit code {proc.returncode}: {err.strip()[-400:]}"
        record = {"status": "failed", "reason": reason, "peak_rss_mb": round(peak, 1)}
    record["wall_s"] = wall
    if record.get("status") == "failed" and err.strip():
        record["stderr_tail"] = err.strip()[-1500:]
    return record
