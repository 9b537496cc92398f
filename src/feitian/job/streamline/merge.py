"""The k-way merge of sorted streams of record batches, column-wise.

:class:`Merger` is sans-I/O: its driver hands it the next batch of a source when :meth:`Merger.wanted` names that
source, and takes merged batches out with :meth:`Merger.pop`. Each source holds at most one batch (the rest of
its last one), so a merge of ``k`` sources holds about ``k`` blocks whatever the data size.

One step: every source that has not ended has a batch; the smallest of their *last* keys is a bound below which
nothing is still to come; the records ≤ bound of every source are taken (a prefix of each, the batches being
sorted), sorted together with one vectorized sort, and handed out. The source that set the bound is then empty
and is asked for its next batch. The order of records with equal keys from different sources is unspecified.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from feitian.errors import InternalError
from feitian.job.streamline.keys import sort_indices

__all__ = ["Merger", "concat_batches", "merge_sorted", "sort_batch"]


def concat_batches(batches: list[pa.RecordBatch], schema: pa.Schema | None = None) -> pa.RecordBatch:
    """One contiguous batch holding ``batches`` in order."""
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches, schema=schema if schema is not None else batches[0].schema)
    return table.combine_chunks().to_batches()[0] if table.num_rows else batches[0].slice(0, 0)


def sort_batch(batch: pa.RecordBatch, key: str = "key") -> pa.RecordBatch:
    """``batch`` sorted by its ``key`` column (stable)."""
    if batch.num_rows < 2:
        return batch
    return batch.take(pa.array(sort_indices(batch.column(key))))


class Merger:
    def __init__(self, sources: int, key: str = "key") -> None:
        self.key = key
        self._pending: list[pa.RecordBatch | None] = [None] * sources
        self._ended = [False] * sources

    def wanted(self) -> list[int]:
        """Sources whose next batch is needed before :meth:`pop` can go on."""
        return [i for i, b in enumerate(self._pending) if b is None and not self._ended[i]]

    def add(self, source: int, batch: pa.RecordBatch) -> None:
        if self._pending[source] is not None or self._ended[source]:
            raise InternalError(f"merge: source {source} was not asked for a batch")
        if batch.num_rows:
            self._pending[source] = batch

    def end(self, source: int) -> None:
        self._ended[source] = True

    @property
    def finished(self) -> bool:
        return all(self._ended) and all(b is None for b in self._pending)

    def pop(self) -> pa.RecordBatch | None:
        """The next merged batch, or None when a source must be fed first (or everything was handed out)."""
        if self.wanted():
            return None
        live = [i for i, b in enumerate(self._pending) if b is not None]
        if not live:
            return None
        open_sources = [i for i in live if not self._ended[i]]
        taken: list[pa.RecordBatch] = []
        if not open_sources:
            taken = [b for b in self._pending if b is not None]
            self._pending = [None] * len(self._pending)
        else:
            bound = min(self._last_key(i) for i in open_sources)
            scalar = pa.scalar(bound, type=self._batch(live[0]).schema.field(self.key).type)
            for i in live:
                batch = self._batch(i)
                count = pc.sum(pc.less_equal(batch.column(self.key), scalar)).as_py() or 0
                if count:
                    taken.append(batch.slice(0, count))
                self._pending[i] = batch.slice(count) if count < batch.num_rows else None
        if not taken:
            return None
        return sort_batch(concat_batches(taken), self.key)

    def _batch(self, i: int) -> pa.RecordBatch:
        batch = self._pending[i]
        assert batch is not None
        return batch

    def _last_key(self, i: int) -> Any:
        batch = self._batch(i)
        return batch.column(self.key)[batch.num_rows - 1].as_py()


def merge_sorted(sources: list[Iterable[pa.RecordBatch]], key: str = "key") -> Iterator[pa.RecordBatch]:
    """Drive a :class:`Merger` over synchronous sources (local files)."""
    its = [iter(s) for s in sources]
    merger = Merger(len(its), key)
    while not merger.finished:
        for i in merger.wanted():
            batch = next(its[i], None)
            if batch is None:
                merger.end(i)
            else:
                merger.add(i, batch)
        out = merger.pop()
        if out is not None:
            yield out
