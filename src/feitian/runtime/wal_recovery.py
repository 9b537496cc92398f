"""Recovery of the write-ahead log: read every segment, truncate a torn tail of the last one, refuse the rest.

Only the last segment may end in a torn record (a write cut by a crash); it is truncated away, reported in the
:class:`RecoveryReport` and logged. Anything else raises :class:`~feitian.errors.DataCorruptionError` naming
the file and the offset: a damaged record followed by a valid one, any damage in a segment that is not the
last, a missing segment, a bad segment header. A ``.wal.tmp`` file is a segment whose creation crashed before
its rename: it never held a record and is deleted.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from feitian.errors import DataCorruptionError
from feitian.runtime.files import read_bytes, remove_durably, translating
from feitian.runtime.wal_format import (
    SEGMENT_SUFFIX,
    Tail,
    decode_segment_header,
    parse_segment_name,
    scan_segment,
)

__all__ = ["Recovered", "RecoveredTail", "RecoveryReport", "SegmentFile", "recover"]

_log = logging.getLogger("feitian.runtime.wal")


class Recovered(NamedTuple):
    """A record read back by :meth:`WAL.open`, with where it was found (for error messages)."""

    kind: int
    data: bytes
    path: str
    offset: int


@dataclass(frozen=True)
class RecoveryReport:
    segments: int
    records: int
    truncated: tuple[tuple[str, int, int], ...] = ()  # (path, offset, bytes dropped) of a torn tail


@dataclass
class SegmentFile:
    seq: int
    first_index: int
    path: Path


@dataclass(frozen=True)
class RecoveredTail:
    """The last segment, open for appending at ``end``; the file is ``size`` bytes (with preallocation)."""

    segment: SegmentFile
    fd: int
    end: int
    size: int


Recovery = tuple[list[SegmentFile], RecoveredTail | None, list[Recovered], RecoveryReport]


def recover(directory: Path) -> Recovery:
    """Read every segment of ``directory``; truncate a torn tail of the last one; raise on corruption."""
    with translating("list", directory):
        names = sorted(os.listdir(directory))
    stale = [directory / n for n in names if n.endswith(SEGMENT_SUFFIX + ".tmp")]
    if stale:
        remove_durably(stale)  # a cut that crashed before its rename: the segment never existed
    segments: list[SegmentFile] = []
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is not None:
            segments.append(SegmentFile(parsed.seq, parsed.first_index, directory / name))
    for before, after in itertools.pairwise(segments):
        if after.seq != before.seq + 1:
            raise DataCorruptionError(
                f"wal recover {directory}: segment {before.seq + 1:016x} is missing "
                f"(found {before.path.name} then {after.path.name})",
                path=str(directory),
            )
    records: list[Recovered] = []
    truncated: list[tuple[str, int, int]] = []
    active: RecoveredTail | None = None
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        buf = read_bytes(segment.path)
        header = decode_segment_header(buf)
        if isinstance(header, str) or header != (segment.seq, segment.first_index):
            what = header if isinstance(header, str) else f"header says {header}, name says otherwise"
            raise _corrupt(segment.path, 0, what)
        scan = scan_segment(buf)
        if scan.tail is Tail.CORRUPT:
            raise _corrupt(
                segment.path,
                scan.end,
                f"record fails its checksum but a valid record follows at offset {scan.evidence}",
            )
        if not last and scan.tail is not Tail.END:
            raise _corrupt(
                segment.path,
                scan.end,
                f"damaged record ({scan.tail.value}) in a segment that is not the last",
            )
        path_str = str(segment.path)
        records.extend(Recovered(r.kind, r.data, path_str, off) for off, r in scan.records)
        if last:
            size = len(buf)
            with translating("open", segment.path):
                fd = os.open(segment.path, os.O_RDWR | os.O_CLOEXEC)
            try:
                if scan.tail is Tail.TORN:
                    _log.warning(
                        "wal %s: truncating a torn tail at offset %d (%d bytes)",
                        path_str,
                        scan.end,
                        size - scan.end,
                    )
                    truncated.append((path_str, scan.end, size - scan.end))
                    with translating("truncate", segment.path):
                        os.ftruncate(fd, scan.end)
                        os.fsync(fd)
                    size = scan.end
            except BaseException:
                os.close(fd)
                raise
            active = RecoveredTail(segment, fd, scan.end, size)
    report = RecoveryReport(len(segments), len(records), tuple(truncated))
    return segments, active, records, report


def _corrupt(path: Path, offset: int, what: str) -> DataCorruptionError:
    return DataCorruptionError(
        f"wal recover {path} at offset {offset}: {what}",
        hint="the log was damaged after it was written; restore this replica from its peers or a backup",
        path=str(path),
        offset=offset,
    )
