"""Snapshot files of the Raft store: ``snap-<term:016x>-<index:016x>.snap``, one per snapshot.

Format (integers little-endian)::

     0  8  magic    b"FTRAFTSN"
     8  2  version  1
    10  2  flags    0
    12  4  crc32c   of bytes 0..12, then bytes 16..24, then the body
    16  8  length   of the body in bytes
    24  .  body     msgpack of consensus.types.Snapshot (meta and data)

A file is written whole to a temporary file, fsynced, renamed into place and its directory fsynced
(:func:`feitian.runtime.files.atomic_write`), so a file under its final name is complete unless the disk
damaged it later; reading checks the length, the checksum and that the name matches the contents.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import msgspec
from crc32c import crc32c

from feitian.consensus import Snapshot, SnapshotMeta
from feitian.errors import DataCorruptionError
from feitian.runtime.files import atomic_write, read_bytes, translating

__all__ = ["SnapshotFile", "list_snapshots", "read_snapshot", "read_snapshot_meta", "snapshot_name", "write_snapshot"]

_MAGIC = b"FTRAFTSN"
_VERSION = 1
_HEADER = struct.Struct("<8sHHIQ")
_SUFFIX = ".snap"
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Snapshot)
_META_DECODER = msgspec.msgpack.Decoder(tuple[SnapshotMeta, msgspec.Raw])


@dataclass(frozen=True)
class SnapshotFile:
    term: int
    index: int
    path: Path


def snapshot_name(term: int, index: int) -> str:
    return f"snap-{term:016x}-{index:016x}{_SUFFIX}"


def _parse_name(name: str) -> tuple[int, int] | None:
    if not (name.startswith("snap-") and name.endswith(_SUFFIX) and len(name) == 5 + 33 + len(_SUFFIX)):
        return None
    try:
        return int(name[5:21], 16), int(name[22:38], 16)
    except ValueError:
        return None


def list_snapshots(directory: Path) -> list[SnapshotFile]:
    """The snapshot files in ``directory``, oldest (lowest index) first."""
    with translating("list", directory):
        names = os.listdir(directory)
    found = []
    for name in names:
        parsed = _parse_name(name)
        if parsed is not None:
            found.append(SnapshotFile(parsed[0], parsed[1], directory / name))
    return sorted(found, key=lambda f: (f.index, f.term))


def _checksum(header: bytes, body: bytes | memoryview) -> int:
    return crc32c(body, crc32c(header[16:24], crc32c(header[:12])))


def write_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    """Durably write ``snapshot`` to its file in ``directory`` and return the path."""
    body = _ENCODER.encode(snapshot)
    unsigned = _HEADER.pack(_MAGIC, _VERSION, 0, 0, len(body))
    header = _HEADER.pack(_MAGIC, _VERSION, 0, _checksum(unsigned, body), len(body))
    path = directory / snapshot_name(snapshot.meta.term, snapshot.meta.index)
    atomic_write(path, header + body)
    return path


def read_snapshot_meta(path: Path) -> tuple[SnapshotMeta, int]:
    """Check the snapshot file at ``path`` whole (length, checksum, name) and return its meta and the size of its
    body, without copying the data out; DataCorruptionError naming the file if it is damaged."""
    body = _checked_body(path, read_bytes(path))
    try:
        meta, _data = _META_DECODER.decode(body)  # the data stays a view of the buffer (msgspec.Raw)
    except msgspec.DecodeError as exc:
        raise _corrupt(path, f"undecodable body: {exc}") from exc
    if _parse_name(path.name) != (meta.term, meta.index):
        raise _corrupt(path, f"contents are snapshot term={meta.term} index={meta.index}")
    return meta, len(body)


def read_snapshot(path: Path) -> Snapshot:
    """Read and verify the snapshot file at ``path``; DataCorruptionError naming the file if it is damaged."""
    body = _checked_body(path, read_bytes(path))
    try:
        snapshot = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise _corrupt(path, f"undecodable body: {exc}") from exc
    if _parse_name(path.name) != (snapshot.meta.term, snapshot.meta.index):
        raise _corrupt(path, f"contents are snapshot term={snapshot.meta.term} index={snapshot.meta.index}")
    return snapshot


def _corrupt(path: Path, what: str) -> DataCorruptionError:
    return DataCorruptionError(
        f"raft store load snapshot {path}: {what}",
        hint="the snapshot was damaged after it was written; restore this replica from its peers",
        path=str(path),
    )


def _checked_body(path: Path, buf: bytes) -> memoryview:
    """The body of a snapshot file's bytes, once its header, length and checksum are checked."""
    if len(buf) < _HEADER.size:
        raise _corrupt(path, f"file is {len(buf)} bytes, shorter than its {_HEADER.size}-byte header")
    magic, version, _flags, crc, length = _HEADER.unpack_from(buf)
    if magic != _MAGIC:
        raise _corrupt(path, f"bad magic {magic!r}")
    if version != _VERSION:
        raise _corrupt(path, f"unsupported snapshot format version {version}")
    if len(buf) != _HEADER.size + length:
        raise _corrupt(path, f"header says {length} body bytes, file has {len(buf) - _HEADER.size}")
    body = memoryview(buf)[_HEADER.size :]
    if _checksum(buf[: _HEADER.size], body) != crc:
        raise _corrupt(path, "checksum mismatch")
    return body
