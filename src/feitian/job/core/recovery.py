"""A JobMaster restart (FUXI-11), as functions over :class:`~feitian.job.core.jobcore.JobCore`: the snapshot
built from a core and loaded (with the commits journaled after it) into a new one, and the adoption of what
workers report.

A restored core knows the finished instances and the failed attempts of the others (the attempts running at
the snapshot are not counted there: they count again when their workers report them). A reported running
attempt is adopted unless its instance is done or failed, already has its two attempts (or had its backup), is
out of attempts, runs on a blacklisted machine, or (once started) its inputs are not all done; otherwise it is
cancelled (``not_adopted``). A reported finished attempt is committed unless its instance is done already.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from feitian.errors import InvalidArgumentError
from feitian.job.core.records import (
    AttemptRef,
    CancelAttempt,
    CancelReason,
    CommitAttempt,
    FinishedAttempt,
    WorkerReport,
)
from feitian.job.core.snapshot import SNAPSHOT_VERSION, DoneRecord, JobSnapshot, TaskSnapshot
from feitian.job.core.state import Attempt, Phase, Worker, WorkerPhase

if TYPE_CHECKING:
    from feitian.job.core.jobcore import JobCore

__all__ = ["adopt_finished", "adopt_running", "build", "load"]


def build(core: JobCore) -> JobSnapshot:
    tasks = []
    for task in core.tasks.values():
        done = tuple(
            DoneRecord(i.index, i.committed.epoch, i.committed.attempt, i.output, i.duration_ns, i.processed)
            for i in task.instances
            if i.committed is not None
        )
        failures = {i.index: i.failures for i in task.instances if i.committed is None and i.failures}
        tasks.append(
            TaskSnapshot(
                task.name,
                task.spec.instances,
                done,
                failures,
                task.failed_attempts,
                task.backups,
                dict(task.machine_failures),
                tuple(sorted(task.blacklist)),
            )
        )
    return JobSnapshot(SNAPSHOT_VERSION, core.epoch, tuple(tasks), tuple(sorted(core.job_blacklist)))


def load(core: JobCore, snap: JobSnapshot, commits: Iterable[CommitAttempt] = ()) -> None:
    """Put a (checked) snapshot and the commits journaled after it into a fresh core."""
    for ts in snap.tasks:
        task = core.tasks[ts.name]
        task.failed_attempts, task.backups = ts.failed_attempts, ts.backups
        task.machine_failures = dict(ts.machine_failures)
        task.blacklist = set(ts.blacklist)
        for machine in ts.blacklist:
            core.task_blacklisted_at[(task.name, machine)] = -1
        for index, failures in ts.failures.items():
            inst = task.instances[index]
            inst.failures = inst.attempts_used = failures
        for rec in ts.done:
            inst = task.instances[rec.index]
            ref = AttemptRef(task.name, rec.index, rec.epoch, rec.attempt)
            core._mark_done(inst, ref, rec.output, rec.duration_ns, rec.processed)
    core.job_blacklist = dict.fromkeys(snap.job_blacklist, -1)
    for commit in commits:
        ref = commit.ref
        owner = core.tasks.get(ref.task)
        if owner is None or not 0 <= ref.index < owner.spec.instances or ref.epoch >= core.epoch:
            raise InvalidArgumentError(f"job journal: commit of {ref} does not fit the job or its snapshot")
        inst = owner.instances[ref.index]
        if inst.committed is None:
            inst.failures = 0
            core._mark_done(inst, ref, commit.output, commit.duration_ns, commit.processed)
    for task in core.tasks.values():
        for inst in task.instances:
            if inst.phase is Phase.WAITING:
                inst.missing = core._missing(inst)


def adopt_finished(core: JobCore, now_ns: int, worker: Worker, fin: FinishedAttempt) -> None:
    ref = fin.ref
    task = worker.task
    if ref.task != task.name or not 0 <= ref.index < task.spec.instances:
        return
    inst = task.instances[ref.index]
    if inst.phase in (Phase.DONE, Phase.FAILED) or core.finished is not None:
        core._out.append(CancelAttempt(ref, worker.worker_id, CancelReason.NOT_ADOPTED))  # discard its output
        return
    core._commit(now_ns, inst, ref, worker.worker_id, fin.output, fin.duration_ns, fin.processed)


def adopt_running(core: JobCore, now_ns: int, worker: Worker, ref: AttemptRef, report: WorkerReport) -> None:
    task = worker.task
    ok = (
        ref.task == task.name
        and 0 <= ref.index < task.spec.instances
        and ref.epoch < core.epoch  # an attempt of this epoch is one the core started itself
        and core.finished is None
    )
    inst = task.instances[ref.index] if ok else None
    if (
        inst is None
        or inst.phase in (Phase.DONE, Phase.FAILED)
        or len(inst.running) >= 2
        or (inst.running and inst.backup_started)
        or inst.attempts_used >= task.spec.max_attempts
        or core._blacklisted(task, worker.machine)
        or (core.started and core._missing(inst))
    ):
        worker.attempt = Attempt(ref, worker, now_ns, False, core.step)
        core._cancel(worker.attempt, CancelReason.NOT_ADOPTED)
        return
    backup = bool(inst.running)
    started = report.started_ns if report.started_ns is not None else now_ns
    attempt = Attempt(ref, worker, started, backup, core.step)
    attempt.processed = report.processed
    if backup:
        inst.backup_started = True
    inst.attempts_used += 1
    core._take_runnable(inst)
    inst.phase = Phase.RUNNING
    inst.running.append(attempt)
    task.running[inst.index] = None
    worker.phase, worker.attempt = WorkerPhase.BUSY, attempt
    task.idle.pop(worker.worker_id, None)
