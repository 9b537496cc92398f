"""The JobMaster: a DAG job's application master (FUXI-7..11). It drives the pure :class:`~feitian.job.core.JobCore`.

``python -m feitian.job.master ROOT`` runs as the application master of a job submitted with ``feitian job
submit`` (client.py), in the job's own identity. ``ROOT`` is the job's directory in Pangu::

    ROOT/job.json        the job description (written by the submitter)
    ROOT/master          the JobMaster's address (its workers find it there, again after a restart)
    ROOT/snapshot        the core's snapshot: finished instances (written before any commit is carried out)
    ROOT/status.json     the live view (``feitian job status``): per task done / running / failed / backups
    ROOT/shuffle/        records between tasks (streamline through Pangu, one file per producer and partition)
    ROOT/tmp/            attempts' result files, renamed into the task's output directory when committed

The JobMaster resolves the inputs (globs, splits, the machines holding each split's chunks), builds the graph and
the core (or restores it from the snapshot after a restart), and then carries out the core's effects: it asks
Fuxi for workers incrementally (a unit per task and preferred machine), starts a TaskWorker on each grant, hands
attempts to workers through their long polls, commits winners (its result file renamed into place, after the
snapshot that records it is durable), cancels losers, and returns workers the core no longer needs.

**Restart (FUXI-11).** A restarted JobMaster restores the core from the snapshot (a new epoch, persisted at once),
takes back the grants its application holds, and waits up to ``RECOVERY_S`` for their workers to say hello with
what they run and what they finished; then it starts the core, which adopts those attempts and reruns only what is
neither finished nor running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import (
    AlreadyExistsError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from feitian.job.core import (
    AttemptRef,
    BlacklistMachine,
    CancelAttempt,
    CommitAttempt,
    Effect,
    FinishedAttempt,
    JobCore,
    JobFinished,
    ReleaseWorker,
    StartInstance,
    TaskProgress,
    WantWorkers,
    WorkerReport,
)
from feitian.job.inputs import resolve_splits
from feitian.job.messages import (
    MAX_POLL_WAIT_S,
    HelloReply,
    InputEdge,
    InputSplit,
    OutputEdge,
    PollReply,
    ResultOutput,
    TaskRun,
    WorkerHello,
    WorkerPoll,
)
from feitian.job.process import run_program
from feitian.job.spec.load import decode_job
from feitian.job.spec.model import JobSpec, TaskSpec, effective_task
from feitian.job.spec.plan import Split, build_graph
from feitian.rpc import CallContext, Server, ServerConfig
from feitian.sched import AM_UNIT, AppEnvironment, AppMaster, WorkerEnded
from feitian.sched.core import Grant, Preempt, Revoke, SendGrant, Shape
from feitian.security import SamePrincipalServer

__all__ = ["RECOVERY_S", "JobMaster", "JobStatus", "main"]

log = logging.getLogger("feitian.job.master")

RECOVERY_S = 10.0  # a restarted JobMaster waits this long at most for its workers' hellos
STATUS_EVERY_S = 1.0
WORKER_SILENT_S = 60.0  # a worker that has not polled for this long is lost
MAX_WORKER_RUNS = 64  # attempts handed to one worker in one poll reply
_NS = 1_000_000_000


class JobStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``ROOT/status.json``: what ``feitian job status`` shows."""

    job: str
    name: str
    state: str  # starting, running, succeeded, failed
    epoch: int = 0
    detail: str = ""
    tasks: list[TaskProgress] = msgspec.field(default_factory=list)  # per task: done, running, failed, backups
    workers: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0
    ended_at: float = 0.0
    blacklisted: list[str] = msgspec.field(default_factory=list)
    master_machine: str = ""  # where the JobMaster runs, and its pid there
    master_pid: int = 0


@dataclass
class _Worker:
    worker_id: str
    task: str
    machine: str
    grant: Grant
    unit: str
    runs: list[TaskRun] = field(default_factory=list)
    cancels: list[AttemptRef] = field(default_factory=list)
    stop: bool = False
    last_seen: int = 0  # monotonic ns
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def worker_id_of(grant_id: int) -> str:
    return f"w{grant_id}"


class JobMaster:
    def __init__(
        self, env: AppEnvironment, root: str, *, python: str = sys.executable, clock: Clock | None = None
    ) -> None:
        self.env = env
        self.clock = clock or MonotonicClock()
        self.root = root.rstrip("/")
        self.job_id = self.root.rsplit("/", 1)[-1]
        self.python = python
        self.rpc = env.rpc_client("jobmaster")
        self.dfs = env.dfs(self.rpc)
        self.am = AppMaster.from_env()
        self.spec: JobSpec | None = None
        self.tasks: dict[str, TaskSpec] = {}
        self.splits: dict[str, list[Split]] = {}
        self.core: JobCore | None = None
        self.workers: dict[str, _Worker] = {}
        self.released: dict[str, _Worker] = {}  # told to stop; their grants go back when they end
        self.unit_task: dict[str, str] = {}
        self.outstanding: dict[str, int] = {}  # unit -> workers asked for and not yet granted
        self.effects: asyncio.Queue[list[Effect]] = asyncio.Queue()
        self.finished: JobFinished | None = None
        self.done_event = asyncio.Event()
        self.hellos: dict[str, WorkerHello] = {}  # during recovery
        self.recovering = False
        self.recovered = asyncio.Event()
        self.changed = asyncio.Event()  # a hello during recovery, a worker told to stop
        self.blacklisted: list[str] = []
        self.started_at = self.clock.wall_ns() / _NS
        self.server: Server | None = None
        self.address = ""

    # == setup ========================================================================================================

    def _now(self) -> int:
        return self.clock.monotonic_ns()

    async def _read_optional(self, path: str) -> bytes | None:
        try:
            data: bytes = await self.dfs.read(path)
        except NotFoundError:
            return None
        return data

    async def _write(self, path: str, data: bytes) -> None:
        """Replace ``path`` atomically: written under a name of its own in ``ROOT/tmp`` (a JobMaster killed while
        writing leaves a file whose lease a fixed name would trip the next one on), then renamed over it."""
        temp = f"{self.root}/tmp/{path.rsplit('/', 1)[-1]}.{secrets.token_hex(6)}"
        await self.dfs.write_file(temp, data, replication=0)
        await self.dfs.rename(temp, path, overwrite=True)

    async def _load(self) -> None:
        await self.dfs.mkdir(f"{self.root}/tmp", parents=True)  # where _write puts files before renaming them
        spec = decode_job(await self.dfs.read(f"{self.root}/job.json"), source=f"pangu:{self.root}/job.json")
        self.spec = spec
        self.tasks = {t.name: effective_task(spec, t) for t in spec.tasks}
        for pipe in spec.pipes:
            if pipe.pattern == "range":
                raise InvalidArgumentError(f"pipe {pipe.from_} -> {pipe.to}: range pipes are not run yet")
        for name, task in self.tasks.items():
            if task.code.operator is not None:
                raise InvalidArgumentError(f"task {name}: operators are not run by TaskWorkers yet")
        self.splits = await resolve_splits(self.dfs, spec)
        graph = build_graph(spec, self.splits)
        try:  # machines' racks, for rack locality (needs read on dfs:/, which a job is not always given)
            racks = {s.server_id: s.rack for s in await self.dfs.servers()}
        except PermissionDeniedError:
            racks = {}
        snapshot = await self._read_optional(f"{self.root}/snapshot")
        if snapshot is None:
            self.core = JobCore(graph, racks=racks)
        else:
            self.core = JobCore.restore(graph, snapshot, racks=racks)
            self.recovering = True
        await self._write(f"{self.root}/snapshot", self.core.snapshot())  # a later restart gets a newer epoch

    async def _serve(self) -> None:
        tls = self.env.tls()
        security = SamePrincipalServer(tls) if tls is not None else None
        server = self.server = Server(ServerConfig(name=f"jobmaster-{self.job_id}"), security=security)
        server.add_handler(WorkerHello, self._hello)
        server.add_handler(WorkerPoll, self._poll)
        bind = os.environ.get("FEITIAN_JOB_BIND", "tcp://127.0.0.1:0")
        self.address = (await server.start([bind]))[0]
        await self._write(f"{self.root}/master", self.address.encode())

    # == the run ======================================================================================================

    async def run(self) -> int:
        try:
            await self._load()
            await self._serve()
            await self.am.register()
            core = self.core
            assert core is not None
            if self.recovering:
                await self._recover()
            self.recovered.set()
            loop = asyncio.get_running_loop()
            tasks = [
                loop.create_task(self._carry_out_loop()),
                loop.create_task(self._fuxi_loop()),
                loop.create_task(self._tick_loop()),
                loop.create_task(self._status_loop()),
            ]
            self._feed(core.start(self._now()))
            await self.done_event.wait()
            await self._finish()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert self.finished is not None
            return 0 if self.finished.ok else 1
        finally:
            if self.server is not None:
                await self.server.stop(grace_s=1.0)
            await self.am.close()
            await self.rpc.close()

    async def _recover(self) -> None:
        """Take back the workers that still run on the grants the application holds (FUXI-11)."""
        core = self.core
        assert core is not None
        held = {worker_id_of(g.grant_id): g for g in self.am.held.values() if g.unit != AM_UNIT}
        await self._until(lambda: set(held) <= set(self.hellos), RECOVERY_S)
        now = self._now()
        for worker_id, hello in self.hellos.items():
            grant = held.get(worker_id)
            if grant is None or hello.task not in self.tasks:
                continue
            finished = hello.finished[0] if hello.finished else None
            report = WorkerReport(
                worker_id=worker_id,
                task=hello.task,
                machine=hello.machine,
                running=hello.running[0] if hello.running else None,
                finished=None
                if finished is None
                else FinishedAttempt(finished.ref, finished.output, finished.processed, finished.duration_ns),
            )
            self._add_worker(worker_id, hello.task, grant, grant.unit)
            self._feed(core.worker_report(now, report))
        for worker_id, grant in held.items():
            if worker_id not in self.workers:  # its worker is gone (or did not say hello in time)
                with contextlib.suppress(FeitianError):
                    await self.am.stop_worker(grant.machine, worker_id, grace_s=1.0)
                await self.am.give_back([grant.grant_id])
        self.recovering = False
        self.recovered.set()

    async def _until(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Wait until ``condition`` holds (checked whenever ``changed`` is set) or ``timeout_s`` passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not condition():
                    self.changed.clear()
                    await self.changed.wait()

    def _add_worker(self, worker_id: str, task: str, grant: Grant, unit: str) -> _Worker:
        worker = _Worker(worker_id, task, grant.machine, grant, unit, last_seen=self._now())
        self.workers[worker_id] = worker
        return worker

    def _feed(self, effects: list[Effect]) -> None:
        """Effects that concern one worker are queued for its next poll at once; the rest are carried out in
        order by the carry-out loop."""
        rest: list[Effect] = []
        for effect in effects:
            if isinstance(effect, StartInstance):
                worker = self.workers.get(effect.worker_id)
                if worker is not None:
                    worker.runs.append(self._task_run(effect.ref))
                    worker.wake.set()
            elif isinstance(effect, CancelAttempt):
                worker = self.workers.get(effect.worker_id)
                if worker is not None:
                    worker.cancels.append(effect.ref)
                    worker.wake.set()
                rest.append(effect)  # and its result file is removed
            else:
                rest.append(effect)
        if rest:
            self.effects.put_nowait(rest)

    # == what an attempt is given =====================================================================================

    def _task_run(self, ref: AttemptRef) -> TaskRun:
        assert self.spec is not None
        task = self.tasks[ref.task]
        split = None
        if task.inputs is not None:
            s = self.splits[ref.task][ref.index]
            split = InputSplit(s.path, s.offset, s.length)
        inputs: list[InputEdge] = []
        outputs: list[OutputEdge] = []
        core = self.core
        assert core is not None
        for k, pipe in enumerate(self.spec.pipes):
            name = f"p{k}"
            if pipe.to == ref.task:
                producers = core.graph.tasks[pipe.from_].instances
                if pipe.pattern == "1:1":
                    inputs.append(InputEdge(name, [ref.index], 0))
                elif pipe.pattern == "1:N":
                    inputs.append(InputEdge(name, list(range(producers)), 0))
                else:
                    inputs.append(InputEdge(name, list(range(producers)), ref.index, pipe.sort))
            if pipe.from_ == ref.task:
                consumers = core.graph.tasks[pipe.to].instances
                if pipe.pattern == "hash":
                    outputs.append(OutputEdge(name, "hash", consumers, pipe.sort))
                else:
                    outputs.append(OutputEdge(name, "single", 1, pipe.sort))
        result = None
        if task.output is not None:
            result = ResultOutput(
                path=f"{task.output.dir.rstrip('/')}/part-{ref.index:05d}",
                temp=self._temp(ref),
                replication=task.output.replication or 0,
            )
        return TaskRun(ref=ref, code=task.code, split=split, inputs=inputs, outputs=outputs, result=result)

    def _temp(self, ref: AttemptRef) -> str:
        return f"{self.root}/tmp/{ref.task}/{ref.index}.{ref.epoch}.{ref.attempt}"

    # == workers' calls ===============================================================================================

    async def _hello(self, ctx: CallContext, req: WorkerHello) -> HelloReply:
        core = self.core
        epoch = core.epoch if core is not None else 0
        if self.recovering:
            self.hellos[req.worker_id] = req
            self.changed.set()
            return HelloReply(epoch, True)
        worker = self.workers.get(req.worker_id)
        if worker is None:
            return HelloReply(epoch, False)
        worker.last_seen = self._now()
        assert core is not None
        now = self._now()
        effects: list[Effect] = []
        for done in req.finished:  # finished while this JobMaster's address was not known to the worker
            effects += core.attempt_finished(now, req.worker_id, done.ref, done.output, done.processed)
        self._feed(effects)
        return HelloReply(epoch, True)

    async def _poll(self, ctx: CallContext, req: WorkerPoll) -> PollReply:
        core = self.core
        assert core is not None
        await self.recovered.wait()  # the core starts once the workers' reports are in
        worker = self.workers.get(req.worker_id) or self.released.get(req.worker_id)
        if worker is None:
            return PollReply(core.epoch, stop=True)
        worker.last_seen = self._now()
        now = self._now()
        effects: list[Effect] = []
        for done in req.done:
            effects += core.attempt_finished(now, req.worker_id, done.ref, done.output, done.processed)
        for failed in req.failed:
            effects += core.attempt_failed(now, req.worker_id, failed.ref, failed.error)
        if req.cancelled:
            effects += core.worker_idle(now, req.worker_id)
        for progress in req.progress:
            effects += core.attempt_progress(now, req.worker_id, progress.ref, progress.processed)
        self._feed(effects)
        wait_s = min(max(req.wait_s, 0.0), MAX_POLL_WAIT_S)
        if not (worker.runs or worker.cancels or worker.stop) and wait_s > 0:
            worker.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await worker.wake.wait()
        runs, worker.runs = worker.runs[:MAX_WORKER_RUNS], worker.runs[MAX_WORKER_RUNS:]
        cancels, worker.cancels = worker.cancels, []
        if worker.stop and self.workers.get(worker.worker_id) is worker:  # told: it exits now
            del self.workers[worker.worker_id]
            self.changed.set()
        return PollReply(core.epoch, runs, cancels, worker.stop)

    # == carrying out the core's effects ==============================================================================

    async def _carry_out_loop(self) -> None:
        while True:
            effects = await self.effects.get()
            while not self.effects.empty():
                effects += self.effects.get_nowait()
            commits = [e for e in effects if isinstance(e, CommitAttempt)]
            if commits:  # durable before carried out: a restart must not commit another attempt
                core = self.core
                assert core is not None
                await self._write(f"{self.root}/snapshot", core.snapshot())
            for effect in effects:
                try:
                    await self._carry_out(effect)
                except FeitianError as exc:
                    log.warning("carrying out %s failed: %s", type(effect).__name__, exc)

    async def _carry_out(self, effect: Effect) -> None:
        if isinstance(effect, CommitAttempt):
            await self._commit(effect.ref)
        elif isinstance(effect, CancelAttempt):
            with contextlib.suppress(NotFoundError):
                await self.dfs.delete(self._temp(effect.ref))
        elif isinstance(effect, WantWorkers):
            await self._want(effect)
        elif isinstance(effect, ReleaseWorker):
            await self._release(effect.worker_id)
        elif isinstance(effect, BlacklistMachine):
            what = f"task {effect.task}" if effect.task else "the job"
            log.warning("machine %s blacklisted for %s after %d failures", effect.machine, what, effect.failures)
            if effect.task is None:
                self.blacklisted.append(effect.machine)
        elif isinstance(effect, JobFinished):
            self.finished = effect
            self.done_event.set()

    async def _commit(self, ref: AttemptRef) -> None:
        task = self.tasks[ref.task]
        if task.output is None:
            return  # its records went to streamline, published by the worker
        final = f"{task.output.dir.rstrip('/')}/part-{ref.index:05d}"
        temp = self._temp(ref)
        await self.dfs.mkdir(task.output.dir, parents=True)
        try:
            await self.dfs.rename(temp, final)
        except AlreadyExistsError:
            if await self.dfs.exists(temp):  # a result of an earlier epoch's commit that was not recorded
                await self.dfs.rename(temp, final, overwrite=True)
        except NotFoundError:
            if not await self.dfs.exists(final):
                raise
            # committed before a restart: the same attempt's file is in place

    async def _want(self, effect: WantWorkers) -> None:
        self.unit_task[effect.unit] = effect.task
        if effect.delta > 0:
            shape = Shape.of(dict(self.core.graph.tasks[effect.task].resources) if self.core else {})
            await self.am.ask(effect.unit, effect.delta, shape, effect.locality)
        elif effect.delta < 0 and effect.unit in self.am.units:
            await self.am.cancel(effect.unit, -effect.delta)

    async def _release(self, worker_id: str) -> None:
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        worker.stop = True
        worker.wake.set()
        self.released[worker_id] = worker

    async def _start_worker(self, grant: Grant) -> None:
        core = self.core
        assert core is not None
        task = self.unit_task.get(grant.unit)
        if task is None or self.finished is not None:
            await self.am.give_back([grant.grant_id])
            return
        worker_id = worker_id_of(grant.grant_id)
        code = self.tasks[task].code
        command = [self.python, "-m", "feitian.job.worker", self.root, task, worker_id]
        worker = self._add_worker(worker_id, task, grant, grant.unit)
        try:
            await self.am.start_worker(grant, worker_id, command, package=code.package or "")
        except FeitianError as exc:
            log.warning("could not start a worker of %s on %s: %s", task, grant.machine, exc)
            self.workers.pop(worker_id, None)
            await self.am.give_back([grant.grant_id])
            self._feed(core.worker_started(self._now(), worker_id, task, grant.machine, grant.unit))
            self._feed(core.worker_lost(self._now(), worker_id))
            return
        self._feed(core.worker_started(self._now(), worker.worker_id, task, grant.machine, grant.unit))

    # == Fuxi, time, status ===========================================================================================

    async def _fuxi_loop(self) -> None:
        while True:
            for event in await self.am.poll(5.0):
                await self._fuxi_event(event)

    async def _fuxi_event(self, event: Any) -> None:
        core = self.core
        assert core is not None
        if isinstance(event, SendGrant):
            await self._start_worker(event.grant)
        elif isinstance(event, WorkerEnded):
            worker_id = event.proc_id.rsplit(".w.", 1)[-1]
            released = self.released.pop(worker_id, None)
            if released is not None:
                await self.am.give_back([released.grant.grant_id])
                return
            worker = self.workers.pop(worker_id, None)
            if worker is not None:
                log.warning("worker %s on %s ended %s: %s", worker_id, worker.machine, event.state, event.detail)
                await self.am.give_back([worker.grant.grant_id])
                self._feed(core.worker_lost(self._now(), worker_id))
        elif isinstance(event, Revoke | Preempt):
            worker_id = worker_id_of(event.grant.grant_id)
            worker = self.workers.pop(worker_id, None)
            if worker is not None:
                if isinstance(event, Preempt):
                    with contextlib.suppress(FeitianError):
                        await self.am.stop_worker(worker.machine, worker_id, grace_s=1.0)
                    await self.am.give_back([worker.grant.grant_id])
                self._feed(core.worker_lost(self._now(), worker_id))

    async def _tick_loop(self) -> None:
        core = self.core
        assert core is not None
        while True:
            now = self._now()
            self._feed(core.tick(now))
            for worker in list(self.workers.values()):
                if now - worker.last_seen > WORKER_SILENT_S * _NS:
                    log.warning(
                        "worker %s on %s silent for %.0fs: lost", worker.worker_id, worker.machine, WORKER_SILENT_S
                    )
                    self.workers.pop(worker.worker_id, None)
                    self.released[worker.worker_id] = worker
                    with contextlib.suppress(FeitianError):
                        await self.am.stop_worker(worker.machine, worker.worker_id, grace_s=1.0)
                    self._feed(core.worker_lost(now, worker.worker_id))
            deadline = core.next_deadline_ns()
            wait = 0.5 if deadline is None else min(0.5, max(0.01, (deadline - self._now()) / _NS))
            await self.clock.sleep(wait)

    def status(self, state: str, detail: str = "") -> JobStatus:
        core = self.core
        assert self.spec is not None
        return JobStatus(
            job=self.job_id,
            name=self.spec.name,
            state=state,
            epoch=core.epoch if core else 0,
            detail=detail,
            tasks=core.progress() if core else [],
            workers=len(self.workers),
            started_at=self.started_at,
            updated_at=self.clock.wall_ns() / _NS,
            ended_at=self.clock.wall_ns() / _NS if state in ("succeeded", "failed") else 0.0,
            blacklisted=list(self.blacklisted),
            master_machine=self.env.machine,
            master_pid=os.getpid(),
        )

    async def _status_loop(self) -> None:
        last: JobStatus | None = None
        while True:
            status = self.status("running")
            if last is None or msgspec.structs.replace(status, updated_at=last.updated_at) != last:
                with contextlib.suppress(FeitianError):  # written when something but the time changed
                    await self._write(f"{self.root}/status.json", msgspec.json.encode(status))
                    last = status
            await self.clock.sleep(STATUS_EVERY_S)

    async def _finish(self) -> None:
        finished = self.finished
        assert finished is not None
        for worker in list(self.workers.values()):
            worker.stop = True
            worker.wake.set()
        state = "succeeded" if finished.ok else "failed"
        try:
            await self._write(f"{self.root}/status.json", msgspec.json.encode(self.status(state, finished.reason)))
        except FeitianError as exc:  # the job's outcome stands; only its last view is missing
            log.warning("could not write the final status: %s", exc)
        # The workers exit at their next poll (a few seconds at most); what is left is stopped with the application.
        await self._until(lambda: not self.workers, 5.0)
        for path in (f"{self.root}/shuffle", f"{self.root}/tmp"):
            with contextlib.suppress(NotFoundError):
                await self.dfs.delete(path, recursive=True)


async def _main(argv: list[str]) -> int:
    return await JobMaster(AppEnvironment.from_env(), argv[0]).run()


def main() -> None:
    run_program(_main, "python -m feitian.job.master ROOT", 1)


if __name__ == "__main__":
    main()
