"""Typed records of the JobMaster core: attempt names, worker reports, and the effects the driver carries out.

An *attempt* is one run of one instance on one worker, named by :class:`AttemptRef` ``(task, index, epoch,
attempt)``: ``attempt`` counts from 1 per instance within one master *epoch* (a restored core runs in the next
epoch), so an attempt's name is unique over the whole job even across JobMaster restarts — the driver may name
an attempt's tentative output after it.

Effects (imperative): :class:`StartInstance`, :class:`CommitAttempt`, :class:`CancelAttempt`,
:class:`WantWorkers`, :class:`ReleaseWorker`, :class:`BlacklistMachine`, :class:`JobFinished`.
"""

from __future__ import annotations

import enum

import msgspec

from feitian.sched.core import Locality

__all__ = [
    "AttemptRef",
    "BlacklistMachine",
    "CancelAttempt",
    "CancelReason",
    "CommitAttempt",
    "Effect",
    "FinishedAttempt",
    "JobFinished",
    "ReleaseReason",
    "ReleaseWorker",
    "StartInstance",
    "TaskProgress",
    "WantWorkers",
    "WorkerReport",
]


class AttemptRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    task: str
    index: int
    epoch: int
    attempt: int

    def __str__(self) -> str:
        return f"{self.task}[{self.index}] attempt {self.epoch}.{self.attempt}"


class FinishedAttempt(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A finished attempt as a worker reports it after a JobMaster restart (the master may not have seen it)."""

    ref: AttemptRef
    output: bytes = b""
    processed: int = 0
    duration_ns: int = 0


class WorkerReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a worker tells a restarted JobMaster: who it is, where, and the attempt it runs or has finished (and
    not yet seen acknowledged). ``processed`` is the running attempt's progress so far."""

    worker_id: str
    task: str
    machine: str
    running: AttemptRef | None = None
    started_ns: int | None = None
    processed: int = 0
    finished: FinishedAttempt | None = None


# -- effects --------------------------------------------------------------------------------------------------------


class StartInstance(msgspec.Struct, frozen=True, tag=True):
    """Run the attempt on the (idle) worker. ``backup``: another attempt of the instance is still running."""

    worker_id: str
    machine: str
    ref: AttemptRef
    backup: bool = False


class CommitAttempt(msgspec.Struct, frozen=True, tag=True):
    """The attempt won: make its output the instance's output, atomically. Emitted once per instance per master
    epoch; after a restart a finished attempt a worker reports is committed again, so committing must be
    idempotent (the same attempt's output). The record is also what a driver may journal between snapshots
    (``JobCore.restore(..., commits=...)``): it carries everything the snapshot keeps of a done instance."""

    ref: AttemptRef
    worker_id: str
    output: bytes
    duration_ns: int = 0
    processed: int = 0


class CancelReason(enum.Enum):
    LOST_RACE = "lost_race"  # the other attempt of the instance finished first (its output is discarded)
    JOB_ENDED = "job_ended"  # the job finished or failed
    NOT_ADOPTED = "not_adopted"  # reported after a restart, but not runnable or not needed any more


class CancelAttempt(msgspec.Struct, frozen=True, tag=True):
    """Stop the attempt (if it still runs) and discard its tentative output; the worker reports
    ``worker_idle`` when it is free again."""

    ref: AttemptRef
    worker_id: str
    reason: CancelReason


class WantWorkers(msgspec.Struct, frozen=True, tag=True):
    """Change the outstanding worker demand of one unit by ``delta`` (FuxiMaster's incremental demand: the driver
    sends it as a ``DemandDelta`` of the unit, declaring the unit's locality the first time). Each grant of the
    unit consumes one outstanding worker: the driver names the unit in ``worker_started``."""

    task: str
    unit: str
    delta: int
    locality: Locality


class ReleaseReason(enum.Enum):
    NOT_NEEDED = "not_needed"  # the task has nothing left for it (after worker_idle_keep_ns when more may come)
    BLACKLISTED = "blacklisted"  # its machine may not run the task
    JOB_ENDED = "job_ended"
    UNKNOWN = "unknown"  # reported after a restart for a task the job does not have


class ReleaseWorker(msgspec.Struct, frozen=True, tag=True):
    """Stop the worker and return its grant."""

    worker_id: str
    task: str
    reason: ReleaseReason


class BlacklistMachine(msgspec.Struct, frozen=True, tag=True):
    """The machine gets no more instances of ``task`` (or, with ``task`` None, of the job: the driver reports it
    to FuxiMaster)."""

    machine: str
    task: str | None
    failures: int


class JobFinished(msgspec.Struct, frozen=True, tag=True):
    """The job ended: ``ok`` (every instance committed) or failed, with ``reason`` naming the instance."""

    ok: bool
    reason: str = ""


Effect = StartInstance | CommitAttempt | CancelAttempt | WantWorkers | ReleaseWorker | BlacklistMachine | JobFinished


class TaskProgress(msgspec.Struct, frozen=True):
    """The live view of one task: instances done and running, failed attempts, backups started."""

    task: str
    instances: int
    done: int
    running: int
    failed: int
    backups: int
