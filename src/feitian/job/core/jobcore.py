"""The JobMaster's scheduling core (FUXI-7..11). Pure: no I/O, time as ``now_ns``.

**Driving it.** The JobMaster owns one :class:`JobCore`. Inputs are method calls; each returns the effects it
caused (records.py). ``tick(now_ns)`` does time-driven work — delay scheduling relaxing, idle workers released,
slow instances judged for backups — and the driver calls it on a timer (:meth:`JobCore.next_deadline_ns`).
Call order: ``start`` once (a fresh core: after construction; a restored core: after the workers' reports), then
any inputs. Events about attempts or workers the core no longer knows (a cancelled attempt finishing, a worker
reported lost twice) are stale and ignored; naming a task the job does not have is an InvalidArgumentError.

**Instances.** An instance is *waiting* until its inputs are done (graph.py: a ``1:1`` producer instance, or
every instance of a broadcast/partitioned producer), then *runnable*, *running* (one attempt, or two when a
backup runs), *done* (one attempt committed) or *failed* (out of attempts: the job fails naming it).

**Workers** belong to a task. The core asks for them incrementally (:class:`WantWorkers`, per task and preferred
machine) — one per runnable instance or wanted backup, less the task's idle workers, up to
``max_workers_per_task`` — gives an idle worker the task's next instance (dispatch.py), keeps idle workers
``worker_idle_keep_ns`` for instances still to come, and releases the rest (:class:`ReleaseWorker`).

**Failures.** A failed attempt (or a lost worker's) is retried while the task's ``max_attempts`` allows,
avoiding the machines it failed on for a while; a backup (dispatch.slow_criteria) counts as an attempt. The first
attempt to finish is committed (:class:`CommitAttempt`), the other cancelled (:class:`CancelAttempt`). A machine
that failed ``task_blacklist_failures`` attempts of a task gets no more of that task; one blacklisted for
``job_blacklist_tasks`` tasks gets none of the job (:class:`BlacklistMachine`, task None: report it).

**Restart (FUXI-11).** :meth:`JobCore.snapshot` encodes finished instances (snapshot.py). ``restore`` builds a
core in the next epoch that knows them; the driver persists its snapshot at once (so a later restart uses a
newer epoch), feeds :meth:`JobCore.worker_report` for every worker that reports, then calls ``start``: running
attempts whose inputs are done are adopted, finished ones committed, and only the rest is run again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from feitian.errors import InvalidArgumentError
from feitian.job.core import dispatch, recovery
from feitian.job.core.graph import EdgeDef, JobGraph, Pattern
from feitian.job.core.policy import DEFAULT_JOB_POLICY, JobPolicy
from feitian.job.core.records import (
    AttemptRef,
    BlacklistMachine,
    CancelAttempt,
    CancelReason,
    CommitAttempt,
    Effect,
    JobFinished,
    ReleaseReason,
    ReleaseWorker,
    StartInstance,
    TaskProgress,
    WantWorkers,
    WorkerReport,
)
from feitian.job.core.snapshot import decode, encode
from feitian.job.core.state import Attempt, Instance, Phase, RunQueue, Task, Worker, WorkerPhase
from feitian.sched.core import Locality

__all__ = ["JobCore"]


class JobCore:
    """See the module docstring; docs/jobs-core.md for the model and the policy knobs."""

    def __init__(
        self,
        graph: JobGraph,
        policy: JobPolicy = DEFAULT_JOB_POLICY,
        racks: Mapping[str, str] | None = None,
        *,
        epoch: int = 1,
    ) -> None:
        self.graph = graph
        self.policy = policy.validate()
        self.racks: dict[str, str] = dict(racks or {})
        self.epoch = epoch
        self.tasks: dict[str, Task] = {name: Task(graph.tasks[name]) for name in graph.order}
        self._one_to_one: dict[str, list[str]] = {name: [] for name in graph.order}  # producer -> 1:1 consumers
        self._after_all: dict[str, list[str]] = {name: [] for name in graph.order}  # producer -> other consumers
        for edge in graph.edges:
            (self._one_to_one if edge.pattern is Pattern.ONE_TO_ONE else self._after_all)[edge.src].append(edge.dst)
        self.workers: dict[str, Worker] = {}
        self.job_blacklist: dict[str, int] = {}  # machine -> step it was blacklisted for the job
        self.task_blacklisted_at: dict[tuple[str, str], int] = {}  # (task, machine) -> step
        self.commits: dict[tuple[str, int], int] = {}  # commits made by this core (epoch), per instance
        self.started = False
        self.finished: JobFinished | None = None
        self.step = 0  # inputs handled so far
        self.now_ns = 0  # the latest time an input carried
        self._out: list[Effect] = []
        self._dirty: dict[str, Task] = {}
        self._next_backup_check_ns = 0

    # -- construction from a snapshot (recovery.py) ------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        graph: JobGraph,
        data: bytes,
        policy: JobPolicy = DEFAULT_JOB_POLICY,
        racks: Mapping[str, str] | None = None,
        commits: Iterable[CommitAttempt] = (),
    ) -> JobCore:
        """A core in the epoch after the snapshot's that knows its finished instances (checked against
        ``graph``), plus the ``commits`` journaled after that snapshot (in order; the first for an instance
        counts). Feed it the workers' reports, then call :meth:`start`."""
        snap = decode(graph, data)
        core = cls(graph, policy, racks, epoch=snap.epoch + 1)
        recovery.load(core, snap, commits)
        return core

    def snapshot(self) -> bytes:
        """Finished instances, failed attempts of the others, blacklists, the epoch (snapshot.py)."""
        return encode(recovery.build(self))

    # -- inputs -------------------------------------------------------------------------------------------------

    def start(self, now_ns: int) -> list[Effect]:
        """Begin scheduling: instances whose inputs are done become runnable, workers are asked for. On a
        restored core, adopted attempts whose inputs are not all done are cancelled first."""
        if self.started:
            raise InvalidArgumentError("job core: start() was already called")
        self.started = True
        self._begin()
        self._next_backup_check_ns = now_ns + self.policy.backup_check_interval_ns
        for task in self.tasks.values():
            for inst in task.instances:
                if inst.phase is Phase.RUNNING and self._missing(inst):
                    for attempt in inst.running:
                        self._cancel(attempt, CancelReason.NOT_ADOPTED)
                    inst.running.clear()
                    task.running.pop(inst.index, None)
                    task.backup_wanted.pop(inst.index, None)
                    inst.phase = Phase.WAITING
                if inst.phase is Phase.WAITING:
                    inst.missing = self._missing(inst)
                    if inst.missing == 0:
                        self._make_runnable(inst, now_ns)
            self._dirty[task.name] = task
        self._maybe_finish_ok()
        return self._settle(now_ns)

    def set_racks(self, racks: Mapping[str, str]) -> None:
        """Learn more machines' racks (instances that become runnable later use them)."""
        self.racks.update(racks)

    def worker_started(self, now_ns: int, worker_id: str, task: str, machine: str, unit: str) -> list[Effect]:
        """A worker of ``task`` started on ``machine`` on a grant of demand ``unit`` (a :class:`WantWorkers`
        unit); it is idle."""
        self._begin()
        t = self._task(task)
        if worker_id in self.workers:
            raise InvalidArgumentError(
                f"worker {worker_id!r}: already known (of task {self.workers[worker_id].task.name!r})"
            )
        if t.outstanding.get(unit, 0) > 0:
            t.outstanding[unit] -= 1
        self._add_worker(now_ns, worker_id, t, machine)
        return self._settle(now_ns)

    def worker_report(self, now_ns: int, report: WorkerReport) -> list[Effect]:
        """A worker reports itself after a JobMaster restart (FUXI-11): it is adopted with the attempt it runs
        (if that instance may run: inputs done at ``start``, not done yet, at most one other attempt) and the
        attempt it finished is committed if its instance is not done yet."""
        self._begin()
        task = self.tasks.get(report.task)
        if task is None:
            self._out.append(ReleaseWorker(report.worker_id, report.task, ReleaseReason.UNKNOWN))
            return self._settle(now_ns)
        if report.worker_id in self.workers:
            return self._settle(now_ns)  # reported twice
        worker = self._add_worker(now_ns, report.worker_id, task, report.machine)
        if report.finished is not None:
            recovery.adopt_finished(self, now_ns, worker, report.finished)
        if report.running is not None:
            recovery.adopt_running(self, now_ns, worker, report.running, report)
        return self._settle(now_ns)

    def worker_lost(self, now_ns: int, worker_id: str) -> list[Effect]:
        """The worker is gone (its process or machine died, or its grant was revoked); its attempt failed."""
        self._begin()
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return self._settle(now_ns)
        task = worker.task
        task.workers.pop(worker_id, None)
        task.idle.pop(worker_id, None)
        attempt = worker.attempt
        if worker.phase is WorkerPhase.BUSY and attempt is not None:
            inst = task.instances[attempt.ref.index]
            inst.running.remove(attempt)
            task.failed_attempts += 1
            self._attempt_lost(now_ns, inst, attempt, f"worker {worker_id} on {worker.machine} lost")
        self._dirty[task.name] = task
        return self._settle(now_ns)

    def worker_idle(self, now_ns: int, worker_id: str) -> list[Effect]:
        """A worker whose attempt was cancelled is free again."""
        self._begin()
        worker = self.workers.get(worker_id)
        if worker is not None and worker.phase is WorkerPhase.CANCELLING:
            self._set_idle(worker, now_ns)
        return self._settle(now_ns)

    def attempt_progress(self, now_ns: int, worker_id: str, ref: AttemptRef, processed: int) -> list[Effect]:
        """The attempt has processed ``processed`` bytes or records so far (the backup criteria use it)."""
        self._begin()
        attempt = self._running(worker_id, ref)
        if attempt is not None:
            attempt.processed = max(attempt.processed, processed)
            attempt.last_processed_ns = now_ns
        return self._settle(now_ns)

    def attempt_finished(
        self, now_ns: int, worker_id: str, ref: AttemptRef, output: bytes = b"", processed: int = 0
    ) -> list[Effect]:
        """The attempt finished; ``output`` is opaque metadata the driver keeps with the instance (where its
        output is), ``processed`` its total. The first attempt of an instance to finish is committed."""
        self._begin()
        worker = self.workers.get(worker_id)
        attempt = self._running(worker_id, ref)
        if attempt is None:
            if worker is not None and worker.attempt is not None and worker.attempt.ref == ref:
                self._set_idle(worker, now_ns)  # a cancelled attempt finished before the cancel reached it
            return self._settle(now_ns)
        inst = attempt.worker.task.instances[ref.index]
        inst.running.remove(attempt)
        self._set_idle(attempt.worker, now_ns)
        duration_ns = now_ns - attempt.started_ns
        self._commit(now_ns, inst, ref, worker_id, output, duration_ns, max(processed, attempt.processed))
        return self._settle(now_ns)

    def attempt_failed(self, now_ns: int, worker_id: str, ref: AttemptRef, error: str) -> list[Effect]:
        """The attempt failed (its code raised, its output could not be written...); the worker stays."""
        self._begin()
        worker = self.workers.get(worker_id)
        attempt = self._running(worker_id, ref)
        if attempt is None or worker is None:
            if worker is not None and worker.attempt is not None and worker.attempt.ref == ref:
                self._set_idle(worker, now_ns)  # a cancelled attempt failed before the cancel reached it
            return self._settle(now_ns)
        task = worker.task
        inst = task.instances[ref.index]
        inst.running.remove(attempt)
        self._set_idle(worker, now_ns)
        task.failed_attempts += 1
        self._attempt_lost(now_ns, inst, attempt, error)
        self._machine_failed(task, worker.machine)
        return self._settle(now_ns)

    def tick(self, now_ns: int) -> list[Effect]:
        """Time-driven work: delay scheduling, idle workers released, slow instances judged for backups."""
        self._begin()
        if self.started and self.finished is None:
            if now_ns >= self._next_backup_check_ns:
                self._next_backup_check_ns = now_ns + self.policy.backup_check_interval_ns
                self._judge_slow(now_ns)
            for task in self.tasks.values():
                if task.idle:
                    self._dirty[task.name] = task
        return self._settle(now_ns)

    # -- queries ------------------------------------------------------------------------------------------------

    def next_deadline_ns(self) -> int | None:
        """When :meth:`tick` may have work to do (None: nothing time-driven is pending)."""
        if not self.started or self.finished is not None:
            return None
        due: list[int] = []
        p = self.policy
        backups_due = any(t.running and t.spec.backups for t in self.tasks.values())
        for task in self.tasks.values():
            if not task.idle:
                continue
            # the oldest waiting instances' relaxations: overall, and on the racks of the idle workers
            oldest = next(task.local_queue.scan(task.instances), None)
            if oldest is not None:
                waits = (p.rack_wait_ns, p.any_wait_ns, p.retry_elsewhere_wait_ns)
                due.extend(oldest.ready_ns + wait for wait in waits)
            for rack in {self.racks.get(w.machine) for w in task.idle.values()}:
                queue = task.by_rack.get(rack) if rack is not None else None
                first = next(queue.scan(task.instances), None) if queue is not None else None
                if first is not None:
                    due.append(first.ready_ns + p.rack_wait_ns)
            oldest = next(task.free_queue.scan(task.instances), None)
            if oldest is not None:
                due.append(oldest.ready_ns + p.retry_elsewhere_wait_ns)
            due.extend(worker.idle_since_ns + p.worker_idle_keep_ns for worker in task.idle.values())
            if task.backup_wanted:
                due.append(next(iter(task.backup_wanted.values())) + p.any_wait_ns)
        # Deadlines already passed are left out: tick could not act on them (the instance is excluded from the
        # idle workers' machines, or the worker is held); the backup check is always due at its time.
        future = [t for t in due if t > self.now_ns]
        if backups_due:
            future.append(self._next_backup_check_ns)
        return min(future) if future else None

    def progress(self) -> list[TaskProgress]:
        return [
            TaskProgress(t.name, t.spec.instances, t.done, len(t.running), t.failed_attempts, t.backups)
            for t in self.tasks.values()
        ]

    def instance_output(self, task: str, index: int) -> bytes | None:
        """The committed attempt's output metadata (None while the instance is not done)."""
        inst = self._task(task).instances[index]
        return inst.output if inst.committed is not None else None

    # -- internals: bookkeeping per input ----------------------------------------------------------------------

    def _begin(self) -> None:
        self.step += 1

    def _task(self, name: str) -> Task:
        task = self.tasks.get(name)
        if task is None:
            raise InvalidArgumentError(f"job core: no task {name!r} in the job")
        return task

    def _running(self, worker_id: str, ref: AttemptRef) -> Attempt | None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.phase is not WorkerPhase.BUSY or worker.attempt is None:
            return None
        return worker.attempt if worker.attempt.ref == ref else None

    def _add_worker(self, now_ns: int, worker_id: str, task: Task, machine: str) -> Worker:
        worker = Worker(worker_id, task, machine, now_ns)
        self.workers[worker_id] = worker
        task.workers[worker_id] = worker
        task.idle[worker_id] = worker
        if self._blacklisted(task, machine):
            task.rejects += 1
            if task.rejects >= self.policy.max_blacklist_rejects and self.finished is None:
                self._fail(
                    f"task {task.name!r}: {task.rejects} workers in a row were offered on machines blacklisted "
                    "for it (no machine left to run it)"
                )
        else:
            task.rejects = 0
        self._dirty[task.name] = task
        return worker

    def _set_idle(self, worker: Worker, now_ns: int) -> None:
        worker.phase = WorkerPhase.IDLE
        worker.attempt = None
        worker.idle_since_ns = now_ns
        worker.task.idle[worker.worker_id] = worker
        self._dirty[worker.task.name] = worker.task

    def _blacklisted(self, task: Task, machine: str) -> bool:
        return machine in task.blacklist or machine in self.job_blacklist

    # -- instances ----------------------------------------------------------------------------------------------

    def _missing(self, inst: Instance) -> int:
        missing = 0
        for edge in self.graph.upstream(inst.task.name):
            missing += self._edge_missing(edge, inst.index)
        return missing

    def _edge_missing(self, edge: EdgeDef, index: int) -> int:
        src = self.tasks[edge.src]
        if edge.pattern is Pattern.ONE_TO_ONE:
            return 0 if src.instances[index].phase is Phase.DONE else 1
        return 0 if src.done == src.spec.instances else 1

    def _make_runnable(self, inst: Instance, now_ns: int) -> None:
        task = inst.task
        inst.phase = Phase.RUNNABLE
        inst.ready_ns = now_ns
        inst.token += 1
        hosts = inst.hosts
        if hosts:
            task.local_queue.push(inst)
            racks = []
            for host in dict.fromkeys(hosts):
                task.by_host.setdefault(host, RunQueue()).push(inst)
                rack = self.racks.get(host)
                if rack is not None and rack not in racks:
                    racks.append(rack)
            inst.racks = tuple(racks)
            for rack in racks:
                task.by_rack.setdefault(rack, RunQueue()).push(inst)
            unit = f"{task.name}@{hosts[0]}"
            if unit not in task.units and len(task.units) >= self.policy.max_units_per_task:
                unit = task.name
        else:
            task.free_queue.push(inst)
            unit = task.name
        task.units.setdefault(unit, hosts[0] if unit != task.name else "")
        inst.unit = unit
        task.unit_runnable[unit] = task.unit_runnable.get(unit, 0) + 1
        self._dirty[task.name] = task

    def _take_runnable(self, inst: Instance) -> None:
        task = inst.task
        if inst.phase is not Phase.RUNNABLE:
            return
        # its queue entries die with the phase change below; only the live counts change here
        hosts = inst.hosts
        if hosts:
            task.local_queue.live -= 1
            for host in dict.fromkeys(hosts):
                queue = task.by_host[host]
                queue.live -= 1
                if not queue.live:
                    del task.by_host[host]
            for rack in inst.racks:
                queue = task.by_rack[rack]
                queue.live -= 1
                if not queue.live:
                    del task.by_rack[rack]
        else:
            task.free_queue.live -= 1
        task.unit_runnable[inst.unit] -= 1
        inst.phase = Phase.RUNNING
        self._dirty[task.name] = task

    def _mark_done(self, inst: Instance, ref: AttemptRef, output: bytes, duration_ns: int, processed: int) -> None:
        task = inst.task
        inst.phase = Phase.DONE
        inst.committed = ref
        inst.output = output
        inst.duration_ns = duration_ns
        inst.processed = processed
        task.done += 1
        task.done_duration_ns += duration_ns
        task.done_rate_sum += processed / duration_ns if duration_ns > 0 else 0.0
        task.running.pop(inst.index, None)
        task.backup_wanted.pop(inst.index, None)
        self._dirty[task.name] = task

    def _commit(
        self,
        now_ns: int,
        inst: Instance,
        ref: AttemptRef,
        worker_id: str,
        output: bytes,
        duration_ns: int,
        processed: int,
    ) -> None:
        for other in list(inst.running):
            self._cancel(other, CancelReason.LOST_RACE)
        inst.running.clear()
        self._take_runnable(inst)
        self._mark_done(inst, ref, output, duration_ns, processed)
        key = (inst.task.name, inst.index)
        self.commits[key] = self.commits.get(key, 0) + 1
        self._out.append(CommitAttempt(ref, worker_id, output, duration_ns, processed))
        if self.started:
            self._release_consumers(inst, now_ns)
        self._maybe_finish_ok()

    def _release_consumers(self, inst: Instance, now_ns: int) -> None:
        """``inst`` is done: consumers whose last missing input it was become runnable."""
        name = inst.task.name
        for dst in self._one_to_one[name]:
            consumer = self.tasks[dst].instances[inst.index]
            self._input_arrived(consumer, now_ns)
        if inst.task.done == inst.task.spec.instances:
            for dst in self._after_all[name]:
                for consumer in self.tasks[dst].instances:
                    self._input_arrived(consumer, now_ns)

    def _input_arrived(self, consumer: Instance, now_ns: int) -> None:
        if consumer.phase is not Phase.WAITING:
            return
        consumer.missing -= 1
        if consumer.missing == 0:
            self._make_runnable(consumer, now_ns)

    def _cancel(self, attempt: Attempt, reason: CancelReason) -> None:
        worker = attempt.worker
        worker.phase = WorkerPhase.CANCELLING
        worker.task.idle.pop(worker.worker_id, None)
        self._out.append(CancelAttempt(attempt.ref, worker.worker_id, reason))

    def _attempt_lost(self, now_ns: int, inst: Instance, attempt: Attempt, error: str) -> None:
        """An attempt of ``inst`` ended without output (already removed from ``inst.running``)."""
        task = inst.task
        inst.failures += 1
        inst.failed_machines.add(attempt.machine)
        inst.last_error = error
        task.backup_wanted.pop(inst.index, None)
        if inst.running or inst.phase is not Phase.RUNNING:
            return  # its other attempt still runs (or the instance is no longer running: a recovery leftover)
        task.running.pop(inst.index, None)
        if inst.attempts_used >= task.spec.max_attempts:
            inst.phase = Phase.FAILED
            if self.finished is None:
                self._fail(
                    f"task {task.name!r} instance {inst.index} failed {inst.attempts_used} attempts "
                    f"(max_attempts {task.spec.max_attempts}); last error: {error}"
                )
            return
        inst.phase = Phase.WAITING
        if self.started:
            self._make_runnable(inst, now_ns)

    def _machine_failed(self, task: Task, machine: str) -> None:
        count = task.machine_failures.get(machine, 0) + 1
        task.machine_failures[machine] = count
        if count < self.policy.task_blacklist_failures or machine in task.blacklist:
            return
        task.blacklist.add(machine)
        self.task_blacklisted_at[(task.name, machine)] = self.step
        self._out.append(BlacklistMachine(machine, task.name, count))
        tasks = [t for t in self.tasks.values() if machine in t.blacklist]
        if len(tasks) >= self.policy.job_blacklist_tasks and machine not in self.job_blacklist:
            self.job_blacklist[machine] = self.step
            total = sum(t.machine_failures.get(machine, 0) for t in self.tasks.values())
            self._out.append(BlacklistMachine(machine, None, total))
            self._dirty.update(self.tasks)

    # -- the end of every input: dispatch, release, demand ------------------------------------------------------

    def _settle(self, now_ns: int) -> list[Effect]:
        self.now_ns = max(self.now_ns, now_ns)
        if self.started and self.finished is None:
            for task in list(self._dirty.values()):
                self._dispatch(task, now_ns)
        if self.started or self.finished is not None:
            for task in list(self._dirty.values()):
                self._release_idle(task, now_ns)
                self._demand(task)
        self._dirty.clear()
        out, self._out = self._out, []
        return out

    def _dispatch(self, task: Task, now_ns: int) -> None:
        for worker in list(task.idle.values()):
            if self.finished is not None:
                return
            if self._blacklisted(task, worker.machine):
                continue
            inst = dispatch.pick_runnable(task, worker.machine, self.racks.get(worker.machine), now_ns, self.policy)
            backup = False
            if inst is None and task.backup_wanted:
                inst = dispatch.pick_backup(task, worker.machine, now_ns, self.policy)
                backup = inst is not None
            if inst is None:
                continue
            self._start_attempt(task, worker, inst, now_ns, backup)

    def _start_attempt(self, task: Task, worker: Worker, inst: Instance, now_ns: int, backup: bool) -> None:
        inst.attempts_used += 1
        ref = AttemptRef(task.name, inst.index, self.epoch, inst.attempts_used)
        attempt = Attempt(ref, worker, now_ns, backup, self.step)
        if backup:
            inst.backup_started = True
            task.backups += 1
            task.backup_wanted.pop(inst.index, None)
        else:
            self._take_runnable(inst)
        inst.running.append(attempt)
        task.running[inst.index] = None
        worker.phase, worker.attempt = WorkerPhase.BUSY, attempt
        del task.idle[worker.worker_id]
        self._out.append(StartInstance(worker.worker_id, worker.machine, ref, backup))

    def _release_idle(self, task: Task, now_ns: int) -> None:
        if not task.idle:
            return
        has_work = bool(task.local_queue.live or task.free_queue.live or task.backup_wanted) and self.finished is None
        more_later = task.remaining() > len(task.running) and self.finished is None
        for worker in list(task.idle.values()):
            if self.finished is not None:
                reason = ReleaseReason.JOB_ENDED
            elif self._blacklisted(task, worker.machine):
                reason = ReleaseReason.BLACKLISTED
            elif has_work or (more_later and now_ns - worker.idle_since_ns < self.policy.worker_idle_keep_ns):
                continue
            else:
                reason = ReleaseReason.NOT_NEEDED
            self._drop_worker(worker)
            self._out.append(ReleaseWorker(worker.worker_id, task.name, reason))

    def _drop_worker(self, worker: Worker) -> None:
        self.workers.pop(worker.worker_id, None)
        worker.task.workers.pop(worker.worker_id, None)
        worker.task.idle.pop(worker.worker_id, None)

    def _demand(self, task: Task) -> None:
        need = 0
        if self.started and self.finished is None:
            # Dispatch just ran: an idle worker left over is one that delay scheduling holds for an instance with
            # preferred hosts (it counts against those), or one that may not run what is left — a free instance
            # or a backup that avoids its machine — so those are asked for in full.
            local = max(0, task.local_queue.live - len(task.idle))
            need = local + task.free_queue.live + len(task.backup_wanted)
            need = max(0, min(need, self.policy.max_workers_per_task - len(task.workers)))
        desired: dict[str, int] = {}
        backups = min(need, len(task.backup_wanted))
        if backups:
            desired[task.name] = backups
        left = need - backups
        for unit, count in task.unit_runnable.items():
            if left <= 0:
                break
            take = min(count, left)
            if take:
                desired[unit] = desired.get(unit, 0) + take
                left -= take
        for unit in list(task.outstanding.keys() | desired.keys()):
            want, have = desired.get(unit, 0), task.outstanding.get(unit, 0)
            if want != have:
                host = task.units.get(unit, "")
                locality = Locality(machines=(host,)) if host else Locality()
                self._out.append(WantWorkers(task.name, unit, want - have, locality))
                task.outstanding[unit] = want

    def _judge_slow(self, now_ns: int) -> None:
        for task in self.tasks.values():
            if not task.spec.backups or not task.running or task.done == 0:
                continue
            for index in task.running:
                inst = task.instances[index]
                if (
                    len(inst.running) != 1
                    or inst.backup_started
                    or index in task.backup_wanted
                    or inst.attempts_used >= task.spec.max_attempts
                ):
                    continue
                if all(dispatch.slow_criteria(task, inst, now_ns, self.policy)):
                    task.backup_wanted[index] = now_ns
                    self._dirty[task.name] = task

    # -- the end of the job -------------------------------------------------------------------------------------

    def _maybe_finish_ok(self) -> None:
        if self.finished is None and self.started and all(t.done == t.spec.instances for t in self.tasks.values()):
            self.finished = JobFinished(True)
            self._out.append(self.finished)
            self._end()

    def _fail(self, reason: str) -> None:
        self.finished = JobFinished(False, reason)
        self._out.append(self.finished)
        for task in self.tasks.values():
            for index in list(task.running):
                inst = task.instances[index]
                for attempt in inst.running:
                    self._cancel(attempt, CancelReason.JOB_ENDED)
                inst.running.clear()
                inst.phase = Phase.WAITING  # never to run again
            task.running.clear()
            task.backup_wanted.clear()
        self._end()

    def _end(self) -> None:
        for worker in list(self.workers.values()):
            if worker.phase is WorkerPhase.IDLE:
                continue  # released by _release_idle below, like every idle worker
            if worker.phase is WorkerPhase.CANCELLING:
                self._drop_worker(worker)
                self._out.append(ReleaseWorker(worker.worker_id, worker.task.name, ReleaseReason.JOB_ENDED))
        self._dirty.update(self.tasks)
