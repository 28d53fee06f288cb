"""Process groups, data parallelism and failure propagation for gperc on `torch.distributed`.

One code path for CPU (gloo over loopback) and GPU (NCCL): `init_distributed` reads the
``torchrun`` environment (or explicit arguments), picks the backend from the device, and sets the
process-group timeout. `build_layout` splits the world into pipeline x data-parallel groups on a
2-D `DeviceMesh` (``("dp", "pp")``, pipeline ranks contiguous). `wrap_ddp` is DDP on a group.

Failure behaviour: inside `failure_guard`, a rank that raises posts ``"rank R: Error: message"`` to
the rendezvous store before it dies; every other rank runs a watchdog thread that polls the store
and ends its process (exit code `PEER_FAILED_EXIT`) with a message naming the failed rank and the
error. A rank that vanishes without posting (killed) is caught by the process-group timeout. So no
rank hangs for longer than the timeout.
"""

from __future__ import annotations

import datetime
import os
import pickle
import socket
import sys
import tempfile
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from gperc_core.errors import ConfigError
from gperc_core.parallel.options import DEFAULT_TIMEOUT_S


PEER_FAILED_EXIT: int = 3
"""Exit code of a rank that stops because another rank failed."""

FAILURE_KEY = "gperc/failure"
_LOST_PEER_MARKS = ("Connection closed by peer", "Timed out", "Connection reset", "timed out")
_POLL_S = 0.2

__all__ = ["DistContext", "ParallelLayout", "init_distributed", "build_layout", "wrap_ddp", "failure_guard",
           "shutdown", "spawn_workers", "free_port", "DEFAULT_TIMEOUT_S", "PEER_FAILED_EXIT", "RankFailure"]


class RankFailure(RuntimeError):
    """Raised by `spawn_workers` when a worker rank failed; its message names the rank and the error."""


@dataclass
class DistContext:
    """Where this process stands in the distributed job: rank, world size, device, backend, timeout."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    timeout_s: float
    store: Any = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        """True on global rank 0, the rank that writes checkpoints and prints progress."""
        return self.rank == 0


@dataclass
class ParallelLayout:
    """Pipeline x data-parallel layout: ``pp_size`` ranks per pipeline, ``dp_size`` pipeline replicas.

    ``pp_group`` holds the ranks of this rank's pipeline, ``dp_group`` the ranks that own the same
    stages in the other replicas (``None`` when ``dp_size == 1``). Global rank = dp_rank * pp_size + pp_rank.
    """

    pp_size: int
    dp_size: int
    pp_rank: int
    dp_rank: int
    pp_group: Any
    dp_group: Any
    mesh: Any = None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer in the environment, got {value!r}") from None


def _check_timeout(timeout_s: Any) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ConfigError(f"timeout_s: expected a number of seconds > 0, got {timeout_s!r}")
    return float(timeout_s)


def init_distributed(*, backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, rank: int | None = None,
                     world_size: int | None = None, init_method: str | None = None,
                     device: str | torch.device | None = None) -> DistContext:
    """Initialise the default process group (once) and return this rank's `DistContext`.

    Rank and world size come from the arguments, else from ``torchrun``'s ``RANK``/``WORLD_SIZE``
    (``init_method`` defaults to ``env://``). The backend is NCCL when the device is a GPU and gloo
    otherwise; ``timeout_s`` bounds every collective and point-to-point wait. Raises `ConfigError`
    for missing or inconsistent settings, before any connection is attempted.
    """
    timeout_s = _check_timeout(timeout_s)
    rank = _env_int("RANK") if rank is None else rank
    world_size = _env_int("WORLD_SIZE") if world_size is None else world_size
    local_rank = _env_int("LOCAL_RANK")
    if rank is None or world_size is None:
        raise ConfigError("rank/world_size: expected explicit arguments or torchrun's RANK and WORLD_SIZE "
                          f"environment variables, got rank={rank!r}, world_size={world_size!r} "
                          "(launch with `torchrun --nproc-per-node K -m gperc_core ...`)")
    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size: expected a positive integer, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ConfigError(f"rank: expected an integer in [0, {world_size}), got {rank!r}")
    if local_rank is None:
        local_rank = rank
    if device is None and torch.cuda.is_available():
        local_world = _env_int("LOCAL_WORLD_SIZE") or 1
        if local_world > torch.cuda.device_count():
            raise ConfigError(f"device: {local_world} ranks on this node but {torch.cuda.device_count()} GPU(s); "
                              "NCCL needs one GPU per rank (launch fewer processes, or pass device='cpu' / "
                              "--device cpu for gloo)")
        device = torch.device("cuda", local_rank)
    elif device is None:
        device = torch.device("cpu")
    device = torch.device(device)
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"backend: expected 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(f"backend: 'nccl' needs a CUDA device, got device={device}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if init_method is None and ("MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ):
            raise ConfigError("init_method: expected an address (tcp://host:port or file://path) or the "
                              "MASTER_ADDR/MASTER_PORT environment of torchrun, got neither")
        dist.init_process_group(backend=backend, init_method=init_method or "env://", rank=rank,
                                world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s))
    store = None
    try:  # the rendezvous store carries failure notices between ranks
        store = dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - a store-less backend only loses the failure notices
        store = None
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend, device=device,
                       timeout_s=timeout_s, store=store)


def build_layout(pp_size: int, ctx: DistContext | None = None) -> ParallelLayout:
    """Split the world into ``world_size / pp_size`` pipeline replicas of ``pp_size`` ranks each.

    With one replica the pipeline group is the whole world and there is no data-parallel group;
    otherwise a 2-D `DeviceMesh` ``(dp, pp)`` provides both groups. Raises `ConfigError` when
    ``pp_size`` does not divide the world size.
    """
    world = dist.get_world_size()
    rank = dist.get_rank()
    if isinstance(pp_size, bool) or not isinstance(pp_size, int) or pp_size < 1 or world % pp_size:
        raise ConfigError(f"pipeline ranks: expected a positive divisor of the world size {world}, got {pp_size!r}")
    dp_size = world // pp_size
    if dp_size == 1:
        return ParallelLayout(pp_size=pp_size, dp_size=1, pp_rank=rank, dp_rank=0,
                              pp_group=dist.group.WORLD, dp_group=None)
    from torch.distributed.device_mesh import init_device_mesh

    device_type = ctx.device.type if ctx is not None else ("cuda" if dist.get_backend() == "nccl" else "cpu")
    mesh = init_device_mesh(device_type, (dp_size, pp_size), mesh_dim_names=("dp", "pp"))
    return ParallelLayout(pp_size=pp_size, dp_size=dp_size, pp_rank=rank % pp_size, dp_rank=rank // pp_size,
                          pp_group=mesh.get_group("pp"), dp_group=mesh.get_group("dp"), mesh=mesh)


def wrap_ddp(module: nn.Module, *, group: Any = None, device: torch.device | None = None,
             find_unused_parameters: bool = False) -> nn.parallel.DistributedDataParallel:
    """Wrap ``module`` in DDP over ``group`` (default: the world); parameters are broadcast from the
    group's first rank, gradients are averaged over the group during backward."""
    device = device or next((p.device for p in module.parameters()), torch.device("cpu"))
    device_ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, process_group=group,
                                               find_unused_parameters=find_unused_parameters)


# ---------------------------------------------------------------------------------------------- failures
def _post_failure(ctx: DistContext, message: str) -> None:
    if ctx.store is None:
        return
    try:
        if not ctx.store.check([FAILURE_KEY]):
            ctx.store.set(FAILURE_KEY, message)
    except Exception:  # noqa: BLE001 - the store may be gone with its host rank; the timeout still holds
        pass


def _read_failure(ctx: DistContext) -> str | None:
    if ctx.store is None:
        return None
    try:
        if ctx.store.check([FAILURE_KEY]):
            return ctx.store.get(FAILURE_KEY).decode(errors="replace")
    except Exception:  # noqa: BLE001
        return None
    return None


class _Watchdog(threading.Thread):
    """Polls the store for a failure notice from another rank and ends this process when one appears."""

    def __init__(self, ctx: DistContext) -> None:
        super().__init__(name=f"gperc-watchdog-{ctx.rank}", daemon=True)
        self.ctx = ctx
        self.stop_event = threading.Event()
        self.own_failure = threading.Event()

    def run(self) -> None:
        prefix = f"rank {self.ctx.rank}:"
        while not self.stop_event.wait(_POLL_S):
            notice = _read_failure(self.ctx)
            if notice is None or self.own_failure.is_set() or notice.startswith(prefix):
                continue
            print(f"gperc: rank {self.ctx.rank} stopping because {notice}", file=sys.stderr, flush=True)
            os._exit(PEER_FAILED_EXIT)


def _describe_failure(ctx: DistContext, exc: BaseException) -> str:
    """``"rank R: RootError: message"``: the innermost cause (torch wraps stage errors), one line."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = " ".join(line.strip() for line in str(root).strip().splitlines()[:3])
    described = f"rank {ctx.rank}: {type(root).__name__}: {text}"[:800]
    if root is not exc:
        wrapper = " ".join(str(exc).strip().splitlines()[:1]).strip()
        described += f" (raised as {type(exc).__name__}: {wrapper[:200]})"
    if any(mark in text for mark in _LOST_PEER_MARKS):
        described += " - no rank posted a failure, so a peer was killed or hung; see the other ranks' logs"
    return described


@contextmanager
def failure_guard(ctx: DistContext) -> Iterator[None]:
    """Run the body so that a failure on any rank ends every rank within the process-group timeout.

    An exception here is posted to the store (naming this rank and the error) and re-raised; a
    timeout while waiting on a peer is re-raised naming the peer that posted a failure, if any.
    Meanwhile a watchdog ends this process when another rank posts a failure.
    """
    watchdog = _Watchdog(ctx)
    watchdog.start()
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the peers
        watchdog.own_failure.set()
        peer = _read_failure(ctx)
        if peer is not None and not peer.startswith(f"rank {ctx.rank}:"):
            message = f"rank {ctx.rank} stopping because {peer} (here: {type(exc).__name__}: {exc})"
            print(f"gperc: {message}", file=sys.stderr, flush=True)
            raise RuntimeError(message) from exc
        described = _describe_failure(ctx, exc)
        _post_failure(ctx, described)
        print(f"gperc: {described}", file=sys.stderr, flush=True)
        raise
    finally:
        watchdog.stop_event.set()


def shutdown() -> None:
    """Destroy the default process group if one is up (safe to call twice)."""
    if dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- local jobs
def _free_rendezvous() -> str:
    fd, path = tempfile.mkstemp(prefix="gperc-rdzv-")
    os.close(fd)
    os.unlink(path)
    return f"file://{path}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (for ``MASTER_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker_main(rank: int, fn: Callable[..., Any], world_size: int, init_method: str, timeout_s: float,
                 threads: int, args: tuple, results: Any, log_dir: str | None, device: str = "cpu") -> None:
    torch.set_num_threads(threads)
    if log_dir is not None:  # this rank's stdout and stderr go to log_dir/rank<r>.log
        log = open(os.path.join(log_dir, f"rank{rank}.log"), "w", buffering=1)  # noqa: SIM115 - lives with the process
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    ctx = init_distributed(rank=rank, world_size=world_size, init_method=init_method, timeout_s=timeout_s,
                           device="cpu" if device == "cpu" else f"cuda:{rank}")
    try:
        with failure_guard(ctx):
            value = fn(ctx, *args)
        results.put((rank, "ok", pickle.dumps(value)))  # by value: no shared-memory handles to a dead process
    except BaseException as exc:  # noqa: BLE001
        results.put((rank, "error", (_describe_failure(ctx, exc), traceback.format_exc())))
        raise
    finally:
        shutdown()


SPAWN_DEVICE_ENV = "GPERC_SPAWN_DEVICE"
"""Environment variable: the default device of `spawn_workers` ('cpu': gloo; 'cuda': one GPU per rank, NCCL)."""


def spawn_workers(fn: Callable[..., Any], world_size: int, args: Sequence[Any] = (), *, timeout_s: float = 60.0,
                  threads: int = 1, join_timeout_s: float | None = None, log_dir: str | None = None,
                  device: str | None = None) -> list[Any]:
    """Run ``fn(ctx, *args)`` on ``world_size`` local processes (file rendezvous) and return the
    per-rank results in rank order.

    ``device`` 'cpu' (default, or the ``GPERC_SPAWN_DEVICE`` environment variable) runs gloo on CPU
    processes; 'cuda' gives rank r the GPU ``cuda:r`` and NCCL (``ctx.device`` tells ``fn`` where to
    put its tensors), and is a `ConfigError` with fewer GPUs than ranks.

    ``fn`` must be importable by name (a module-level function); its result must pickle. Raises
    `RankFailure` naming the failed rank and its error when any rank fails, and when the job has not
    ended after ``join_timeout_s`` (default: three process-group timeouts). With ``log_dir`` each
    rank's stdout and stderr go to ``log_dir/rank<r>.log``.
    """
    import queue
    import time

    import torch.multiprocessing as mp

    device = (device or os.environ.get(SPAWN_DEVICE_ENV) or "cpu").strip().lower()
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected 'cpu' or 'cuda' (argument or {SPAWN_DEVICE_ENV}), got {device!r}")
    if device == "cuda" and torch.cuda.device_count() < world_size:
        raise ConfigError(f"device: 'cuda' runs one GPU per rank (NCCL), {world_size} ranks but "
                          f"{torch.cuda.device_count()} GPU(s)")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch.distributed", "gperc_core.parallel.distributed", "gperc_core.parallel.pipeline"])
    results = context.Queue()
    init_method = _free_rendezvous()
    procs = [context.Process(target=_worker_main, daemon=False,
                             args=(r, fn, world_size, init_method, float(timeout_s), threads, tuple(args), results,
                                   log_dir, device))
             for r in range(world_size)]
    for p in procs:
        p.start()
    deadline = join_timeout_s if join_timeout_s is not None else 3 * timeout_s + 30
    collected: dict[int, tuple[str, Any]] = {}
    end = time.monotonic() + deadline
    try:
        while len(collected) < world_size and time.monotonic() < end:
            try:
                rank, status, value = results.get(timeout=0.2)
                collected[rank] = (status, value)
                continue
            except queue.Empty:
                pass
            if all(not p.is_alive() for p in procs):
                # drain anything put just before the exits
                while True:
                    try:
                        rank, status, value = results.get(timeout=0.2)
                        collected[rank] = (status, value)
                    except queue.Empty:
                        break
                break
    finally:
        for p in procs:
            p.join(timeout=max(0.0, min(5.0, end - time.monotonic())))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        path = init_method[len("file://"):]
        if os.path.exists(path):
            os.unlink(path)
    errors = [value[0] for _, (status, value) in sorted(collected.items()) if status == "error"]
    missing = [r for r in range(world_size) if r not in collected]
    if errors or missing:
        parts = list(errors)
        if missing:
            parts.append(f"ranks {missing} ended without a result (exit codes "
                         f"{ {r: procs[r].exitcode for r in missing} })")
        failure = RankFailure("; ".join(parts))
        failure.details = {r: value[1] for r, (status, value) in collected.items() if status == "error"}
        raise failure
    return [pickle.loads(collected[r][1]) for r in range(world_size)]
