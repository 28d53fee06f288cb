"""One writer per run folder: an exclusive lock held by the process that trains into it.

``with run_lock(run_dir): ...`` takes ``<run_dir>/.gperc.lock`` for the duration of the block; a
second writer (another ``gperc train --out`` of the same folder, a ``--resume`` of a running run)
fails at once with `RunLockedError` naming the folder and the holder (PID, host, start time).
Readers (``gperc eval``, ``gperc predict``) take no lock and never write into a run folder.

The mechanism is an advisory ``fcntl.flock`` on an open lock file, not the file's existence:

- the kernel drops the lock when its holder dies for any reason (kill -9, OOM killer, power loss of
  a remote client), so a lock left by a dead process never blocks; the next writer takes it over
  atomically (flock is one system call; there is no "check then create" window);
- the file holds the holder's PID, host and start time as JSON for the error message only;
- after locking, the file is checked to still be the one at the path (a releasing holder unlinks
  it), so two writers can never both hold locks on different inodes;
- the lock is re-entrant within a process (`gperc_core.api.train` takes it, the `Trainer` it runs
  takes it again), counted per folder.

Where ``fcntl`` does not exist (Windows), the lock file is created with ``O_CREAT | O_EXCL``
instead, and a lock file whose holder is on this host and no longer running is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from gperc_core.errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".gperc.lock"

_held: dict[str, list[Any]] = {}  # realpath of the folder -> [open file descriptor, depth]


def _holder_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started_unix": time.time()}


def read_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """Return the recorded holder of ``run_dir``'s lock (``pid``, ``host``, ``started``), or ``None``
    when there is no lock file or it is unreadable. The record alone does not say the lock is held."""
    try:
        data = json.loads((Path(run_dir) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this host (signal 0 probe; a process of another user counts)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def _describe(run_dir: Path, holder: dict[str, Any] | None) -> str:
    if not holder:
        who = "another process (holder unknown: its lock record is being written or unreadable)"
    else:
        who = f"PID {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
        if holder.get("host") == socket.gethostname() and not pid_alive(holder.get("pid", -1)):
            who += " (no longer running; a child process it forked still holds the lock)"
    return (f"run folder {str(run_dir)!r}: expected no other process writing it, got one: {who}; wait for it "
            f"to finish or stop it (it resumes with --resume {run_dir}), or choose another --out")


def _acquire_flock(run_dir: Path) -> int:
    path = run_dir / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLockedError(_describe(run_dir, read_holder(run_dir))) from None
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder unlinked it between our open and our flock: try again


def _acquire_exclusive(run_dir: Path) -> int:  # pragma: no cover - used where fcntl is missing
    path = run_dir / LOCK_FILE
    for _ in range(3):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_holder(run_dir)
            stale = (holder is not None and holder.get("host") == socket.gethostname()
                     and not pid_alive(holder.get("pid", -1)))
            if not stale:
                raise RunLockedError(_describe(run_dir, holder)) from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    raise RunLockedError(_describe(run_dir, read_holder(run_dir)))


def acquire(run_dir: str | Path) -> Path:
    """Take the writer lock of ``run_dir`` (created if missing) for this process; returns the folder.

    Re-entrant: a process that holds it already only counts one more level. Raises
    `RunLockedError` when another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
        return run_dir
    fd = _acquire_flock(run_dir) if fcntl is not None else _acquire_exclusive(run_dir)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_holder_info()) + "\n").encode(), 0)
    except OSError:  # a full disk must not stop a run that may hold the lock; the record is informative
        pass
    _held[key] = [fd, 1]
    return run_dir


def release(run_dir: str | Path) -> None:
    """Release one level of this process's lock on ``run_dir``; the last one removes the lock file."""
    key = os.path.realpath(run_dir)
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[key]
    fd = entry[0]
    with contextlib.suppress(OSError):
        os.unlink(Path(run_dir) / LOCK_FILE)  # unlink while still holding, so no one locks a dying inode
    with contextlib.suppress(OSError):
        os.close(fd)  # closing drops the flock


def holds(run_dir: str | Path) -> bool:
    """True when this process holds the writer lock of ``run_dir``."""
    return os.path.realpath(run_dir) in _held


@contextlib.contextmanager
def run_lock(run_dir: str | Path, enabled: bool = True) -> Iterator[Path]:
    """Context holding the writer lock of ``run_dir`` (see the module doc); ``enabled=False`` (a
    distributed run's non-writing ranks) takes nothing."""
    if not enabled:
        yield Path(run_dir)
        return
    acquire(run_dir)
    try:
        yield Path(run_dir)
    finally:
        release(run_dir)


__all__ = ["LOCK_FILE", "run_lock", "acquire", "release", "holds", "read_holder", "pid_alive"]
