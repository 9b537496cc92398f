"""The producer side: an instance's output, partitioned, spilled under a memory bound, merged, committed.

::

    writer = PartitionedWriter(store, "job-7.map", instance=3, attempt=0,
                               partitioning=Partitioning.hash(8, sort=True), config=StreamlineConfig())
    writer.write(batch)            # any number of record batches (kv_batch(...) or Arrow batches)
    result = writer.close()        # merge the runs, write part files + index, commit atomically

Buffered records never exceed ``config.memory_bytes`` (counted as the Arrow bytes of the partitioned batches):
before a batch would cross the bound, the buffer is written to disk as one *run* (each partition's records as a
segment of blocks, sorted when the edge is sorted; a ``combiner`` may shrink them first). On close each
partition's segments become one file: concatenated block by block when unsorted, k-way merged when sorted (in
several passes if there are more runs than ``config.merge_fan_in``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from feitian.errors import InvalidArgumentError
from feitian.job.core import Pattern
from feitian.job.streamline.blocks import encode_blocks
from feitian.job.streamline.config import StreamlineConfig
from feitian.job.streamline.keys import hash_partition_ids, range_partition_ids
from feitian.job.streamline.merge import concat_batches, merge_sorted, sort_batch
from feitian.job.streamline.runs import BlockSink, Segment, reduce_segments, segment_batches
from feitian.job.streamline.store import CommitResult, OutputIndex, OutputStore, PartitionEntry, part_name
from feitian.runtime.files import ensure_dir, translating

__all__ = ["PartitionedWriter", "Partitioning", "WriterStats"]


@dataclass(frozen=True, slots=True)
class Partitioning:
    """How an instance's records are split among the consumer's instances.

    ``mode`` is ``"hash"`` (``stable_hash(key) % partitions``), ``"range"`` (by the key's 8-byte big-endian
    prefix against ``splitters``, ``len(splitters) == partitions - 1``) or ``"single"`` (one partition: the
    ``1:1`` and broadcast patterns). ``sort``: each partition sorted by ``key``."""

    mode: str
    partitions: int = 1
    splitters: tuple[int, ...] = ()
    key: str = "key"
    sort: bool = False

    @classmethod
    def hash(cls, partitions: int, *, key: str = "key", sort: bool = False) -> Partitioning:
        return cls("hash", partitions, (), key, sort)

    @classmethod
    def range(cls, splitters: Iterable[int], *, key: str = "key", sort: bool = True) -> Partitioning:
        s = tuple(int(x) for x in splitters)
        return cls("range", len(s) + 1, s, key, sort)

    @classmethod
    def single(cls, *, key: str = "key", sort: bool = False) -> Partitioning:
        return cls("single", 1, (), key, sort)

    @classmethod
    def for_edge(
        cls, pattern: Pattern, consumers: int, *, splitters: Iterable[int] = (), key: str = "key", sort: bool = False
    ) -> Partitioning:
        """The partitioning an edge of the job graph asks of its producers."""
        if pattern is Pattern.HASH:
            return cls.hash(consumers, key=key, sort=sort)
        if pattern is Pattern.RANGE:
            return cls.range(splitters, key=key, sort=sort)
        return cls.single(key=key, sort=sort)

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.mode not in ("hash", "range", "single"):
            out.append(f"mode must be hash, range or single, got {self.mode!r}")
        if self.partitions < 1:
            out.append(f"partitions must be >= 1, got {self.partitions}")
        if self.mode == "single" and self.partitions != 1:
            out.append("a single partitioning has exactly one partition")
        if self.mode == "range":
            if len(self.splitters) != self.partitions - 1:
                out.append(f"{self.partitions} range partitions need {self.partitions - 1} splitters")
            if any(b < a for a, b in zip(self.splitters, self.splitters[1:], strict=False)):
                out.append("splitters must be ascending")
            if any(not 0 <= s < 1 << 64 for s in self.splitters):
                out.append("splitters are 8-byte key prefixes: each in 0..2**64-1")
        return out

    def ids(self, batch: pa.RecordBatch) -> npt.NDArray[np.int64]:
        """The partition of every record of ``batch``."""
        if self.mode == "single":
            return np.zeros(batch.num_rows, np.int64)
        keys = batch.column(self.key)
        if self.mode == "hash":
            return hash_partition_ids(keys, self.partitions)
        return range_partition_ids(keys, self.splitters)


@dataclass(slots=True)
class WriterStats:
    records: int = 0
    buffered_bytes: int = 0
    peak_buffered_bytes: int = 0
    spills: int = 0
    spilled_bytes: int = 0
    merge_passes: int = 0


@dataclass(slots=True)
class _Run:
    segments: dict[int, Segment] = field(default_factory=dict)


class PartitionedWriter:
    """Writes one attempt of one producer instance (see the module docstring). Not thread-safe."""

    def __init__(
        self,
        store: OutputStore,
        output: str,
        instance: int,
        attempt: int,
        partitioning: Partitioning,
        config: StreamlineConfig | None = None,
        *,
        combiner: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
    ) -> None:
        self.config = config or StreamlineConfig()
        self.config.validate()
        problems = partitioning.problems()
        if problems:
            raise InvalidArgumentError(f"streamline output {output}: " + "; ".join(problems))
        self.store = store
        self.output = output
        self.instance = instance
        self.attempt = attempt
        self.partitioning = partitioning
        self.combiner = combiner
        self.dir = store.attempt_dir(output, instance, attempt)
        if self.dir.exists():
            shutil.rmtree(self.dir)  # a leftover of the same attempt that died: start over
        self.spill_dir = ensure_dir(self.dir / "spill")
        self.schema: pa.Schema | None = None
        self.stats = WriterStats()
        self._buffers: list[list[pa.RecordBatch]] = [[] for _ in range(partitioning.partitions)]
        self._runs: list[_Run] = []
        self._closed = False

    # -- writing -------------------------------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        """Add ``batch``'s records (every batch of one writer has the same schema)."""
        if self._closed:
            raise InvalidArgumentError(f"streamline output {self.output}: write after close")
        if self.schema is None:
            if self.partitioning.key not in batch.schema.names:
                raise InvalidArgumentError(
                    f"streamline output {self.output}: records have no key column {self.partitioning.key!r}"
                )
            key_type = batch.schema.field(self.partitioning.key).type
            binary = pa.types.is_binary(key_type) or pa.types.is_large_binary(key_type) or pa.types.is_string(key_type)
            if self.partitioning.mode != "single" and not binary:
                raise InvalidArgumentError(
                    f"streamline output {self.output}: {self.partitioning.mode} partitions need a binary or string "
                    f"key column, {self.partitioning.key!r} is {key_type}",
                    hint="cast the key to binary, or use a single partition",
                )
            self.schema = batch.schema
        elif not batch.schema.equals(self.schema):
            raise InvalidArgumentError(
                f"streamline output {self.output}: batch schema {batch.schema} differs from the first {self.schema}"
            )
        if batch.num_rows == 0:
            return
        self.stats.records += batch.num_rows
        limit = self.config.memory_bytes // 4
        if batch.nbytes <= limit or batch.num_rows == 1:
            self._add(batch)
            return
        rows = max(1, (batch.num_rows * limit) // max(1, batch.nbytes))
        for start in range(0, batch.num_rows, rows):
            self._add(batch.slice(start, rows))

    def _add(self, batch: pa.RecordBatch) -> None:
        ids = self.partitioning.ids(batch)
        if self.partitioning.partitions == 1:
            parts = {0: batch}
        else:
            order = np.argsort(ids, kind="stable")
            grouped = batch.take(pa.array(order))
            bounds = np.searchsorted(ids[order], np.arange(self.partitioning.partitions + 1))
            parts = {
                j: grouped.slice(int(bounds[j]), int(bounds[j + 1] - bounds[j]))
                for j in range(self.partitioning.partitions)
                if bounds[j + 1] > bounds[j]
            }
        size = sum(p.nbytes for p in parts.values())
        if size > self.config.memory_bytes and batch.num_rows > 1:
            half = batch.num_rows // 2  # skewed rows: halve until a piece fits the bound
            self._add(batch.slice(0, half))
            self._add(batch.slice(half))
            return
        if self.stats.buffered_bytes + size > self.config.memory_bytes:
            self._spill()
        for j, part in parts.items():
            self._buffers[j].append(part)
        self.stats.buffered_bytes += size
        self.stats.peak_buffered_bytes = max(self.stats.peak_buffered_bytes, self.stats.buffered_bytes)
        if self.stats.buffered_bytes > self.config.memory_bytes:
            self._spill()  # one record larger than the bound: buffered alone, spilled at once

    def _partition_batch(self, j: int) -> pa.RecordBatch | None:
        batches = self._buffers[j]
        if not batches:
            return None
        batch = concat_batches(batches, self.schema)
        if self.combiner is not None:
            batch = self.combiner(batch)
        if self.partitioning.sort:
            batch = sort_batch(batch, self.partitioning.key)
        return batch

    def _spill(self) -> None:
        """Write the buffer as one run (a segment per partition) and empty it."""
        if self.stats.buffered_bytes == 0:
            return
        path = self.spill_dir / f"run-{len(self._runs):05d}"
        run = _Run()
        with translating("write", path), open(path, "wb") as f:
            for j in range(self.partitioning.partitions):
                batch = self._partition_batch(j)
                self._buffers[j] = []
                if batch is None:
                    continue
                start = f.tell()
                for block in encode_blocks(batch, self.config.block_bytes):
                    f.write(block)
                run.segments[j] = Segment(path, start, f.tell() - start, batch.num_rows)
            self.stats.spilled_bytes += f.tell()
        self._runs.append(run)
        self.stats.spills += 1
        self.stats.buffered_bytes = 0

    # -- closing -------------------------------------------------------------------------------------------------

    def close(self) -> CommitResult:
        """Write one file per partition and the index, and commit them atomically (see :mod:`.store`)."""
        if self._closed:
            raise InvalidArgumentError(f"streamline output {self.output}: closed twice")
        self._closed = True
        try:
            if self._runs:
                self._spill()  # the last run: what is still buffered, so every partition merges runs only
            entries = [self._finish_partition(j) for j in range(self.partitioning.partitions)]
            shutil.rmtree(self.spill_dir, ignore_errors=True)
            index = OutputIndex(
                self.output, self.instance, self.attempt, self.partitioning.sort, self.partitioning.key, tuple(entries)
            )
            return self.store.commit(self.dir, index)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything this attempt wrote (nothing of it was visible)."""
        self._closed = True
        self._buffers = [[] for _ in range(self.partitioning.partitions)]
        self.stats.buffered_bytes = 0
        shutil.rmtree(self.dir, ignore_errors=True)

    def _finish_partition(self, j: int) -> PartitionEntry:
        path = self.dir / part_name(j)
        with translating("write", path), open(path, "wb") as f:
            sink = BlockSink(f)
            if not self._runs:  # everything fit in memory: no run files at all
                batch = self._partition_batch(j)
                self._buffers[j] = []
                if batch is not None:
                    sink.write_batch(batch, self.config.block_bytes)
            else:
                segments = [run.segments[j] for run in self._runs if j in run.segments]
                if self.partitioning.sort and len(segments) > 1:
                    segments = self._reduce_runs(j, segments)
                    for batch in merge_sorted([segment_batches(s) for s in segments], self.partitioning.key):
                        sink.write_batch(batch, self.config.block_bytes)
                else:
                    for s in segments:
                        sink.copy_segment(s)
            f.flush()
            os.fsync(f.fileno())
        return PartitionEntry(sink.length, sink.records, sink.crc)

    def _reduce_runs(self, j: int, segments: list[Segment]) -> list[Segment]:
        left, passes = reduce_segments(
            segments,
            self.config.merge_fan_in,
            self.spill_dir,
            f"p{j:05d}",
            self.partitioning.key,
            self.config.block_bytes,
        )
        self.stats.merge_passes += passes
        return left
