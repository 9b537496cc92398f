"""The geometry of one chunk replica's file: its superblock (written once at creation) and the size of its two
record slots. Shared by the chunk server (which lays the file out, :mod:`feitian.dfs.chunkserver.chunk_file`)
and the master (which tells servers the geometry of a chunk to create or copy), so it lives in the pure core."""

from __future__ import annotations

import struct

import msgspec
from crc32c import crc32c

from feitian.errors import DataCorruptionError

__all__ = ["PAGE", "SLOT_HEADER", "SLOT_MAGIC", "ChunkGeometry", "slot_bytes_for"]

PAGE = 4096
SUPER_MAGIC = b"FTCHUNK1"
SLOT_MAGIC = b"FTCHSLOT"
FORMAT = 1
_SUPER = struct.Struct("<8sIIQQIIB")  # magic, format, crc, chunk_id, capacity, block, slot_bytes, append_only
SLOT_HEADER = struct.Struct("<8sQII")  # magic, generation, body length, crc32c(generation | length | body)


def slot_bytes_for(capacity_bytes: int, block_size_bytes: int) -> int:
    """Room for a record of a full chunk: 5 msgpack bytes per checksum plus the fixed fields, page-rounded."""
    blocks = -(-capacity_bytes // block_size_bytes)
    need = SLOT_HEADER.size + 256 + 5 * blocks
    return -(-need // PAGE) * PAGE


class ChunkGeometry(msgspec.Struct, frozen=True):
    chunk_id: int
    capacity_bytes: int
    block_size_bytes: int
    append_only: bool

    @property
    def slot_bytes(self) -> int:
        return slot_bytes_for(self.capacity_bytes, self.block_size_bytes)

    @property
    def data_offset(self) -> int:
        return PAGE + 2 * self.slot_bytes

    def superblock(self) -> bytes:
        fields = (self.chunk_id, self.capacity_bytes, self.block_size_bytes, self.slot_bytes, int(self.append_only))
        body = _SUPER.pack(SUPER_MAGIC, FORMAT, 0, *fields)
        crc = crc32c(body)
        return _SUPER.pack(SUPER_MAGIC, FORMAT, crc, *fields).ljust(PAGE, b"\0")

    @classmethod
    def parse(cls, raw: bytes, path: object) -> ChunkGeometry:
        if len(raw) < _SUPER.size:
            raise DataCorruptionError(f"chunk file {path}: superblock truncated", path=str(path))
        magic, fmt, crc, chunk_id, capacity, block, slot_bytes, append_only = _SUPER.unpack_from(raw)
        expect = crc32c(_SUPER.pack(magic, fmt, 0, chunk_id, capacity, block, slot_bytes, append_only))
        if magic != SUPER_MAGIC or fmt != FORMAT or crc != expect or block <= 0:
            raise DataCorruptionError(f"chunk file {path}: bad superblock", path=str(path))
        geometry = cls(chunk_id, capacity, block, bool(append_only))
        if geometry.slot_bytes != slot_bytes:
            raise DataCorruptionError(f"chunk file {path}: slot size {slot_bytes} does not match", path=str(path))
        return geometry
