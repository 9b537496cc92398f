"""A job's inputs in Pangu: globs expanded, files cut into splits, each split with the machines holding most of
its bytes (FUXI-8: Pangu's chunk servers are named like the machines their Tubos pose as, so a chunk's replica
names the machine that can read it locally)."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from feitian.errors import InvalidArgumentError, NotFoundError
from feitian.job.spec.plan import Chunk, Split, file_splits, split_size_of

if TYPE_CHECKING:
    from feitian.dfs import DfsClient
    from feitian.job.spec.model import JobSpec

__all__ = ["MAX_INPUT_FILES", "expand", "resolve_splits"]

MAX_INPUT_FILES = 100_000  # files one task's inputs may name (each is listed and located)
READABLE = ("good", "unconfirmed")  # replica states a reader may use (docs/dfs.md)
GLOB_CHARS = frozenset("*?[")


def _has_glob(segment: str) -> bool:
    return any(c in GLOB_CHARS for c in segment)


async def expand(dfs: DfsClient, pattern: str) -> list[str]:
    """The files ``pattern`` names: a file; a directory's files (not recursively); or a glob (``*``, ``?``,
    ``[...]`` in any segment), sorted."""
    segments = [s for s in pattern.split("/") if s]
    if not any(_has_glob(s) for s in segments):
        status = await dfs.stat(pattern)
        if status.kind.value == "file":
            return [pattern]
        entries = await dfs.list(pattern)
        return sorted(f"{pattern.rstrip('/')}/{e.name}" for e in entries if e.kind.value == "file")
    prefixes = ["/"]
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        found: list[str] = []
        for prefix in prefixes:
            base = prefix.rstrip("/")
            if not _has_glob(segment):
                found.append(f"{base}/{segment}")
                continue
            try:
                entries = await dfs.list(prefix)
            except NotFoundError:
                continue
            for entry in entries:
                if fnmatch.fnmatchcase(entry.name, segment) and (last or entry.kind.value == "dir"):
                    found.append(f"{base}/{entry.name}")
        prefixes = found
        if len(prefixes) > MAX_INPUT_FILES:
            raise InvalidArgumentError(f"input {pattern}: more than {MAX_INPUT_FILES} matches")
    files = []
    for path in prefixes:
        try:
            if (await dfs.stat(path)).kind.value == "file":
                files.append(path)
        except NotFoundError:
            continue
    return sorted(files)


async def resolve_splits(dfs: DfsClient, spec: JobSpec) -> dict[str, list[Split]]:
    """Every input task's splits, in the order of its inputs (each pattern's files sorted)."""
    out: dict[str, list[Split]] = {}
    for task in spec.tasks:
        if task.inputs is None:
            continue
        size = split_size_of(spec, task.name)
        files: list[str] = []
        for pattern in task.inputs:
            matched = await expand(dfs, pattern)
            if not matched:
                raise NotFoundError(f"task {task.name!r}: input {pattern} names no file")
            files.extend(f for f in matched if f not in files)
            if len(files) > MAX_INPUT_FILES:
                raise InvalidArgumentError(f"task {task.name!r}: more than {MAX_INPUT_FILES} input files")
        splits: list[Split] = []
        for path in files:
            placement = await dfs.placement(path)
            chunks = [
                Chunk(c.file_offset, c.length, tuple(r.server_id for r in c.replicas if r.state in READABLE))
                for c in placement.chunks
            ]
            splits.extend(file_splits(path, placement.status.length, size, chunks))
        out[task.name] = splits
    return out
