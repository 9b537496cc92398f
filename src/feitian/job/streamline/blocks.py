"""Streamline's framed record format, on disk and on the wire.

A partition file (and a spill run, and a fetched byte stream) is a sequence of self-contained **blocks**::

    header (20 bytes, little-endian)
      magic     4s   b"SLB1"
      kind      u8   0 = key/value records, 1 = an Arrow record batch (IPC stream)
      (3 bytes reserved, zero)
      records   u32  records in the block
      body_len  u32  bytes of the body that follows (at most MAX_BLOCK_BYTES)
      crc       u32  CRC-32C of the header's first 16 bytes and the body
    body

A key/value body holds the records column-wise, each record's two lengths up front::

    key_len u32[records]   value_len u32[records]   key bytes (concatenated)   value bytes (concatenated)

so it decodes into two Arrow binary arrays without a per-record loop (the offsets are the running sums of the
lengths). An Arrow body is an Arrow IPC stream holding one record batch with its schema. A checksum mismatch, a
bad magic or a length past the bound raises :class:`~feitian.errors.DataCorruptionError` naming where: corrupt
shuffle data is never passed on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from crc32c import crc32c

from feitian.base.units import MiB
from feitian.errors import DataCorruptionError, InvalidArgumentError
from feitian.job.streamline.keys import binary_parts

__all__ = [
    "HEADER",
    "KIND_ARROW",
    "KIND_KV",
    "KV_SCHEMA",
    "MAX_BLOCK_BYTES",
    "BlockParser",
    "decode_block",
    "encode_block",
    "encode_blocks",
    "is_kv",
    "kv_batch",
    "read_blocks",
]

MAGIC = b"SLB1"
HEADER = struct.Struct("<4sB3xIII")
KIND_KV = 0
KIND_ARROW = 1
MAX_BLOCK_BYTES = 64 * MiB  # one block's body; a reader refuses anything longer as corrupt
KV_SCHEMA = pa.schema([("key", pa.binary()), ("value", pa.binary())])


def kv_batch(keys: pa.Array | list[bytes], values: pa.Array | list[bytes]) -> pa.RecordBatch:
    """A key/value record batch (schema :data:`KV_SCHEMA`) from two binary columns or lists of bytes."""
    k = keys if isinstance(keys, pa.Array) else pa.array(keys, pa.binary())
    v = values if isinstance(values, pa.Array) else pa.array(values, pa.binary())
    return pa.RecordBatch.from_arrays([k.cast(pa.binary()), v.cast(pa.binary())], schema=KV_SCHEMA)


def is_kv(schema: pa.Schema) -> bool:
    return bool(schema.equals(KV_SCHEMA))


def _frame(kind: int, records: int, body: bytes) -> bytes:
    if len(body) > MAX_BLOCK_BYTES:
        raise InvalidArgumentError(
            f"a block of {records} records is {len(body)} bytes, over the bound of {MAX_BLOCK_BYTES}",
            hint="a single record must be smaller than 64 MiB; split large values",
        )
    head = struct.pack("<4sB3xII", MAGIC, kind, records, len(body))
    return head + struct.pack("<I", crc32c(body, crc32c(head))) + body


def encode_block(batch: pa.RecordBatch) -> bytes:
    """One framed block holding all of ``batch``."""
    if is_kv(batch.schema):
        if batch.column(0).null_count or batch.column(1).null_count:
            raise InvalidArgumentError("key/value records cannot be null")
        koff, kdata = binary_parts(batch.column(0))
        voff, vdata = binary_parts(batch.column(1))
        body = b"".join(
            (
                np.diff(koff).astype("<u4").tobytes(),
                np.diff(voff).astype("<u4").tobytes(),
                kdata.tobytes(),
                vdata.tobytes(),
            )
        )
        return _frame(KIND_KV, batch.num_rows, body)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as out:
        out.write_batch(batch)
    return _frame(KIND_ARROW, batch.num_rows, sink.getvalue().to_pybytes())


def encode_blocks(batch: pa.RecordBatch, block_bytes: int) -> Iterator[bytes]:
    """``batch`` as blocks of about ``block_bytes`` each (at least one record per block)."""
    n = batch.num_rows
    if n == 0:
        return
    size = max(1, batch.nbytes)
    rows = max(1, (block_bytes * n) // size)
    for start in range(0, n, rows):
        yield encode_block(batch.slice(start, rows))


def decode_block(kind: int, records: int, body: memoryview | bytes, where: str = "block") -> pa.RecordBatch:
    """The record batch a block's verified body holds."""
    if kind == KIND_KV:
        table = np.frombuffer(body, dtype="<u4", count=2 * records) if records else np.zeros(0, "<u4")
        klen, vlen = table[:records].astype(np.int64), table[records:].astype(np.int64)
        koff = np.zeros(records + 1, np.int32)
        voff = np.zeros(records + 1, np.int32)
        np.cumsum(klen, out=koff[1:])
        np.cumsum(vlen, out=voff[1:])
        start = 8 * records
        kend = start + int(koff[-1])
        if kend + int(voff[-1]) != len(body):
            raise DataCorruptionError(f"{where}: record lengths do not add up to the block's body")
        buf = pa.py_buffer(body)
        keys = pa.Array.from_buffers(pa.binary(), records, [None, pa.py_buffer(koff), buf.slice(start, kend - start)])
        values = pa.Array.from_buffers(pa.binary(), records, [None, pa.py_buffer(voff), buf.slice(kend)])
        return pa.RecordBatch.from_arrays([keys, values], schema=KV_SCHEMA)
    if kind == KIND_ARROW:
        reader = pa.ipc.open_stream(pa.py_buffer(body))
        batches = list(reader)
        if len(batches) != 1 or batches[0].num_rows != records:
            raise DataCorruptionError(f"{where}: an Arrow block must hold one batch of {records} records")
        return batches[0]
    raise DataCorruptionError(f"{where}: unknown block kind {kind}")


def _check_header(head: bytes | memoryview, where: str) -> tuple[int, int, int, int]:
    magic, kind, records, length, crc = HEADER.unpack(head)
    if magic != MAGIC:
        raise DataCorruptionError(f"{where}: bad block magic {bytes(magic)!r}")
    if length > MAX_BLOCK_BYTES:
        raise DataCorruptionError(f"{where}: block length {length} is over the bound of {MAX_BLOCK_BYTES}")
    return kind, records, length, crc


def _verify(head: bytes | memoryview, body: bytes | memoryview, crc: int, where: str) -> None:
    if crc32c(body, crc32c(bytes(head[:16]))) != crc:
        raise DataCorruptionError(f"{where}: block checksum mismatch")


class BlockParser:
    """Sans-I/O: feed it bytes as they arrive (fetched pieces of a partition), take out whole, verified batches.

    It holds at most one partial block (the bytes of a block not yet complete), so its memory is bounded by
    :data:`MAX_BLOCK_BYTES` plus one piece."""

    def __init__(self, where: str = "stream") -> None:
        self.where = where
        self._buf = bytearray()
        self.offset = 0  # bytes consumed by whole blocks so far

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[pa.RecordBatch]:
        self._buf += data
        out: list[pa.RecordBatch] = []
        pos = 0
        view = memoryview(self._buf)
        try:
            while len(view) - pos >= HEADER.size:
                head = bytes(view[pos : pos + HEADER.size])
                where = f"{self.where} at byte {self.offset + pos}"
                kind, records, length, crc = _check_header(head, where)
                end = pos + HEADER.size + length
                if end > len(view):
                    break
                body = bytes(view[pos + HEADER.size : end])
                _verify(head, body, crc, where)
                out.append(decode_block(kind, records, body, where))
                pos = end
        finally:
            view.release()
        if pos:
            del self._buf[:pos]
            self.offset += pos
        return out

    def finish(self) -> None:
        """The stream ended: raise if it ended inside a block."""
        if self._buf:
            raise DataCorruptionError(f"{self.where}: stream ends inside a block at byte {self.offset}")


def read_blocks(f: BinaryIO, offset: int, length: int, where: str) -> Iterator[pa.RecordBatch]:
    """The batches of the blocks in bytes ``[offset, offset + length)`` of an open file, one block in memory at a
    time."""
    pos, end = offset, offset + length
    f.seek(offset)
    while pos < end:
        head = f.read(HEADER.size)
        at = f"{where} at byte {pos}"
        if len(head) < HEADER.size:
            raise DataCorruptionError(f"{at}: file ends inside a block header")
        kind, records, body_len, crc = _check_header(head, at)
        body = f.read(body_len)
        if len(body) < body_len or pos + HEADER.size + body_len > end:
            raise DataCorruptionError(f"{at}: block runs past the end of its segment")
        _verify(head, body, crc, at)
        yield decode_block(kind, records, body, at)
        pos += HEADER.size + body_len
