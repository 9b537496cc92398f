"""Vectorized text operators: a split of a text file, its lines and words, word counts, ``key\\tvalue`` output.

**Splits, like Hadoop's line reader.** A file cut into byte ranges ``[start, start + length)`` is read so that
every line is read by exactly one split: the line beginning at byte ``s`` belongs to the split with
``start < s <= start + length`` (the line at byte 0 to the split starting at 0). So a split that does not start
at 0 skips what precedes its first newline (the previous split finishes that line), and every split reads past
its end to finish its last line.

Everything after the read is column-wise: numpy finds the whitespace or newlines of the whole buffer at once and
the words become one Arrow binary column (offsets + the bytes without the separators); counting and combining
are Arrow hash aggregations. No Python loop runs per word or per line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feitian.errors import InvalidArgumentError
from feitian.job.streamline.keys import binary_parts
from feitian.runtime.files import translating

__all__ = [
    "COUNTS_SCHEMA",
    "ReadAt",
    "combine_counts",
    "count_words",
    "format_tsv",
    "read_split",
    "read_text_split",
    "split_lines",
    "tokenize",
]

ReadAt = Callable[[int, int], bytes]  # read_at(offset, length) -> up to length bytes (fewer only at the end)
SCAN_BYTES = 64 << 10  # a split reads past its end in pieces of this size to finish its last line
COUNTS_SCHEMA = pa.schema([("key", pa.binary()), ("count", pa.int64())])


def read_split(read_at: ReadAt, size: int, start: int, length: int) -> bytes:
    """The whole lines of split ``[start, start + length)`` of a file of ``size`` bytes (see module docstring).

    ``read_at`` reads the file (a local file, a Pangu file: any random access). The split itself is read in one
    call; what follows its end, in pieces of ``SCAN_BYTES`` until the last line's newline."""
    if start < 0 or length < 1:
        raise InvalidArgumentError(f"text split at {start} (+{length}): need start >= 0 and length >= 1")
    if start >= size:
        return b""
    end = min(start + length, size)
    data = read_at(start, end - start)
    if start == 0:
        begin = 0
    else:
        nl = data.find(b"\n")
        if nl < 0:
            return b""  # no line begins in (start, end]: a long line runs through the whole split
        begin = nl + 1
    tail = bytearray()
    pos = end
    while pos < size:  # finish the last line: up to the first newline at or after the end
        piece = read_at(pos, min(SCAN_BYTES, size - pos))
        if not piece:
            break
        nl = piece.find(b"\n")
        if nl >= 0:
            tail += piece[: nl + 1]
            break
        tail += piece
        pos += len(piece)
    return data[begin:] + bytes(tail)


def read_text_split(path: str | os.PathLike[str], start: int, length: int) -> bytes:
    """:func:`read_split` of a local file."""
    with translating("read", path), open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size

        def read_at(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        return read_split(read_at, size, start, length)


def _binary_from_spans(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, keep: np.ndarray) -> pa.Array:
    """A binary column of ``buf[starts[i]:ends[i]]``, built from ``buf`` with the bytes not kept removed."""
    lengths = (ends - starts).astype(np.int64)
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = buf[keep]
    if offsets[-1] < 2**31:
        return pa.Array.from_buffers(
            pa.binary(), len(starts), [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
        )
    return pa.Array.from_buffers(pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def tokenize(data: bytes | bytearray | memoryview) -> pa.Array:
    """The words of ``data`` as a binary column: the same words, in order, as ``bytes(data).split()``."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if not len(buf):
        return pa.array([], pa.binary())
    # bytes.split()'s whitespace: space, and \t \n \v \f \r (9..13; the subtraction wraps below 9)
    word = (buf != 32) & ((buf - np.uint8(9)) > np.uint8(4))
    edges = np.diff(word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return _binary_from_spans(buf, starts, ends, word)


def split_lines(data: bytes | bytearray | memoryview) -> pa.Array:
    """The lines of ``data`` without their newlines (a last line without one included), as a binary column."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if not len(buf):
        return pa.array([], pa.binary())
    newline = buf == ord("\n")
    nl = np.flatnonzero(newline)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(buf)]))
    if starts[-1] == len(buf):  # data ends with a newline: no empty last line
        starts, ends = starts[:-1], ends[:-1]
    return _binary_from_spans(buf, starts, ends, ~newline)


def count_words(words: pa.Array) -> pa.RecordBatch:
    """``(key, count)`` of every distinct word (one Arrow hash pass)."""
    if len(words) == 0:
        return _empty_counts()
    counted = pc.value_counts(words)
    keys = counted.field("values").cast(pa.binary())
    return pa.RecordBatch.from_arrays([keys, counted.field("counts").cast(pa.int64())], schema=COUNTS_SCHEMA)


def _empty_counts() -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], pa.binary()), pa.array([], pa.int64())], schema=COUNTS_SCHEMA)


def combine_counts(batches: pa.RecordBatch | Iterable[pa.RecordBatch]) -> pa.RecordBatch:
    """Sum the counts of equal keys over one or more ``(key, count)`` batches: the reducer of wordcount, and its
    combiner (``PartitionedWriter(..., combiner=combine_counts)`` sums each partition before it is spilled)."""
    if isinstance(batches, pa.RecordBatch):
        batches = [batches]
    parts = [b for b in batches if b.num_rows]
    if not parts:
        return _empty_counts()
    table = pa.Table.from_batches(parts, schema=COUNTS_SCHEMA)
    summed = table.group_by("key").aggregate([("count", "sum")])
    return pa.RecordBatch.from_arrays(
        [summed.column("key").combine_chunks(), summed.column("count_sum").combine_chunks()], schema=COUNTS_SCHEMA
    )


def format_tsv(batch: pa.RecordBatch, key: str = "key", value: str = "count") -> bytes:
    """``key\\tvalue\\n`` per record (numbers in decimal), as one buffer."""
    if batch.num_rows == 0:
        return b""
    keys = batch.column(key).cast(pa.binary())
    values = batch.column(value)
    if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
        values = values.cast(pa.string())
    values = values.cast(pa.binary())
    lines = pc.binary_join_element_wise(keys, values, pa.scalar(b"\t"))
    lines = pc.binary_join_element_wise(lines, pa.scalar(b""), pa.scalar(b"\n"))
    _, data = binary_parts(lines)
    return data.tobytes()
