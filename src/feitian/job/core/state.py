"""The JobMaster core's internal records (mutable, ``__slots__``): instances, attempts, workers, tasks.

They belong to :class:`~feitian.job.core.jobcore.JobCore`; the invariant checker reads them.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator

from feitian.job.core.graph import TaskDef
from feitian.job.core.records import AttemptRef

__all__ = ["Attempt", "Instance", "Phase", "RunQueue", "Task", "Worker", "WorkerPhase"]


class Phase(enum.Enum):
    WAITING = "waiting"  # its inputs are not all done
    RUNNABLE = "runnable"  # inputs done, no attempt running
    RUNNING = "running"  # one attempt (or two: a backup) running
    DONE = "done"  # an attempt was committed
    FAILED = "failed"  # out of attempts: the job failed


class Attempt:
    __slots__ = ("backup", "last_processed_ns", "machine", "processed", "ref", "start_step", "started_ns", "worker")

    def __init__(self, ref: AttemptRef, worker: Worker, started_ns: int, backup: bool, start_step: int) -> None:
        self.ref = ref
        self.worker = worker
        self.machine = worker.machine
        self.started_ns = started_ns
        self.backup = backup
        self.processed = 0
        self.last_processed_ns = started_ns
        self.start_step = start_step  # the core's step counter when it started (checked against blacklistings)


class Instance:
    __slots__ = (
        "attempts_used",
        "backup_started",
        "committed",
        "duration_ns",
        "failed_machines",
        "failures",
        "index",
        "last_error",
        "missing",
        "output",
        "phase",
        "processed",
        "racks",
        "ready_ns",
        "running",
        "task",
        "token",
        "unit",
    )

    def __init__(self, task: Task, index: int) -> None:
        self.task = task
        self.index = index
        self.phase = Phase.WAITING
        self.missing = 0  # unmet input conditions (a 1:1 producer instance, or a whole producer task)
        self.attempts_used = 0  # attempts started (backups included), bounded by the task's max_attempts
        self.backup_started = False
        self.running: list[Attempt] = []  # at most two: the attempt and its backup
        self.failures = 0  # attempts that ended without output (failed, or their worker was lost)
        self.failed_machines: set[str] = set()
        self.last_error = ""
        self.ready_ns = 0  # when it last became runnable
        self.token = 0  # bumped each time it becomes runnable: queue entries of an earlier time are dead
        self.racks: tuple[str, ...] = ()  # racks of its hosts, known when it became runnable
        self.unit = ""  # the demand unit it counts in while runnable
        self.committed: AttemptRef | None = None
        self.output = b""
        self.duration_ns = 0
        self.processed = 0

    @property
    def hosts(self) -> tuple[str, ...]:
        hosts = self.task.spec.hosts
        return hosts[self.index] if hosts else ()


class RunQueue:
    """Runnable instances in the order they became runnable, with lazy deletion: an entry ``(index, token)`` is
    live while its instance is runnable with that token. Dead entries at the head are dropped when scanned, so
    taking instances from the front costs O(1) amortized (a dict keyed by index would rescan its deleted
    slots). ``live`` counts the live entries (the owner keeps it, see JobCore._take_runnable)."""

    __slots__ = ("entries", "live")

    def __init__(self) -> None:
        self.entries: deque[tuple[int, int]] = deque()
        self.live = 0

    def push(self, inst: Instance) -> None:
        self.entries.append((inst.index, inst.token))
        self.live += 1

    def scan(self, instances: list[Instance]) -> Iterator[Instance]:
        """Live instances, oldest first (dead entries in between are passed over; they count for the caller's
        scan bound only through the instances it is given)."""
        entries = self.entries
        while entries:
            index, token = entries[0]
            inst = instances[index]
            if inst.phase is Phase.RUNNABLE and inst.token == token:
                break
            entries.popleft()
        if not self.live:
            entries.clear()
        for index, token in entries:
            inst = instances[index]
            if inst.phase is Phase.RUNNABLE and inst.token == token:
                yield inst


class WorkerPhase(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    CANCELLING = "cancelling"  # its attempt was cancelled; it is busy until it reports worker_idle


class Worker:
    __slots__ = ("attempt", "idle_since_ns", "machine", "phase", "task", "worker_id")

    def __init__(self, worker_id: str, task: Task, machine: str, now_ns: int) -> None:
        self.worker_id = worker_id
        self.task = task
        self.machine = machine
        self.phase = WorkerPhase.IDLE
        self.attempt: Attempt | None = None
        self.idle_since_ns = now_ns


class Task:
    __slots__ = (
        "backup_wanted",
        "backups",
        "blacklist",
        "by_host",
        "by_rack",
        "done",
        "done_duration_ns",
        "done_rate_sum",
        "failed_attempts",
        "free_queue",
        "idle",
        "instances",
        "local_queue",
        "machine_failures",
        "name",
        "outstanding",
        "rejects",
        "running",
        "spec",
        "unit_runnable",
        "units",
        "workers",
    )

    def __init__(self, spec: TaskDef) -> None:
        self.name = spec.name
        self.spec = spec
        self.instances = [Instance(self, i) for i in range(spec.instances)]
        self.done = 0
        self.done_duration_ns = 0  # sum over done instances (their committed attempt's duration)
        self.done_rate_sum = 0.0  # sum of processed / duration over done instances
        self.failed_attempts = 0
        self.backups = 0  # backup attempts started
        # Runnable instances, in the order they became runnable: with hosts (local_queue, and indexed by each
        # host and each host's rack) and without (free_queue).
        self.local_queue = RunQueue()
        self.free_queue = RunQueue()
        self.by_host: dict[str, RunQueue] = {}
        self.by_rack: dict[str, RunQueue] = {}
        self.running: dict[int, None] = {}  # instances with at least one attempt running
        self.backup_wanted: dict[int, int] = {}  # slow running instances waiting for a backup worker -> since_ns
        # Worker demand: unit name -> preferred machine ("" for none); runnable instances per unit; outstanding.
        self.units: dict[str, str] = {}
        self.unit_runnable: dict[str, int] = {}
        self.outstanding: dict[str, int] = {}
        self.workers: dict[str, Worker] = {}
        self.idle: dict[str, Worker] = {}
        self.machine_failures: dict[str, int] = {}
        self.blacklist: set[str] = set()
        self.rejects = 0  # workers offered in a row on blacklisted machines

    def remaining(self) -> int:
        return self.spec.instances - self.done
