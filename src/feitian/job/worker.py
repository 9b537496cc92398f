"""The TaskWorker: a process on one of the job's grants that runs instances of one task for its JobMaster.

``python -m feitian.job.worker ROOT TASK WORKER_ID`` (started by the JobMaster through Fuxi): finds its JobMaster
(``ROOT/master`` in Pangu), says hello, then long-polls it — reporting attempts finished, failed and cancelled —
and runs the attempts it is given, up to the task's ``workers.concurrency`` at a time (threads: see execute.py).
When its JobMaster goes away it reads ``ROOT/master`` again and says hello to the new one with what it runs and
what it finished but could not report, so a JobMaster restart loses no work (FUXI-11). It exits when told to
stop, or when no JobMaster answers for ``MASTER_LOST_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from pathlib import Path

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import FeitianError, NotFoundError
from feitian.job.core import AttemptRef
from feitian.job.execute import AttemptCancelled, AttemptContext, run_attempt
from feitian.job.messages import (
    MAX_ERROR_CHARS,
    AttemptDone,
    AttemptFailed,
    AttemptProgress,
    PollReply,
    TaskRun,
    WorkerHello,
    WorkerPoll,
)
from feitian.job.process import run_program
from feitian.job.streamline import OutputStore, PanguOutput
from feitian.rpc import Client, ClientConfig
from feitian.sched import AppEnvironment
from feitian.security import SamePrincipalClient

__all__ = ["MASTER_LOST_S", "TaskWorker", "main"]

log = logging.getLogger("feitian.job.worker")

MASTER_LOST_S = 120.0  # no JobMaster answering for this long: the job is gone, exit
POLL_WAIT_S = 5.0
SHUFFLE_REPLICATION = 2


def peer_client(env: AppEnvironment, name: str) -> Client:
    """A client for the job's own processes (mutual TLS as the application, in a secured cluster)."""
    config = ClientConfig(name=name, connect_timeout_s=2.0)
    tls = env.tls()
    return Client(config) if tls is None else Client(config, tls=SamePrincipalClient(tls))


class TaskWorker:
    def __init__(self, env: AppEnvironment, root: str, task: str, worker_id: str, clock: Clock | None = None) -> None:
        self.env = env
        self.clock = clock or MonotonicClock()
        self.root = root.rstrip("/")
        self.task = task
        self.worker_id = worker_id
        self.rpc = env.rpc_client("taskworker")
        self.peer = peer_client(env, "taskworker-peer")
        self.dfs = env.dfs(self.rpc)
        work = Path(env.work_dir or ".")
        scratch = work / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        self.ctx = AttemptContext(
            dfs=self.dfs,
            pangu=PanguOutput(self.dfs, f"{self.root}/shuffle", replication=SHUFFLE_REPLICATION, scratch=scratch),
            store=OutputStore(work / "streamline"),
            scratch=scratch,
            package_dir=os.environ.get("FEITIAN_PACKAGE_DIR", ""),
            clock=self.clock,
        )
        self.master = ""
        self.epoch = 0
        self.running: dict[AttemptRef, tuple[asyncio.Task[None], threading.Event]] = {}
        self.done: list[AttemptDone] = []
        self.failed: list[AttemptFailed] = []
        self.cancelled: list[AttemptRef] = []
        self._wake = asyncio.Event()
        self._finding = asyncio.Lock()
        self.stopping = False
        self.generation = 0  # how many times the JobMaster was found (a lost one is looked for once)

    async def close(self) -> None:
        for task, flag in self.running.values():
            flag.set()
            task.cancel()
        await asyncio.gather(*(t for t, _ in self.running.values()), return_exceptions=True)
        await self.peer.close()
        await self.rpc.close()

    async def _find_master(self) -> None:
        deadline = self.clock.monotonic_ns() + int(MASTER_LOST_S * 1e9)
        while True:
            try:
                address = (await self.dfs.read(f"{self.root}/master")).decode().strip()
                reply = await self.peer.call(
                    address,
                    WorkerHello(
                        worker_id=self.worker_id,
                        task=self.task,
                        machine=self.env.machine,
                        running=list(self.running),
                        finished=list(self.done),
                    ),
                    timeout=10.0,
                )
            except (FeitianError, OSError) as exc:
                if self.clock.monotonic_ns() > deadline:
                    raise
                log.info("worker %s: no JobMaster yet (%s)", self.worker_id, exc)
                await self.clock.sleep(0.5)
                continue
            if not reply.known:
                raise NotFoundError(f"worker {self.worker_id}: the JobMaster does not know this worker")
            self.master, self.epoch = address, reply.epoch
            self.generation += 1
            self.done = []  # reported in the hello
            return

    async def run(self) -> int:
        """Long-poll for work in one loop, report what ended at once in another (a report never waits behind a
        long poll); both follow the JobMaster to its new address when it is restarted."""
        await self._find_master()
        reporter = asyncio.get_running_loop().create_task(self._report_loop())
        try:
            while not self.stopping:
                generation = self.generation
                try:
                    reply = await self.peer.call(
                        self.master, WorkerPoll(worker_id=self.worker_id, wait_s=POLL_WAIT_S), timeout=POLL_WAIT_S + 15
                    )
                except FeitianError as exc:
                    await self._lost(generation, exc)
                    continue
                self._handle(reply)
            return 0
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter

    async def _report_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not (self.done or self.failed or self.cancelled):
                continue
            request = WorkerPoll(
                worker_id=self.worker_id,
                done=self.done,
                failed=self.failed,
                cancelled=self.cancelled,
                progress=[AttemptProgress(ref, self.ctx.processed.get(str(ref), 0)) for ref in self.running],
                wait_s=0.0,
            )
            self.done, self.failed, self.cancelled = [], [], []
            generation = self.generation
            try:
                reply = await self.peer.call(self.master, request, timeout=30.0)
            except FeitianError as exc:
                self.done[:0] = request.done  # not known to have arrived: said again (in the hello, for done)
                self.failed[:0] = request.failed
                self.cancelled[:0] = request.cancelled
                await self._lost(generation, exc)
                self._wake.set()
                continue
            self._handle(reply)

    async def _lost(self, generation: int, exc: FeitianError) -> None:
        """The JobMaster did not answer: find it again (once, whichever loop noticed first)."""
        async with self._finding:
            if self.generation != generation:
                return  # the other loop found it meanwhile
            log.warning("worker %s: JobMaster %s lost (%s); looking for it again", self.worker_id, self.master, exc)
            await self._find_master()

    def _handle(self, reply: PollReply) -> None:
        if reply.stop:
            self.stopping = True
            return
        for ref in reply.cancels:
            entry = self.running.get(ref)
            if entry is not None:
                entry[1].set()
                entry[0].cancel()
            else:
                self.cancelled.append(ref)
                self._wake.set()
        for run in reply.runs:
            if run.ref in self.running:
                continue
            flag = threading.Event()
            self.running[run.ref] = (asyncio.get_running_loop().create_task(self._attempt(run, flag)), flag)

    async def _attempt(self, run: TaskRun, flag: threading.Event) -> None:
        try:
            done = await run_attempt(run, self.ctx, flag)
        except (AttemptCancelled, asyncio.CancelledError):
            self.cancelled.append(run.ref)
        except Exception as exc:
            message = exc.message if isinstance(exc, FeitianError) else f"{type(exc).__name__}: {exc}"
            log.warning("attempt %s failed: %s", run.ref, message)
            self.failed.append(AttemptFailed(run.ref, message[:MAX_ERROR_CHARS]))
        else:
            self.done.append(done)
        finally:
            self.running.pop(run.ref, None)
            self._wake.set()


async def _main(argv: list[str]) -> int:
    root, task, worker_id = argv
    worker = TaskWorker(AppEnvironment.from_env(), root, task, worker_id)
    try:
        return await worker.run()
    finally:
        await worker.close()


def main() -> None:
    run_program(_main, "python -m feitian.job.worker ROOT TASK WORKER_ID", 3)


if __name__ == "__main__":
    main()
