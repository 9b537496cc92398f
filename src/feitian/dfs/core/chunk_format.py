"""Chunk data integrity: a crc32c per block (64 KiB by default), computed when data is written (PANGU-4).

A chunk replica is its data plus a checksum table: ``checksums[i]`` is the crc32c of block ``i`` (bytes
``[i * block, min((i + 1) * block, length))``; the last block may be short). The chunk server writes both before
it acknowledges a write (``encode_checksums`` gives the table's bytes, 4 little-endian bytes per block).

* Reading ``[offset, offset + n)``: read the block-aligned span :func:`read_span`, then
  :func:`verified_slice` checks every block in it and returns the requested bytes, or raises
  DataCorruptionError naming the first bad block (the client reads another replica and reports this one).
* Writing ``data`` at ``offset``: :func:`plan_block_write` says which old blocks must be read (a block only
  partly overwritten); :func:`apply_block_write` verifies those old blocks — new bytes are never merged into a
  corrupt block — and returns the new checksum table and length.

The write-pipeline state of one replica is :class:`~feitian.dfs.core.chunk_replica.ChunkReplica`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import msgspec
from crc32c import crc32c

from feitian.errors import DataCorruptionError, InvalidArgumentError

__all__ = [
    "BlockWrite",
    "apply_block_write",
    "block_checksums",
    "decode_checksums",
    "encode_checksums",
    "plan_block_write",
    "read_span",
    "truncated_checksums",
    "verified_slice",
    "verify_blocks",
]


def _check_block_size(block_size: int) -> None:
    if block_size <= 0:
        raise InvalidArgumentError(f"checksum block size must be > 0, got {block_size}")


def block_checksums(data: bytes, block_size: int) -> list[int]:
    """The crc32c of each block of ``data`` (which starts at a block boundary); the last may be short."""
    _check_block_size(block_size)
    view = memoryview(data)
    return [crc32c(view[i : i + block_size]) for i in range(0, len(data), block_size)]


def encode_checksums(checksums: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(checksums)}I", *checksums)


def decode_checksums(data: bytes) -> list[int]:
    if len(data) % 4:
        raise DataCorruptionError(f"checksum table of {len(data)} bytes is not a whole number of entries")
    return list(struct.unpack(f"<{len(data) // 4}I", data))


def _blocks_for(length: int, block_size: int) -> int:
    return -(-length // block_size)


def read_span(chunk_length: int, offset: int, length: int, block_size: int) -> tuple[int, int]:
    """The block-aligned ``[start, end)`` a replica must read (and verify) to serve ``[offset, offset + length)``."""
    _check_block_size(block_size)
    if offset < 0 or length < 0 or offset + length > chunk_length:
        raise InvalidArgumentError(
            f"read chunk: bytes [{offset}, {offset + length}) are outside the chunk's {chunk_length} bytes",
            offset=offset,
            length=length,
            chunk_length=chunk_length,
        )
    if length == 0:
        return offset, offset
    start = offset - offset % block_size
    end = min(_blocks_for(offset + length, block_size) * block_size, chunk_length)
    return start, end


def verify_blocks(data: bytes, start: int, checksums: Sequence[int], block_size: int, *, what: str = "chunk") -> None:
    """Check each block of ``data`` (read from block-aligned offset ``start``) against ``checksums``."""
    _check_block_size(block_size)
    if start % block_size:
        raise InvalidArgumentError(f"verify {what}: offset {start} is not block-aligned ({block_size})")
    view = memoryview(data)
    first = start // block_size
    for i, pos in enumerate(range(0, len(data), block_size)):
        block = first + i
        if block >= len(checksums):
            raise DataCorruptionError(
                f"{what}: block {block} has no checksum (table has {len(checksums)})", block=block
            )
        actual = crc32c(view[pos : pos + block_size])
        if actual != checksums[block]:
            raise DataCorruptionError(
                f"{what}: checksum mismatch in block {block} (bytes {start + pos}..{start + pos + block_size}): "
                f"stored {checksums[block]:#010x}, computed {actual:#010x}",
                block=block,
                expected=checksums[block],
                actual=actual,
            )


def verified_slice(
    data: bytes, start: int, offset: int, length: int, checksums: Sequence[int], block_size: int, *, what: str = "chunk"
) -> bytes:
    """Verify the aligned span ``data`` (from :func:`read_span`) and return bytes ``[offset, offset + length)``."""
    if offset < start or offset + length > start + len(data):
        raise InvalidArgumentError(f"read {what}: [{offset}, {offset + length}) is not inside the span read")
    verify_blocks(data, start, checksums, block_size, what=what)
    if offset == start and length == len(data) and isinstance(data, bytes):
        return data  # the whole span was asked for: no copy
    return bytes(data[offset - start : offset - start + length])


class BlockWrite(msgspec.Struct, frozen=True):
    """The blocks a write touches (``first``..``end`` exclusive) and the old blocks to read before applying it."""

    first: int
    end: int
    old_blocks: tuple[int, ...]
    new_length: int


def plan_block_write(chunk_length: int, offset: int, length: int, capacity: int, block_size: int) -> BlockWrite:
    """Plan writing ``length`` bytes at ``offset`` of a chunk holding ``chunk_length`` bytes (no holes)."""
    _check_block_size(block_size)
    if length <= 0 or offset < 0 or offset > chunk_length:
        raise InvalidArgumentError(
            f"write chunk: offset {offset} must be within the chunk's {chunk_length} bytes (no holes) and length "
            f"{length} > 0"
        )
    if offset + length > capacity:
        raise InvalidArgumentError(
            f"write chunk: bytes [{offset}, {offset + length}) exceed the chunk capacity {capacity}", capacity=capacity
        )
    end_byte = offset + length
    first, end = offset // block_size, _blocks_for(end_byte, block_size)
    old: list[int] = []
    if offset % block_size:
        old.append(first)  # the head block keeps old bytes before the write
    last = end - 1
    if end_byte < chunk_length and end_byte % block_size and last not in old:
        old.append(last)  # the tail block keeps old bytes after the write
    return BlockWrite(first, end, tuple(old), max(chunk_length, end_byte))


def _old_block_length(block: int, chunk_length: int, block_size: int) -> int:
    return max(0, min(block_size, chunk_length - block * block_size))


def apply_block_write(
    checksums: Sequence[int],
    chunk_length: int,
    offset: int,
    data: bytes | bytearray | memoryview,
    old_blocks: Mapping[int, bytes],
    capacity: int,
    block_size: int,
    *,
    what: str = "chunk",
) -> tuple[list[int], int]:
    """The checksum table and length after writing ``data`` at ``offset``.

    ``old_blocks`` holds the old content of each block :func:`plan_block_write` listed; each is verified against
    the old table first (DataCorruptionError: the caller must repair this replica instead of writing to it).
    """
    plan = plan_block_write(chunk_length, offset, len(data), capacity, block_size)
    if len(checksums) != _blocks_for(chunk_length, block_size):
        raise InvalidArgumentError(f"write {what}: {len(checksums)} checksums for {chunk_length} bytes")
    table = list(checksums)
    for block in plan.old_blocks:
        old = old_blocks.get(block)
        if old is None or len(old) != _old_block_length(block, chunk_length, block_size):
            raise InvalidArgumentError(f"write {what}: the old content of block {block} is needed (whole block)")
        verify_blocks(old, block * block_size, table, block_size, what=what)
    end_byte = offset + len(data)
    view = memoryview(data)
    for block in range(plan.first, plan.end):
        block_start = block * block_size
        new_len = min(block_size, plan.new_length - block_start)
        lo, hi = max(offset, block_start), min(end_byte, block_start + new_len)
        if lo == block_start and hi == block_start + new_len:
            crc = crc32c(view[lo - offset : hi - offset])  # the write covers the whole block: no copy
        else:
            buffer = bytearray(old_blocks.get(block, b"")[:new_len])
            buffer.extend(bytes(new_len - len(buffer)))
            buffer[lo - block_start : hi - block_start] = view[lo - offset : hi - offset]
            crc = crc32c(bytes(buffer))
        if block < len(table):
            table[block] = crc
        else:
            table.append(crc)
    return table, plan.new_length


def truncated_checksums(
    checksums: Sequence[int], chunk_length: int, new_length: int, last_block: bytes | None, block_size: int
) -> list[int]:
    """The table after cutting a chunk to ``new_length``. If the new last block is partial, ``last_block`` must
    be that block's old (whole) content: it is verified, then its new prefix checksummed."""
    if not 0 <= new_length <= chunk_length:
        raise InvalidArgumentError(f"truncate chunk: new length {new_length} outside 0..{chunk_length}")
    keep = _blocks_for(new_length, block_size)
    table = list(checksums[:keep])
    cut = new_length % block_size
    if cut and new_length < chunk_length:
        block = keep - 1
        if last_block is None or len(last_block) != _old_block_length(block, chunk_length, block_size):
            raise InvalidArgumentError(f"truncate chunk: the old content of block {block} is needed (whole block)")
        verify_blocks(last_block, block * block_size, checksums, block_size)
        table[block] = crc32c(last_block[:cut])
    return table
