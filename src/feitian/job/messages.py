"""What a JobMaster and its TaskWorkers say to each other (``job.*``).

A TaskWorker (a process on a grant of the job's application) says hello, then long-polls its JobMaster with what
happened since the last poll — attempts finished, failed, cancelled, progress — and gets back the attempts to run
next, the attempts to cancel, or the word to stop. In a secured cluster the two talk over mutual TLS with their
application's own identity (:class:`feitian.security.SamePrincipalServer`): nothing else can call in.

The JobMaster writes its address to ``<job root>/master`` in Pangu; a worker that loses it (the JobMaster was
restarted, FUXI-11) reads it again and says hello to the new one with what it runs and what it finished, so
nothing finished is lost and nothing running is restarted.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from feitian.job.core import AttemptRef
from feitian.job.spec.model import Code
from feitian.rpc import Request

__all__ = [
    "MAX_POLL_WAIT_S",
    "AttemptDone",
    "AttemptFailed",
    "AttemptProgress",
    "HelloReply",
    "InputEdge",
    "InputSplit",
    "OutputEdge",
    "PollReply",
    "ResultOutput",
    "TaskRun",
    "WorkerHello",
    "WorkerPoll",
]

MAX_POLL_WAIT_S = 30.0
MAX_ERROR_CHARS = 4_096  # an attempt's error text, as reported (longer is cut)


class InputSplit(msgspec.Struct, frozen=True):
    """A source instance's input: ``length`` bytes of the Pangu file ``path`` from ``offset`` (whole lines:
    a split starts after the first newline unless at 0 and reads past its end to finish its last line)."""

    path: str
    offset: int
    length: int


class InputEdge(msgspec.Struct, frozen=True):
    """Records from an upstream pipe: partition ``partition`` of the output ``output`` of each of the producer
    ``instances`` (published in Pangu under the job's shuffle directory), merged by key when ``sort``."""

    output: str
    instances: list[int]
    partition: int
    sort: bool = False


class OutputEdge(msgspec.Struct, frozen=True):
    """Records to a downstream pipe: partitioned ``mode`` (``hash`` into ``partitions``, or ``single``), sorted
    within each partition when ``sort``, published as output ``output``."""

    output: str
    mode: str
    partitions: int = 1
    sort: bool = False


class ResultOutput(msgspec.Struct, frozen=True):
    """The task's result file for this instance: written to ``temp``, renamed to ``path`` by the JobMaster when
    the attempt is committed (so a loser or a retry never leaves a second copy)."""

    path: str
    temp: str
    replication: int


class TaskRun(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to run: what to run (``code``) on which records, and where its records go."""

    ref: AttemptRef
    code: Code
    split: InputSplit | None = None
    inputs: list[InputEdge] = msgspec.field(default_factory=list)
    outputs: list[OutputEdge] = msgspec.field(default_factory=list)
    result: ResultOutput | None = None


class AttemptDone(msgspec.Struct, frozen=True):
    ref: AttemptRef
    processed: int  # records read
    output: bytes = b""  # what the JobMaster keeps of the output (msgspec JSON: records written per output)
    duration_ns: int = 0


class AttemptFailed(msgspec.Struct, frozen=True):
    ref: AttemptRef
    error: str


class AttemptProgress(msgspec.Struct, frozen=True):
    ref: AttemptRef
    processed: int


class HelloReply(msgspec.Struct, frozen=True):
    epoch: int  # the JobMaster's epoch (it grows with each restart of the JobMaster)
    known: bool  # False: the JobMaster does not know this worker (it should exit)


class WorkerHello(Request[HelloReply], frozen=True, tag="job.Hello", kw_only=True):
    """A worker says who it is (after it started, or to a restarted JobMaster with what it runs and finished)."""

    worker_id: str
    task: str
    machine: str
    running: list[AttemptRef] = msgspec.field(default_factory=list)
    finished: list[AttemptDone] = msgspec.field(default_factory=list)


class PollReply(msgspec.Struct, frozen=True):
    epoch: int
    runs: list[TaskRun] = msgspec.field(default_factory=list)
    cancels: list[AttemptRef] = msgspec.field(default_factory=list)
    stop: bool = False  # the worker is no longer needed: exit


class WorkerPoll(Request[PollReply], frozen=True, tag="job.Poll", kw_only=True):
    """What happened since the last poll; the answer waits up to ``wait_s`` for work."""

    idempotent: ClassVar[bool] = False

    worker_id: str
    done: list[AttemptDone] = msgspec.field(default_factory=list)
    failed: list[AttemptFailed] = msgspec.field(default_factory=list)
    cancelled: list[AttemptRef] = msgspec.field(default_factory=list)  # cancels carried out: the worker is free
    progress: list[AttemptProgress] = msgspec.field(default_factory=list)
    wait_s: float = 10.0
