"""A client process of ``feitian bench coord-scale``: many sessions, many locks, held until it is killed.

::

    python -m feitian.bench.coord_scale_worker --cluster DIR --name NAME --sessions K --locks L --first J \\
        [--prefix /scale/] [--concurrency C] [--ttl-ms T]

It connects to the coord replicas of the local cluster in DIR (as its admin identity when the cluster is
secured): one Kuafu client shared by K :class:`CoordClient` objects, each with a session of its own. It prints
``{"ready": true}``, waits for a line on stdin, then makes its K sessions and takes locks J .. J+L-1 with the
``Lock`` recipe, one directory per lock (:func:`lock_path`), lock j under its session j mod K, C at a time
(C = 0: all at once, a burst). While it works and afterwards it prints a status line every 0.5 s::

    {"t": 12.5, "sessions": K, "held": n, "lost": k, "errors": e, "error": "...", "done": false}

``t`` counts from the go line; ``lost`` is the number of its sessions whose client saw them expire; ``errors``
counts acquisitions that failed (``error`` is the last one's message). It holds every lock until it is killed
or its stdin ends (the benchmark closed it, or died).

:class:`WorkerProcesses` is the benchmark's side: it starts such processes, tells them to go, follows their
status lines and kills them by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import msgspec

from feitian.bench.workers import spawn_worker, stdin_lines
from feitian.coord import CoordClient, Session
from feitian.coord.core import LeaseState
from feitian.errors import FeitianError, UnavailableError
from feitian.rpc import ClientConfig
from feitian.runtime.eventloop import run

__all__ = ["POLL_S", "STATUS_EVERY_S", "WorkerProcesses", "WorkerStatus", "lock_path", "shares"]

STATUS_EVERY_S = 0.5
POLL_S = 0.25  # the pace at which the parent polls its workers (and the benchmark its replicas)
LOCKS_PER_DIRECTORY = 1000


def lock_path(prefix: str, j: int) -> str:
    """Lock j's own directory: ``PREFIX/NNNN/JJJJJJJ`` (a thousand locks per parent directory)."""
    return f"{prefix}{j // LOCKS_PER_DIRECTORY:04d}/{j:07d}"


class WorkerStatus(msgspec.Struct):
    t: float = 0.0
    sessions: int = 0
    held: int = 0
    lost: int = 0
    errors: int = 0
    error: str = ""
    done: bool = False
    ready: bool = False


class _Worker:
    def __init__(self, clients: list[CoordClient], first: int, locks: int, prefix: str, concurrency: int) -> None:
        self.clients = clients
        self.first = first
        self.locks = locks
        self.prefix = prefix
        self.concurrency = concurrency
        self.status = WorkerStatus()
        self.lost: set[int] = set()
        self.started = 0.0

    def _on_state(self, session: Session, state: LeaseState) -> None:
        if state is LeaseState.EXPIRED and session.session_id not in self.lost:
            self.lost.add(session.session_id)
            self.status.lost = len(self.lost)

    async def _session(self, client: CoordClient) -> None:
        try:
            session = await client.session()
        except FeitianError as exc:
            self._failed(exc)
            return
        session.on_state_change(self._on_state)
        self.status.sessions += 1

    async def _lock(self, j: int) -> None:
        client = self.clients[j % len(self.clients)]
        try:
            await client.lock(lock_path(self.prefix, j)).acquire()
        except FeitianError as exc:
            self._failed(exc)
            return
        self.status.held += 1

    def _failed(self, exc: FeitianError) -> None:
        self.status.errors += 1
        self.status.error = f"{type(exc).__name__}: {exc.message}"

    async def work(self) -> None:
        self.started = time.perf_counter()
        await self._each([self._session(c) for c in self.clients])
        await self._each(self._lock(j) for j in range(self.first, self.first + self.locks))
        self.status.done = True

    async def _each(self, coros: Iterable[Coroutine[Any, Any, None]]) -> None:
        """Run the coroutines ``concurrency`` at a time (all at once when 0)."""
        iterator = iter(coros)
        if self.concurrency <= 0:
            await asyncio.gather(*iterator)
            return

        async def lane() -> None:
            for coro in iterator:
                await coro

        await asyncio.gather(*(lane() for _ in range(self.concurrency)))

    def report(self) -> None:
        if self.started:
            self.status.t = round(time.perf_counter() - self.started, 3)
        sys.stdout.write(msgspec.json.encode(self.status).decode() + "\n")
        sys.stdout.flush()


# -- the parent's side: the client processes ------------------------------------------------------------------------


class WorkerProcesses:
    """Client processes (``coord_scale_worker.py``): started, told to go, followed by their status lines, and
    killed by pid."""

    def __init__(self, cluster_dir: str, log_dir: str, ttl_ms: int) -> None:
        self.cluster_dir = cluster_dir
        self.log_dir = log_dir
        self.ttl_ms = ttl_ms
        self.procs: list[asyncio.subprocess.Process] = []
        self.logs: list[str] = []
        self.statuses: list[WorkerStatus] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, name: str, shares: list[tuple[int, int, int]], prefix: str, concurrency: int) -> None:
        """One process per (sessions, locks, first lock) share; returns once every one is connected."""
        for sessions, locks, first in shares:
            i = len(self.procs)
            log = os.path.join(self.log_dir, f"{name}-{i}.log")
            argv = [
                *("--cluster", self.cluster_dir, "--name", f"{name}-{i}", "--sessions", str(sessions)),
                *("--locks", str(locks), "--first", str(first), "--prefix", prefix),
                *("--concurrency", str(concurrency), "--ttl-ms", str(self.ttl_ms)),
            ]
            proc = await spawn_worker("feitian.bench.coord_scale_worker", argv, log)
            self.procs.append(proc)
            self.logs.append(log)
            self.statuses.append(WorkerStatus())
            self._readers.append(asyncio.get_running_loop().create_task(self._read(i, proc)))
        await self.wait(lambda: all(s.ready for s in self.statuses), 60, f"{name} processes connected")

    async def _read(self, i: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            with contextlib.suppress(msgspec.DecodeError):
                self.statuses[i] = msgspec.json.decode(line, type=WorkerStatus)

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.returncode is not None:
                raise UnavailableError(
                    f"coord-scale: client process {proc.pid} exited ({proc.returncode}): {_tail(log)}",
                    hint=f"its log: {log}",
                )

    async def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            self.check_alive()
            if time.monotonic() > deadline:
                raise UnavailableError(f"coord-scale: not within {timeout_s:g} s: {what}")
            await asyncio.sleep(POLL_S)  # polling pace

    @property
    def held(self) -> int:
        return sum(s.held for s in self.statuses)

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.statuses)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.statuses)

    def last_error(self) -> str:
        return next((s.error for s in self.statuses if s.error), "")

    async def kill(self, index: int | None = None) -> None:
        """SIGKILL one process (by its pid) or all of them, and reap them."""
        chosen = self.procs if index is None else [self.procs[index]]
        for proc in chosen:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
        if index is None:
            for reader in self._readers:
                reader.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)


def _tail(path: str, lines: int = 3) -> str:
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        return " | ".join(line.rstrip() for line in f.readlines()[-lines:])
    return ""


def shares(sessions: int, locks: int, procs: int) -> list[tuple[int, int, int]]:
    """(sessions, locks, first lock) of each process: as even a split of both as the counts allow."""
    out, first = [], 0
    for p in range(procs):
        s = sessions // procs + (1 if p < sessions % procs else 0)
        n = locks // procs + (1 if p < locks % procs else 0)
        out.append((s, n, first))
        first += n
    return out


# -- the client process ---------------------------------------------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    from feitian.deploy import LocalCluster

    cluster = LocalCluster(args.cluster)
    state = cluster.load()
    addresses = [p.addresses[0] for p in state.processes if p.role == "coord"]
    rpc = await cluster.client(ClientConfig(name=args.name, connect_timeout_s=2), state=state)
    clients = [CoordClient(rpc, addresses, session_ttl_ms=args.ttl_ms) for _ in range(args.sessions)]
    worker = _Worker(clients, args.first, args.locks, args.prefix, args.concurrency)
    lines = stdin_lines()
    worker.status.ready = True
    worker.report()
    if not await lines.get():  # the go line; end of input: the benchmark is gone
        return
    task = asyncio.get_running_loop().create_task(worker.work())
    while lines.empty():  # until the benchmark closes our input (or dies): then stop holding
        await asyncio.sleep(STATUS_EVERY_S)  # the status line's pace
        if task.done() and (failed := task.exception()) is not None:
            raise failed
        worker.report()
    task.cancel()


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m feitian.bench.coord_scale_worker")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--name", default="bench-scale-worker")
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--locks", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--prefix", default="/scale/")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--ttl-ms", type=int, default=8000)
    run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
