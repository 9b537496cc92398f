"""Terasort's records, column-wise: 100-byte gensort records with a 10-byte key (the sort benchmark's format).

A buffer of records is one ``(n, 100)`` uint8 array; :func:`records_to_kv` cuts it into a key/value batch (10-byte
keys, 90-byte values) for a :class:`~.writer.PartitionedWriter` with ``Partitioning.range(splitters, sort=True)``:
the range partition uses the keys' 8-byte big-endian prefix and the sort the fixed-width fast path (two
big-endian integers, numpy's lexsort) — the peers' numpy variant, inside streamline. :func:`range_sort` is the
same for one buffer, without a writer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from feitian.errors import InvalidArgumentError
from feitian.job.streamline.blocks import kv_batch
from feitian.job.streamline.keys import binary_parts

__all__ = [
    "KEY_BYTES",
    "RECORD_BYTES",
    "kv_to_records",
    "range_sort",
    "record_array",
    "records_to_kv",
    "sample_splitters",
]

RECORD_BYTES = 100
KEY_BYTES = 10
Records = npt.NDArray[np.uint8]


def record_array(data: bytes | bytearray | memoryview) -> Records:
    """``data`` (whole records) as an ``(n, 100)`` array, without copying."""
    if len(data) % RECORD_BYTES:
        raise InvalidArgumentError(f"terasort input of {len(data)} bytes is not a whole number of 100-byte records")
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)


def _fixed(column: npt.NDArray[np.uint8], width: int) -> pa.Array:
    n = len(column)
    offsets = (np.arange(n + 1, dtype=np.int32) * width).astype(np.int32)
    return pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(column))]
    )


def records_to_kv(records: Records) -> pa.RecordBatch:
    """A key/value batch: the first 10 bytes of each record as its key, the other 90 as its value."""
    return kv_batch(_fixed(records[:, :KEY_BYTES], KEY_BYTES), _fixed(records[:, KEY_BYTES:], RECORD_BYTES - KEY_BYTES))


def kv_to_records(batch: pa.RecordBatch) -> bytes:
    """The 100-byte records of a key/value batch of :func:`records_to_kv`'s shape, in the batch's order."""
    n = batch.num_rows
    _, keys = binary_parts(batch.column(0))
    _, values = binary_parts(batch.column(1))
    if len(keys) != n * KEY_BYTES or len(values) != n * (RECORD_BYTES - KEY_BYTES):
        raise InvalidArgumentError("records of terasort have 10-byte keys and 90-byte values")
    out = np.empty((n, RECORD_BYTES), dtype=np.uint8)
    out[:, :KEY_BYTES] = keys.reshape(n, KEY_BYTES)
    out[:, KEY_BYTES:] = values.reshape(n, RECORD_BYTES - KEY_BYTES)
    return out.tobytes()


def _prefixes(records: Records) -> npt.NDArray[np.uint64]:
    return np.ascontiguousarray(records[:, :8]).view(">u8").ravel().astype(np.uint64)


def sample_splitters(records: Records, partitions: int, *, sample: int = 20_000, seed: int = 0) -> list[int]:
    """``partitions - 1`` prefix splitters from a sample of the records' keys (the peers' sampling)."""
    if partitions < 1:
        raise InvalidArgumentError(f"partitions must be >= 1, got {partitions}")
    if len(records) == 0:
        return [0] * (partitions - 1)
    idx = np.random.default_rng(seed).choice(len(records), min(sample, len(records)), replace=False)
    s = np.sort(_prefixes(records[idx]))
    return [int(x) for x in s[(np.arange(1, partitions) * len(s)) // partitions]]


def range_sort(records: Records, splitters: Sequence[int]) -> list[Records]:
    """The records range-partitioned on their key prefix and each partition sorted by the whole 10-byte key."""
    s = np.asarray(splitters, dtype=np.uint64)
    prefix = _prefixes(records)
    pid = np.searchsorted(s, prefix, side="right")
    low = np.ascontiguousarray(records[:, 8:10]).view(">u2").ravel()
    order = np.lexsort((low, prefix, pid))  # by partition, then by key: one sort for all partitions
    ordered = records[order]
    bounds = np.searchsorted(pid[order], np.arange(len(s) + 2))
    return [ordered[bounds[j] : bounds[j + 1]] for j in range(len(s) + 1)]
