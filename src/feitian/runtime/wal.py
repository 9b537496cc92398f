"""A segmented write-ahead log with group commit, torn-tail recovery and disk-full handling.

Records are ``(kind, data)`` pairs (:class:`~feitian.runtime.wal_format.Record`); the framing is documented in
:mod:`feitian.runtime.wal_format` and ``docs/storage.md``. The life of a record:

1. :meth:`WAL.append` encodes a batch of records into an in-memory buffer and returns the batch's sequence
   number (``seq``). No I/O; safe to call from an event loop thread while another thread runs
   :meth:`WAL.sync`.
2. :meth:`WAL.sync` writes every buffered batch with one ``pwrite`` per segment and makes it durable with one
   ``fdatasync``; it returns the highest ``seq`` that is now durable. Many appends share one fsync: group
   commit. :class:`feitian.runtime.wal_async.GroupCommitWAL` does this for concurrent asyncio callers.
3. When the active segment has reached ``segment_size_bytes`` the next batch starts a new segment ("cut"): the
   old one is trimmed to its last record and fsynced, the new one is written as a temp file (header plus
   *preamble* records supplied by the owner, e.g. the current Raft hard state), preallocated, fsynced, renamed
   and its directory fsynced. A segment file under its final name therefore always has a valid header.

Recovery (:meth:`WAL.open`) reads every segment. Only the last segment may end in a torn record; it is
truncated away (reported in :attr:`WAL.recovery` and logged). Anything else that fails its checksum raises
:class:`~feitian.errors.DataCorruptionError` naming the file and offset: a damaged record followed by a valid
one, any damage in a segment that is not the last, a missing segment, a bad segment header.

Failures: a full disk (ENOSPC/EDQUOT) during :meth:`WAL.sync` raises an ``UnavailableError`` with
``reason="disk_full"``; the partial write is truncated away, every batch not yet durable is dropped (its seq
is at most :attr:`WAL.failed_seq`) and the log accepts new appends, which succeed once space returns. Any
other I/O error while writing or syncing (notably EIO from fsync, after which the kernel may have dropped the
dirty pages) leaves the WAL *broken*: every later call raises until it is closed and reopened.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from feitian.errors import (
    FeitianError,
    InternalError,
    InvalidArgumentError,
    MessageTooLargeError,
    UnavailableError,
)
from feitian.runtime.files import (
    DirLock,
    ensure_dir,
    is_disk_full,
    os_error,
    remove_durably,
    translating,
    write_all,
)
from feitian.runtime.wal_format import (
    MAX_KIND,
    MAX_RECORD_DATA,
    Record,
    encode_record,
    encode_segment_header,
    segment_name,
)
from feitian.runtime.wal_recovery import Recovered, RecoveryReport, SegmentFile, recover

__all__ = ["WAL", "Preallocate", "Record", "Recovered", "RecoveryReport", "SegmentStart", "WALStats"]

_log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SIZE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
_ZERO_CHUNK_BYTES = 1024 * 1024

SegmentStart = Callable[[], tuple[int, Sequence[Record]]]
"""Called (under the WAL's lock, so it must not call the WAL) when a segment is cut: returns the new segment's
``first_index`` label and the preamble records that open it."""


class Preallocate(enum.Enum):
    """How a new segment reserves its ``segment_size_bytes``."""

    NONE = "none"  # grow as written
    FALLOCATE = "fallocate"  # posix_fallocate: space reserved, ENOSPC surfaces at the cut
    ZERO_FILL = "zero_fill"  # write zeros: as FALLOCATE, and later fdatasyncs need no metadata update


@dataclass
class WALStats:
    batches: int = 0
    records: int = 0
    syncs: int = 0  # sync() calls that wrote something
    fsyncs: int = 0  # fsync/fdatasync system calls, segment cuts included
    bytes_written: int = 0
    segments_created: int = 0


@dataclass
class _Active:
    segment: SegmentFile
    fd: int
    written_end: int  # bytes of records written to the file
    synced_end: int  # ... of which fsynced
    file_size: int  # including preallocation


@dataclass
class _Chunk:
    """Buffered bytes for one segment; ``new_segment`` set when the chunk starts a segment (a cut)."""

    new_segment: tuple[SegmentFile, bytes] | None  # the segment and its header + preamble bytes
    seq_before: int = 0  # for a cut: the seq of the last batch before it
    data: bytearray = field(default_factory=bytearray)
    last_seq: int = 0
    records: int = 0


class WAL:
    """A write-ahead log in one directory. Create with :meth:`open`; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        lock: DirLock,
        dir_fd: int,
        segments: list[SegmentFile],
        active: _Active | None,
        recovery: RecoveryReport,
        *,
        segment_size_bytes: int,
        max_record_bytes: int,
        preallocate: Preallocate,
        segment_start: SegmentStart | None,
    ) -> None:
        self.directory = directory
        self.recovery = recovery
        self.stats = WALStats()
        self._dir_lock = lock
        self._dir_fd = dir_fd  # for fsyncs of the directory when a segment is created
        self._segments = segments  # on disk, oldest first; the last one is active
        self._active = active
        self._segment_size_bytes = segment_size_bytes
        self._max_record_bytes = max_record_bytes
        self._preallocate = preallocate
        self._segment_start = segment_start
        self._lock = threading.Lock()  # guards the buffer and the counters below
        self._io_lock = threading.Lock()  # one sync / release / close at a time
        self._pending: list[_Chunk] = []
        self._pending_bytes = 0
        self._appended_seq = 0
        self._durable_seq = 0
        self._failed_seq = 0
        # Ordinal of the last record, the default segment label (the first segment's label counts those
        # released before it).
        self._records_total = (segments[0].first_index - 1 if segments else 0) + recovery.records
        self._durable_records = self._records_total
        self._broken: FeitianError | None = None
        self._closed = False
        self._tail_offset = 0  # where the next record goes in the segment the next batch goes to
        self._tail_has_segment = False  # ... and whether that segment exists or is planned
        self._next_seq = 1  # seq of the next segment to cut
        self._reset_tail()

    # -- opening and recovery ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        preallocate: Preallocate = Preallocate.FALLOCATE,
        segment_start: SegmentStart | None = None,
    ) -> tuple[WAL, list[Recovered]]:
        """Open (creating if needed) the log in ``directory``; return it and every record recovered, in order.

        Raises DataCorruptionError if the log is damaged anywhere but a torn tail of the last segment, and
        ConflictError if the directory is already open.
        """
        if segment_size_bytes < 4096:
            raise InvalidArgumentError(f"wal segment_size_bytes={segment_size_bytes}: must be >= 4096")
        if not 0 < max_record_bytes <= MAX_RECORD_DATA:
            bound = f"1..{MAX_RECORD_DATA}"
            raise InvalidArgumentError(f"wal max_record_bytes={max_record_bytes}: must be in {bound}")
        path = ensure_dir(directory)
        lock = DirLock(path)
        try:
            with translating("open", path):
                dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            lock.release()
            raise
        try:
            segments, tail, records, report = recover(path)
        except BaseException:
            os.close(dir_fd)
            lock.release()
            raise
        active = _Active(tail.segment, tail.fd, tail.end, tail.end, tail.size) if tail is not None else None
        wal = cls(
            path,
            lock,
            dir_fd,
            segments,
            active,
            report,
            segment_size_bytes=segment_size_bytes,
            max_record_bytes=max_record_bytes,
            preallocate=preallocate,
            segment_start=segment_start,
        )
        return wal, records

    # -- appending -----------------------------------------------------------------------------------------

    @property
    def durable_seq(self) -> int:
        """Every batch with a seq up to this one is on disk."""
        return self._durable_seq

    @property
    def failed_seq(self) -> int:
        """Every batch with ``durable_seq < seq <= failed_seq`` was dropped by a failed sync."""
        return self._failed_seq

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def usable(self) -> bool:
        """False once the WAL is closed or broken (an I/O error other than a full disk)."""
        return not self._closed and self._broken is None

    def append(self, records: Sequence[Record]) -> int:
        """Buffer ``records`` as one batch (no I/O) and return its seq; it is durable once ``sync`` returns
        a seq at least as high. An empty batch returns the latest seq without creating a new one."""
        self._check_usable()
        for kind, data in records:
            if not 0 <= kind <= MAX_KIND:
                raise InvalidArgumentError(f"wal append: record kind {kind} outside 0..{MAX_KIND}")
            if len(data) > self._max_record_bytes:
                limit = f"max_record_bytes={self._max_record_bytes}"
                raise MessageTooLargeError(
                    f"wal append: record of {len(data)} bytes exceeds {limit}",
                    limit=self._max_record_bytes,
                    size=len(data),
                )
        with self._lock:
            if not records:
                return self._appended_seq
            if self._tail_offset >= self._segment_size_bytes or not self._tail_has_segment:
                self._plan_cut()
            if not self._pending:
                self._pending.append(_Chunk(None))
            chunk = self._pending[-1]
            before = len(chunk.data)
            for kind, data in records:
                self._tail_offset += encode_record(chunk.data, kind, data, self._tail_offset)
            self._pending_bytes += len(chunk.data) - before
            self._appended_seq += 1
            self._records_total += len(records)
            chunk.last_seq = self._appended_seq
            chunk.records += len(records)
            self.stats.batches += 1
            self.stats.records += len(records)
            return self._appended_seq

    def _plan_cut(self) -> None:
        """Start a new segment with the next batch (caller holds ``_lock``)."""
        if self._segment_start is not None:
            first_index, preamble = self._segment_start()
        else:
            first_index, preamble = self._records_total + 1, ()
        path = self.directory / segment_name(self._next_seq, first_index)
        segment = SegmentFile(self._next_seq, first_index, path)
        prefix = bytearray(encode_segment_header(segment.seq, first_index))
        for kind, data in preamble:
            encode_record(prefix, kind, data, len(prefix))
        self._pending.append(_Chunk((segment, bytes(prefix)), seq_before=self._appended_seq))
        self._pending_bytes += len(prefix)
        self._next_seq += 1
        self._tail_offset = len(prefix)
        self._tail_has_segment = True

    # -- syncing -------------------------------------------------------------------------------------------

    def sync(self) -> int:
        """Write every buffered batch and fdatasync once; return the highest durable seq."""
        with self._io_lock:
            self._check_usable()
            with self._lock:
                chunks, self._pending = self._pending, []
                self._pending_bytes = 0
            if not chunks:
                return self._durable_seq
            op, path = "write", self.directory
            unsynced_records = 0
            try:
                for chunk in chunks:
                    if chunk.new_segment is not None:
                        segment, prefix = chunk.new_segment
                        if self._active is not None:
                            op, path = "fsync", self._active.segment.path
                            self._finish_active(chunk.seq_before)
                            self._durable_records += unsynced_records
                            unsynced_records = 0
                        op, path = "create", segment.path
                        self._create_segment(segment, prefix)
                        op, path = "fsync", self.directory
                        os.fsync(self._dir_fd)  # the new name is durable before any record goes in
                        self.stats.fsyncs += 1
                    active = self._require_active()
                    op, path = "write", active.segment.path
                    write_all(active.fd, chunk.data, active.written_end)
                    active.written_end += len(chunk.data)
                    unsynced_records += chunk.records
                    self.stats.bytes_written += len(chunk.data)
                active = self._require_active()
                op, path = "fdatasync", active.segment.path
                os.fdatasync(active.fd)
                self.stats.fsyncs += 1
            except OSError as exc:
                self._fail(exc, op, path)
            active.synced_end = active.written_end
            self._durable_records += unsynced_records
            self.stats.syncs += 1
            with self._lock:
                self._durable_seq = chunks[-1].last_seq
            return self._durable_seq

    def _require_active(self) -> _Active:
        if self._active is None:
            raise InternalError(f"wal {self.directory}: buffered records but no segment to write them to")
        return self._active

    def _finish_active(self, seq_before: int) -> None:
        """Trim the active segment to its last record and fsync it: batches up to ``seq_before`` are now
        durable."""
        old = self._require_active()
        if old.file_size > old.written_end:
            os.ftruncate(old.fd, old.written_end)
            old.file_size = old.written_end
        os.fsync(old.fd)
        self.stats.fsyncs += 1
        old.synced_end = old.written_end
        with self._lock:
            self._durable_seq = max(self._durable_seq, seq_before)

    def _create_segment(self, segment: SegmentFile, prefix: bytes) -> None:
        """Create ``segment`` (header + preamble) atomically and make it the active one. Raises OSError."""
        tmp = segment.path.with_name(segment.path.name + ".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, prefix, 0)
            size = max(len(prefix), self._segment_size_bytes)
            if size > len(prefix) and self._preallocate is Preallocate.FALLOCATE:
                os.posix_fallocate(fd, 0, size)
            elif size > len(prefix) and self._preallocate is Preallocate.ZERO_FILL:
                zeros = bytes(_ZERO_CHUNK_BYTES)
                for offset in range(len(prefix), size, _ZERO_CHUNK_BYTES):
                    write_all(fd, zeros[: min(_ZERO_CHUNK_BYTES, size - offset)], offset)
            else:
                size = len(prefix)
            os.fsync(fd)
            self.stats.fsyncs += 1
            os.rename(tmp, segment.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        old, self._active = self._active, _Active(segment, fd, len(prefix), len(prefix), size)
        self._segments.append(segment)
        self.stats.segments_created += 1
        if old is not None:
            os.close(old.fd)

    def _fail(self, exc: OSError, op: str, path: Path) -> NoReturn:
        """Undo a failed sync: truncate the partial write, drop every buffered batch, raise the translated
        error. Anything but a full disk leaves the WAL broken."""
        error = os_error(exc, op, path)
        # A directory whose fsync failed may lose the new segment's name: only a reopen can tell.
        recoverable = is_disk_full(exc) and path != self.directory
        active = self._active
        if recoverable and active is not None:
            try:
                os.ftruncate(active.fd, active.synced_end)
                os.fsync(active.fd)
                self.stats.fsyncs += 1
                active.written_end = active.file_size = active.synced_end
            except OSError:
                recoverable = False
        with self._lock:
            self._failed_seq = self._appended_seq
            self._pending = []
            self._pending_bytes = 0
            self._records_total = self._durable_records
            self._reset_tail()
            if not recoverable:
                self._broken = error
        raise error from exc

    def _reset_tail(self) -> None:
        """Point the append position at the end of what is on disk (caller holds ``_lock`` or is __init__)."""
        self._tail_offset = self._active.written_end if self._active is not None else 0
        self._tail_has_segment = self._active is not None
        self._next_seq = self._segments[-1].seq + 1 if self._segments else 1

    # -- releasing and closing -----------------------------------------------------------------------------

    def release_before(self, index: int) -> int:
        """Delete the oldest segments whose records all concern indices below ``index``; return how many.

        Segment k is covered when some later segment's ``first_index`` label is <= ``index``: its owner labels
        a segment with "last index + 1" at the cut, so every live record of segment k is below that label. The
        active (last) segment is never deleted. The owner repeats what older segments said (hard state,
        snapshot marker) in each new segment's preamble, so nothing still needed is lost.
        """
        with self._io_lock:
            self._check_usable()
            victims: list[SegmentFile] = []
            lowest_later = None
            for k in range(len(self._segments) - 1, 0, -1):
                label = self._segments[k].first_index
                lowest_later = label if lowest_later is None else min(lowest_later, label)
                if lowest_later <= index:
                    victims = self._segments[:k]
                    break
            if victims:
                remove_durably([s.path for s in victims])
                del self._segments[: len(victims)]
            return len(victims)

    def durable_tail(self) -> tuple[Path, int] | None:
        """The active segment and the offset up to which it is durable (None before the first segment)."""
        active = self._active
        return (active.segment.path, active.synced_end) if active is not None else None

    def segment_paths(self) -> list[Path]:
        """The segment files on disk, oldest first."""
        return [s.path for s in self._segments]

    def close(self) -> None:
        """Sync what is buffered (unless the WAL is broken), close the files, release the directory lock."""
        if self._closed:
            return
        try:
            if self._broken is None and self._pending:
                self.sync()
        finally:
            with self._io_lock:
                self._closed = True
                if self._active is not None:
                    os.close(self._active.fd)
                    self._active = None
                os.close(self._dir_fd)
                self._dir_lock.release()

    def _check_usable(self) -> None:
        if self._closed:
            raise UnavailableError(f"wal {self.directory}: closed")
        if self._broken is not None:
            raise UnavailableError(
                f"wal {self.directory}: unusable after an earlier failure: {self._broken.message}",
                hint="close and reopen the log to continue from what is durable",
                **self._broken.fields,
            )


def _main(argv: list[str]) -> int:
    if argv[:1] != ["bench"]:
        print("usage: python -m feitian.runtime.wal bench [--dir DIR] [--seconds S]", file=sys.stderr)
        return 2
    from feitian.runtime.wal_bench import main

    return int(main(argv[1:]))


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
