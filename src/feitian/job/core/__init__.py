"""The pure job core (FUXI-7..11): a job's DAG and, on it, the JobMaster's scheduling decisions.

No asyncio, sockets, clocks, randomness or file I/O: time is an argument. :mod:`feitian.job.core.graph` is the
DAG; :class:`JobCore` schedules it (jobcore.py: the model and the driver's duties; docs/jobs-core.md):

* inputs: ``start``, ``worker_started``, ``worker_report`` (after a restart), ``worker_lost``, ``worker_idle``,
  ``attempt_progress``, ``attempt_finished``, ``attempt_failed``, ``tick``; ``snapshot()`` / ``JobCore.restore``;
* effects: :class:`StartInstance`, :class:`CommitAttempt`, :class:`CancelAttempt`, :class:`WantWorkers`,
  :class:`ReleaseWorker`, :class:`BlacklistMachine`, :class:`JobFinished`.

:func:`check` lists broken invariants (tests run it after every step).
"""

from feitian.job.core.dispatch import slow_criteria
from feitian.job.core.graph import MAX_INSTANCES, MAX_TASKS, EdgeDef, JobGraph, Pattern, TaskDef, find_cycle
from feitian.job.core.invariants import check
from feitian.job.core.jobcore import JobCore
from feitian.job.core.policy import DEFAULT_JOB_POLICY, JobPolicy
from feitian.job.core.records import (
    AttemptRef,
    BlacklistMachine,
    CancelAttempt,
    CancelReason,
    CommitAttempt,
    Effect,
    FinishedAttempt,
    JobFinished,
    ReleaseReason,
    ReleaseWorker,
    StartInstance,
    TaskProgress,
    WantWorkers,
    WorkerReport,
)
from feitian.job.core.snapshot import SNAPSHOT_VERSION

__all__ = [
    "DEFAULT_JOB_POLICY",
    "MAX_INSTANCES",
    "MAX_TASKS",
    "SNAPSHOT_VERSION",
    "AttemptRef",
    "BlacklistMachine",
    "CancelAttempt",
    "CancelReason",
    "CommitAttempt",
    "EdgeDef",
    "Effect",
    "FinishedAttempt",
    "JobCore",
    "JobFinished",
    "JobGraph",
    "JobPolicy",
    "Pattern",
    "ReleaseReason",
    "ReleaseWorker",
    "StartInstance",
    "TaskDef",
    "TaskProgress",
    "WantWorkers",
    "WorkerReport",
    "check",
    "find_cycle",
    "slow_criteria",
]
