"""One chunk replica on disk: its bytes and its :class:`ReplicaRecord` (version, length, checksums) in one file.

Layout (all integers little-endian)::

    0           superblock, 4 KiB, written once at creation and never again:
                "FTCHUNK1" | format u32 | crc32c u32 | chunk_id u64 | capacity u64 | block u32 | slot_bytes u32
                | append_only u8
    4096        slot 0 (slot_bytes)   a record: "FTCHSLOT" | generation u64 | length u32 | crc32c u32 | msgpack
    4096+S      slot 1 (slot_bytes)
    4096+2S     the chunk's bytes (data offset 0 = chunk offset 0)

Durability: data is written with ``pwrite`` as writes arrive (in order, one at a time per chunk); a *sync*
writes the current record into the slot the previous sync did not use and calls ``fdatasync`` once for
everything written so far. The latest durable record is never overwritten before a newer one is durable (syncs
alternate slots and never overlap), so after a crash the valid slot with the highest generation is a record
that was durable, and every byte it covers was written before it. Bytes past its length are ignored.

Only the synchronous file operations live here (they run on a worker thread); :mod:`feitian.dfs.chunkserver.store`
orders and batches them on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import msgspec
from crc32c import crc32c

from feitian.dfs.core import ChunkReplica, ReplicaRecord
from feitian.dfs.core.geometry import PAGE, SLOT_HEADER, SLOT_MAGIC, ChunkGeometry, slot_bytes_for
from feitian.errors import DataCorruptionError, FeitianError
from feitian.runtime.files import fsync_dir, os_error, translating, write_all

__all__ = ["ChunkFile", "ChunkGeometry", "slot_bytes_for"]

_SLOT = SLOT_HEADER
_ENCODER = msgspec.msgpack.Encoder()
_RECORD = msgspec.msgpack.Decoder(ReplicaRecord)


def _encode_slot(generation: int, record: ReplicaRecord, slot_bytes: int, path: Path) -> bytes:
    body = _ENCODER.encode(record)
    crc = crc32c(struct.pack("<QI", generation, len(body)) + body)
    out = _SLOT.pack(SLOT_MAGIC, generation, len(body), crc) + body
    if len(out) > slot_bytes:
        raise FeitianError(f"chunk file {path}: record of {len(out)} bytes does not fit its slot ({slot_bytes})")
    return out


def _decode_slot(raw: bytes) -> tuple[int, ReplicaRecord] | None:
    if len(raw) < _SLOT.size:
        return None
    magic, generation, length, crc = _SLOT.unpack_from(raw)
    body = raw[_SLOT.size : _SLOT.size + length]
    if magic != SLOT_MAGIC or len(body) != length or crc32c(struct.pack("<QI", generation, length) + body) != crc:
        return None
    try:
        return generation, _RECORD.decode(body)
    except msgspec.MsgspecError:
        return None


class ChunkFile:
    """An open chunk file. Methods block (call them on a worker thread) and raise translated feitian errors."""

    def __init__(self, path: Path, fd: int, geometry: ChunkGeometry, generation: int) -> None:
        self.path = path
        self.fd = fd
        self.geometry = geometry
        self.generation = generation  # of the last durable record; generation g lives in slot (g - 1) % 2

    # -- creation and loading ------------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, geometry: ChunkGeometry, record: ReplicaRecord) -> ChunkFile:
        """A new file holding ``record`` (durable, including its directory entry) and no data."""
        with translating("create", path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            slots = geometry.slot_bytes
            head = bytearray(geometry.superblock())
            head += _encode_slot(1, record, slots, path).ljust(slots, b"\0")
            head += bytes(slots)  # slot 1: allocated now, so later syncs never need new blocks for it
            with translating("write", path):
                write_all(fd, head, 0)
                os.fdatasync(fd)
            fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return cls(path, fd, geometry, 1)

    @classmethod
    def load(cls, path: Path) -> tuple[ChunkFile, ChunkReplica]:
        """Open an existing file and recover its last durable record (DataCorruptionError if none is valid)."""
        with translating("open", path):
            fd = os.open(path, os.O_RDWR)
        try:
            with translating("read", path):
                geometry = ChunkGeometry.parse(os.pread(fd, PAGE, 0), path)
                slots = geometry.slot_bytes
                found = [_decode_slot(os.pread(fd, slots, PAGE + i * slots)) for i in (0, 1)]
            valid = [f for f in found if f is not None]
            if not valid:
                raise DataCorruptionError(f"chunk file {path}: no valid record slot", path=str(path))
            generation, record = max(valid, key=lambda f: f[0])
            if record.chunk_id != geometry.chunk_id or record.block_size_bytes != geometry.block_size_bytes:
                raise DataCorruptionError(f"chunk file {path}: record does not match its superblock", path=str(path))
            replica = ChunkReplica(record)
            size = os.fstat(fd).st_size
            if size < geometry.data_offset + record.length:
                raise DataCorruptionError(
                    f"chunk file {path}: {size - geometry.data_offset} data bytes, the record says {record.length}",
                    path=str(path),
                )
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, geometry, generation), replica

    # -- I/O -----------------------------------------------------------------------------------------------------

    def pread(self, offset: int, length: int) -> bytes:
        with translating("read", self.path):
            data = os.pread(self.fd, length, self.geometry.data_offset + offset)
        if len(data) != length:
            raise DataCorruptionError(
                f"read {self.path}: {len(data)} of {length} bytes at {offset} (the file is short)", path=str(self.path)
            )
        return data

    def read_blocks(self, blocks: tuple[int, ...], length: int) -> dict[int, bytes]:
        """Whole old blocks (the last one may be short) of a chunk holding ``length`` bytes."""
        block = self.geometry.block_size_bytes
        out = {}
        for b in blocks:
            start = b * block
            n = max(0, min(block, length - start))
            out[b] = self.pread(start, n) if n else b""
        return out

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        with translating("write", self.path):
            write_all(self.fd, data, self.geometry.data_offset + offset)

    def sync(self, record: ReplicaRecord) -> None:
        """Make everything written so far durable with ``record``: the next generation goes into the slot the
        current durable one does not occupy (generation g lives in slot (g - 1) % 2), then one fdatasync."""
        generation = self.generation + 1
        slots = self.geometry.slot_bytes
        raw = _encode_slot(generation, record, slots, self.path)
        try:
            write_all(self.fd, raw, PAGE + ((generation - 1) % 2) * slots)
            os.fdatasync(self.fd)
        except OSError as exc:
            raise os_error(exc, "fsync", self.path) from exc
        self.generation = generation

    def truncate_data(self, length: int) -> None:
        """Give back the space of bytes past ``length`` (after a failed write extended the file)."""
        with translating("truncate", self.path):
            os.ftruncate(self.fd, self.geometry.data_offset + length)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
