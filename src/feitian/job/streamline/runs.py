"""Runs on local disk: segments of framed blocks, the sink that writes them, the multi-pass merge.

A *segment* is a byte range of a file holding whole blocks (one partition of a spill run, a merged run, a
partition fetched from another machine). Sorted segments are merged with at most ``fan_in`` open at once: while
there are more, the first ``fan_in`` are merged into a new run, so memory stays about ``fan_in`` blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
from crc32c import crc32c

from feitian.errors import DataCorruptionError
from feitian.job.streamline.blocks import encode_blocks, read_blocks
from feitian.job.streamline.merge import merge_sorted
from feitian.runtime.files import translating

__all__ = ["BlockSink", "Segment", "reduce_segments", "segment_batches"]

COPY_BYTES = 1 << 20  # segments are copied in pieces of this size


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    offset: int
    length: int
    records: int


def segment_batches(segment: Segment) -> Iterator[pa.RecordBatch]:
    """The batches of a segment, one block in memory at a time."""
    with translating("read", segment.path), open(segment.path, "rb") as f:
        yield from read_blocks(f, segment.offset, segment.length, str(segment.path))


class BlockSink:
    """Writes blocks to a file, counting bytes and records and the running CRC-32C of what it wrote."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.length = 0
        self.records = 0
        self.crc = 0

    def write_raw(self, data: bytes | bytearray | memoryview) -> None:
        self.f.write(data)
        self.crc = crc32c(data, self.crc)
        self.length += len(data)

    def write_batch(self, batch: pa.RecordBatch, block_bytes: int) -> None:
        for block in encode_blocks(batch, block_bytes):
            self.write_raw(block)
        self.records += batch.num_rows

    def copy_segment(self, segment: Segment) -> None:
        """Append a segment's bytes unchanged (its blocks stay verified by their own checksums)."""
        with translating("read", segment.path), open(segment.path, "rb") as src:
            src.seek(segment.offset)
            left = segment.length
            while left:
                data = src.read(min(COPY_BYTES, left))
                if not data:
                    raise DataCorruptionError(f"run {segment.path} is shorter than its index says")
                self.write_raw(data)
                left -= len(data)
        self.records += segment.records


def reduce_segments(
    segments: list[Segment], fan_in: int, scratch: Path, name: str, key: str, block_bytes: int
) -> tuple[list[Segment], int]:
    """Merge sorted segments in passes until at most ``fan_in`` are left; (what is left, passes made)."""
    passes = 0
    segments = list(segments)
    while len(segments) > fan_in:
        group, segments = segments[:fan_in], segments[fan_in:]
        path = scratch / f"{name}-merge-{passes:05d}"
        with translating("write", path), open(path, "wb") as f:
            sink = BlockSink(f)
            for batch in merge_sorted([segment_batches(s) for s in group], key):
                sink.write_batch(batch, block_bytes)
        segments.append(Segment(path, 0, sink.length, sink.records))
        passes += 1
    return segments, passes
