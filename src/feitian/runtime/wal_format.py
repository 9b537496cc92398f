"""On-disk format of the write-ahead log: segment names, segment headers, record framing, and the scanner.

Pure byte-level code (no file I/O) so that it is tested byte by byte. All integers are little-endian.

Segment file ``<seq:016x>-<first_index:016x>.wal``: ``seq`` counts segments from 1 without gaps;
``first_index`` is a label chosen by the WAL's owner when the segment was cut (the Raft store uses "last log
index + 1").
A segment starts with a 32-byte header, followed by records, each starting at an 8-byte aligned offset::

    segment header (32 bytes)
      0  8  magic        b"FTWALSEG"
      8  2  version      1
     10  2  flags        0
     12  4  crc32c       of the 32 header bytes with this field zeroed
     16  8  seq          must match the file name
     24  8  first_index  must match the file name

    record (24-byte header + data + zero padding to a multiple of 8)
      0  4  magic        b"\\xa5FTr"
      4  4  crc32c       of header bytes 8..24 followed by the data
      8  8  offset       the offset of this record in its segment file
     16  4  length       of the data in bytes
     20  2  kind         small integer chosen by the owner
     22  2  reserved     0
     24  .  data
      .  .  padding      zeros up to the next multiple of 8 (not in the checksum, but must be zero)

The scanner reads records until the first one that is not valid (wrong magic, offset field not equal to its
position, data running past the end of the file, checksum mismatch) and classifies what follows:

* ``END``: nothing follows, the segment ends exactly after a record;
* ``ZEROS``: only zero bytes follow (a preallocated tail that was never written);
* ``TORN``: non-zero bytes follow but no valid record starts anywhere after them (a write cut by a crash);
* ``CORRUPT``: a valid record starts somewhere after the damage, so the damaged bytes were once part of the
  log and something later was written after them: refusing to start is the only safe answer.

Because each record carries its own offset and a checksum covering it, a record copied inside another record's
data, or left behind at a different position, never validates where it does not belong.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

from crc32c import crc32c

__all__ = [
    "ALIGN",
    "RECORD_HEADER_SIZE",
    "SEGMENT_HEADER_SIZE",
    "Record",
    "SegmentHeader",
    "SegmentScan",
    "Tail",
    "decode_segment_header",
    "encode_record",
    "encode_segment_header",
    "parse_segment_name",
    "record_size",
    "scan_segment",
    "segment_name",
]

ALIGN = 8
FORMAT_VERSION = 1
SEGMENT_MAGIC = b"FTWALSEG"
RECORD_MAGIC = b"\xa5FTr"
SEGMENT_SUFFIX = ".wal"

_SEGMENT_HEADER = struct.Struct("<8sHHIQQ")
_RECORD_HEADER = struct.Struct("<4sIQIHH")
_RECORD_BODY = struct.Struct("<QIHH")  # the checksummed part of the record header
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size  # 32
RECORD_HEADER_SIZE = _RECORD_HEADER.size  # 24
MAX_KIND = 0xFFFF
MAX_RECORD_DATA = 0xFFFF_FFFF
_PADDING = bytes(ALIGN)


class Record(NamedTuple):
    """One log record: ``kind`` (0..65535, meaning chosen by the owner) and opaque ``data``."""

    kind: int
    data: bytes


class SegmentHeader(NamedTuple):
    seq: int
    first_index: int


class Tail(enum.Enum):
    END = "end"
    ZEROS = "zeros"
    TORN = "torn"
    CORRUPT = "corrupt"


@dataclass(frozen=True)
class SegmentScan:
    """What :func:`scan_segment` found: the valid records (with their offsets) and how the segment ends."""

    records: list[tuple[int, Record]]
    end: int  # offset just past the last valid record: where the next record goes
    tail: Tail
    evidence: int | None = None  # for CORRUPT: offset of a valid record found after the damage


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> SegmentHeader | None:
    """``(seq, first_index)`` of a segment file name, or None if ``name`` is not one."""
    if not name.endswith(SEGMENT_SUFFIX) or len(name) != 33 + len(SEGMENT_SUFFIX) or name[16] != "-":
        return None
    try:
        return SegmentHeader(int(name[:16], 16), int(name[17:33], 16))
    except ValueError:
        return None


def encode_segment_header(seq: int, first_index: int) -> bytes:
    unsigned = _SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, 0, seq, first_index)
    return _SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, crc32c(unsigned), seq, first_index)


def decode_segment_header(buf: bytes | memoryview) -> SegmentHeader | str:
    """The header at the start of ``buf``, or a string saying what is wrong with it."""
    if len(buf) < SEGMENT_HEADER_SIZE:
        return f"file is {len(buf)} bytes, shorter than the {SEGMENT_HEADER_SIZE}-byte segment header"
    magic, version, flags, crc, seq, first_index = _SEGMENT_HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        return f"bad segment magic {magic!r}"
    if crc32c(_SEGMENT_HEADER.pack(magic, version, flags, 0, seq, first_index)) != crc:
        return "segment header checksum mismatch"
    if version != FORMAT_VERSION:
        return f"unsupported segment format version {version} (this build reads {FORMAT_VERSION})"
    return SegmentHeader(seq, first_index)


def record_size(data_length: int) -> int:
    """Bytes a record with ``data_length`` bytes of data occupies on disk, padding included."""
    return (RECORD_HEADER_SIZE + data_length + ALIGN - 1) // ALIGN * ALIGN


def encode_record(out: bytearray, kind: int, data: bytes, offset: int) -> int:
    """Append the framed record to ``out``, as placed at segment ``offset``; return the bytes appended."""
    body = _RECORD_BODY.pack(offset, len(data), kind, 0)
    out += RECORD_MAGIC
    out += crc32c(data, crc32c(body)).to_bytes(4, "little")
    out += body
    out += data
    size = record_size(len(data))
    pad = size - RECORD_HEADER_SIZE - len(data)
    if pad:
        out += _PADDING[:pad]
    return size


def _record_at(buf: bytes, pos: int) -> tuple[Record, int] | None:
    """The valid record starting at ``pos`` and the offset after it, or None."""
    if pos + RECORD_HEADER_SIZE > len(buf):
        return None
    magic, crc, offset, length, kind, reserved = _RECORD_HEADER.unpack_from(buf, pos)
    if magic != RECORD_MAGIC or offset != pos or reserved != 0:
        return None
    start = pos + RECORD_HEADER_SIZE
    end = pos + record_size(length)
    if end > len(buf):
        return None
    data = buf[start : start + length]
    if crc32c(data, crc32c(buf[pos + 8 : pos + RECORD_HEADER_SIZE])) != crc:
        return None
    if end > start + length and buf.count(0, start + length, end) != end - start - length:
        return None  # padding must be zeros: every byte of a record is checked
    return Record(kind, data), end


def _valid_record_after(buf: bytes, pos: int) -> int | None:
    """Offset of the first valid record starting after ``pos``, found by searching for the record magic."""
    probe = buf.find(RECORD_MAGIC, pos + 1)
    while probe != -1:
        if probe % ALIGN == 0 and _record_at(buf, probe) is not None:
            return probe
        probe = buf.find(RECORD_MAGIC, probe + 1)
    return None


def scan_segment(buf: bytes) -> SegmentScan:
    """Read the records of a segment whose header (already checked) fills ``buf[:SEGMENT_HEADER_SIZE]``."""
    records: list[tuple[int, Record]] = []
    pos = SEGMENT_HEADER_SIZE
    while pos < len(buf):
        found = _record_at(buf, pos)
        if found is None:
            break
        records.append((pos, found[0]))
        pos = found[1]
    if pos >= len(buf):
        return SegmentScan(records, pos, Tail.END)
    if buf.count(0, pos) == len(buf) - pos:
        return SegmentScan(records, pos, Tail.ZEROS)
    evidence = _valid_record_after(buf, pos)
    if evidence is None:
        return SegmentScan(records, pos, Tail.TORN)
    return SegmentScan(records, pos, Tail.CORRUPT, evidence)
