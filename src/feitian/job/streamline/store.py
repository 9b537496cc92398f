"""Where an instance's partitioned output lives on a worker's disk, and its atomic commit.

::

    <root>/<output>/attempts/<instance>.<attempt>/   being written (spill runs under spill/)
    <root>/<output>/committed/<instance>/            visible: part-00000 … part-<N-1>, index.json

``output`` names one edge's data (e.g. ``job-17.map``), ``instance`` the producer instance, ``attempt`` its try.
An attempt writes only inside its attempt directory; :meth:`OutputStore.commit` fsyncs what it wrote, then makes
it visible with one ``rename`` of the directory to ``committed/<instance>`` and fsyncs the parent. The rename
fails if another attempt of the instance already committed (the committed directory is never empty: it holds
``index.json``), so at most one attempt's output is ever visible — a backup instance or a retry that finishes
second is refused and its files are deleted, never duplicated.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import msgspec

from feitian.errors import DataCorruptionError, InvalidArgumentError, NotFoundError
from feitian.runtime.files import ensure_dir, fsync_dir, os_error, translating

__all__ = ["CommitResult", "OutputIndex", "OutputStore", "PartitionEntry", "check_name"]

INDEX_NAME = "index.json"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def check_name(what: str, name: str) -> str:
    """An output name is a path component of the store: refuse anything that could leave it."""
    if not _NAME.match(name) or ".." in name:
        raise InvalidArgumentError(
            f"streamline {what} {name!r}: not a valid name",
            hint="use 1-128 letters, digits, '_', '-' or '.', not starting with '.' and without '..'",
        )
    return name


class PartitionEntry(msgspec.Struct, frozen=True):
    length: int  # bytes of the partition file
    records: int
    crc: int  # CRC-32C of the whole file: another attempt's copy is interchangeable only if equal


class OutputIndex(msgspec.Struct, frozen=True):
    output: str
    instance: int
    attempt: int
    sort: bool
    key: str
    partitions: tuple[PartitionEntry, ...]


class CommitResult(msgspec.Struct, frozen=True):
    committed: bool  # False: another attempt had committed first; this attempt's files were deleted
    attempt: int  # the attempt whose output is visible
    index: OutputIndex


def part_name(partition: int) -> str:
    return f"part-{partition:05d}"


class OutputStore:
    """The committed outputs under one root directory (one per worker)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def attempt_dir(self, output: str, instance: int, attempt: int) -> Path:
        check_name("output", output)
        if instance < 0 or attempt < 0:
            raise InvalidArgumentError(f"streamline output {output}: instance and attempt must be >= 0")
        return self.root / output / "attempts" / f"{instance}.{attempt}"

    def committed_dir(self, output: str, instance: int) -> Path:
        check_name("output", output)
        if instance < 0:
            raise InvalidArgumentError(f"streamline output {output}: instance must be >= 0, got {instance}")
        return self.root / output / "committed" / str(instance)

    def is_committed(self, output: str, instance: int) -> bool:
        return (self.committed_dir(output, instance) / INDEX_NAME).is_file()

    def index(self, output: str, instance: int) -> OutputIndex:
        path = self.committed_dir(output, instance) / INDEX_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"streamline output {output} instance {instance}: not committed here") from None
        try:
            return msgspec.json.decode(data, type=OutputIndex)
        except msgspec.DecodeError as exc:
            raise DataCorruptionError(f"streamline index {path}: {exc}") from None

    def partition_path(self, output: str, instance: int, partition: int) -> Path:
        return self.committed_dir(output, instance) / part_name(partition)

    def commit(self, attempt_dir: Path, index: OutputIndex) -> CommitResult:
        """Make ``attempt_dir`` (holding the partition files) the instance's visible output, atomically."""
        target = self.committed_dir(index.output, index.instance)
        with translating("write", attempt_dir / INDEX_NAME):
            fd = os.open(attempt_dir / INDEX_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, msgspec.json.encode(index))
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(attempt_dir)
        ensure_dir(target.parent)
        try:
            os.rename(attempt_dir, target)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise os_error(exc, "rename", attempt_dir) from exc
            shutil.rmtree(attempt_dir, ignore_errors=True)
            return CommitResult(False, self.index(index.output, index.instance).attempt, index)
        fsync_dir(target.parent)
        return CommitResult(True, index.attempt, index)

    def remove(self, output: str) -> None:
        """Delete every attempt and committed instance of ``output`` (the job is done with the edge)."""
        shutil.rmtree(self.root / check_name("output", output), ignore_errors=True)
