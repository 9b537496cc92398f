"""The JobMaster's snapshot (FUXI-11): what survives a restart — finished instances with their committed attempt
and output metadata, the failed attempts of unfinished ones, failure counts and blacklists, the master epoch.

Encoded with msgpack (msgspec), versioned: a core reads only :data:`SNAPSHOT_VERSION`. What runs is not in it:
a restored core learns it from the workers' reports.
"""

from __future__ import annotations

import msgspec

from feitian.errors import DataCorruptionError, InvalidArgumentError
from feitian.job.core.graph import JobGraph

__all__ = ["SNAPSHOT_VERSION", "DoneRecord", "JobSnapshot", "TaskSnapshot", "decode", "encode"]

SNAPSHOT_VERSION = 1


class DoneRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index: int
    epoch: int
    attempt: int
    output: bytes
    duration_ns: int
    processed: int


class TaskSnapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    instances: int
    done: tuple[DoneRecord, ...]
    failures: dict[int, int]  # unfinished instance -> its attempts that ended without output
    failed_attempts: int
    backups: int
    machine_failures: dict[str, int]
    blacklist: tuple[str, ...]


class JobSnapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    epoch: int
    tasks: tuple[TaskSnapshot, ...]
    job_blacklist: tuple[str, ...]


def encode(snap: JobSnapshot) -> bytes:
    return msgspec.msgpack.encode(snap)


def decode(graph: JobGraph, data: bytes) -> JobSnapshot:
    """The snapshot in ``data``, checked against ``graph``: a damaged snapshot is a DataCorruptionError, one of
    another version or another job (tasks or instance counts differ) an InvalidArgumentError naming the
    mismatch."""
    try:
        version = msgspec.msgpack.decode(data, type=dict[str, object]).get("version")
    except msgspec.DecodeError as e:
        raise DataCorruptionError(f"job snapshot: cannot decode ({e})") from None
    if version != SNAPSHOT_VERSION:
        raise InvalidArgumentError(f"job snapshot: version {version!r}, this JobMaster reads {SNAPSHOT_VERSION}")
    try:
        snap = msgspec.msgpack.decode(data, type=JobSnapshot)
    except msgspec.DecodeError as e:
        raise DataCorruptionError(f"job snapshot: cannot decode ({e})") from None
    problems = []
    names = {t.name for t in snap.tasks}
    for t in snap.tasks:
        spec = graph.tasks.get(t.name)
        if spec is None:
            problems.append(f"task {t.name!r} is not in the job")
        elif spec.instances != t.instances:
            problems.append(f"task {t.name!r}: {t.instances} instances in the snapshot, {spec.instances} in the job")
        elif any(not 0 <= d.index < t.instances for d in t.done) or any(not 0 <= i < t.instances for i in t.failures):
            problems.append(f"task {t.name!r}: an instance index out of range")
    problems.extend(f"task {name!r} of the job is not in the snapshot" for name in graph.tasks if name not in names)
    if problems:
        raise InvalidArgumentError("job snapshot does not match the job: " + "; ".join(problems))
    return snap
