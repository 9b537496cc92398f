"""From a checked description and its resolved inputs to the DAG the pure job core runs.

The JobMaster resolves each input task's paths and globs in Pangu (files, lengths, where each chunk's replicas
are) and cuts them into :class:`Split` s with :func:`file_splits`: one split per ``split_size`` bytes of a file
(an empty file is one empty split), each preferring the machines that hold most of its bytes. :func:`build_graph`
then gives every input task one instance per split (its preferred hosts are the splits'), the other tasks their
counts (``instances``, else the ``1:1`` producer's, else 1), every task its worker slot in Fuxi's units
(``cpu`` millicores, ``memory``/``disk`` bytes), and every pipe its :class:`~feitian.job.core.Pattern`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from feitian.errors import ConfigError
from feitian.job.core import MAX_INSTANCES, EdgeDef, JobGraph, Pattern, TaskDef
from feitian.job.spec.amounts import parse_size, shape_of
from feitian.job.spec.check import instance_counts, problems
from feitian.job.spec.model import JobSpec, effective_task

__all__ = ["MAX_SPLIT_HOSTS", "Chunk", "Split", "build_graph", "file_splits", "split_size_of"]

MAX_SPLIT_HOSTS = 8  # preferred machines kept per split, best first


class Chunk(msgspec.Struct, frozen=True):
    """Where one chunk of a file lives: its byte range and the machines holding a replica."""

    offset: int
    length: int
    hosts: tuple[str, ...] = ()


class Split(msgspec.Struct, frozen=True):
    """One instance's input: ``length`` bytes of ``path`` from ``offset`` (the whole file when it is one split),
    and the machines holding most of those bytes, best first."""

    path: str
    offset: int
    length: int
    hosts: tuple[str, ...] = ()


def split_size_of(job: JobSpec, task_name: str) -> int:
    """The split size in bytes of an input task (its own, the job's default, or 64 MiB)."""
    task = next(t for t in job.tasks if t.name == task_name)
    value = effective_task(job, task).split_size
    size = parse_size(value) if value is not None else None
    if not isinstance(size, int):
        raise ConfigError(f"task {task_name!r}: no valid split size ({value!r})")
    return size


def file_splits(path: str, length: int, split_size: int, chunks: Sequence[Chunk] = ()) -> list[Split]:
    """``path`` cut into splits of ``split_size`` bytes (the last one shorter); each split's hosts are the
    machines holding most of its bytes according to ``chunks`` (best first; ties by name). More than
    MAX_INSTANCES splits is a ``ValueError``."""
    if split_size < 1 or length < 0:
        raise ValueError(f"file_splits {path!r}: split size {split_size}, length {length}")
    if length == 0:
        return [Split(path, 0, 0, ())]
    if -(-length // split_size) > MAX_INSTANCES:
        raise ValueError(f"file_splits {path!r}: more than {MAX_INSTANCES} splits of {split_size} bytes")
    out: list[Split] = []
    ordered = sorted(chunks, key=lambda c: c.offset)
    first = 0  # the first chunk that may overlap the current split (splits and chunks both go forward)
    for start in range(0, length, split_size):
        end = min(start + split_size, length)
        while first < len(ordered) and ordered[first].offset + ordered[first].length <= start:
            first += 1
        held: dict[str, int] = {}
        for k in range(first, len(ordered)):
            chunk = ordered[k]
            if chunk.offset >= end:
                break
            overlap = min(end, chunk.offset + chunk.length) - max(start, chunk.offset)
            if overlap > 0:
                for host in chunk.hosts:
                    held[host] = held.get(host, 0) + overlap
        hosts = sorted(held, key=lambda h: (-held[h], h))[:MAX_SPLIT_HOSTS]
        out.append(Split(path, start, end - start, tuple(hosts)))
    return out


def build_graph(job: JobSpec, splits: Mapping[str, Sequence[Split]]) -> JobGraph:
    """The :class:`JobGraph` of ``job`` with each input task's ``splits``. Raises ``ConfigError`` listing every
    problem: the description's own (see :func:`~feitian.job.spec.check.problems`), an input task without
    splits, and the graph's (a ``1:1`` pipe between tasks whose counts differ once the splits are known)."""
    found = [str(p) for p in problems(job)]
    inputs = {t.name for t in job.tasks if t.inputs is not None}
    for name in inputs:
        if not splits.get(name):
            found.append(f"task {name!r}: no input splits (its inputs match no file)")
    for name in splits:
        if name not in inputs:
            found.append(f"task {name!r}: splits given, but it has no inputs")
    if found:
        raise ConfigError(f"job {job.name!r}: cannot build its graph", problems=found)
    counts = instance_counts(job, {name: len(s) for name, s in splits.items()})
    tasks: list[TaskDef] = []
    for task in job.tasks:
        full = effective_task(job, task)
        hosts: tuple[tuple[str, ...], ...] = ()
        if task.inputs is not None and any(s.hosts for s in splits[task.name]):
            hosts = tuple(s.hosts for s in splits[task.name])
        count = counts[task.name]
        assert count is not None  # every input task has splits (checked above)
        tasks.append(
            TaskDef(
                name=task.name,
                instances=count,
                resources=shape_of(full.resources) if full.resources is not None else {},
                hosts=hosts,
                max_attempts=full.max_attempts or 1,
                backups=bool(full.backups),
            )
        )
    edges = [EdgeDef(p.from_, p.to, Pattern(p.pattern)) for p in job.pipes]
    try:
        return JobGraph(tasks, edges)
    except ValueError as exc:
        raise ConfigError(f"job {job.name!r}: cannot build its graph", problems=str(exc).split("; ")) from None
