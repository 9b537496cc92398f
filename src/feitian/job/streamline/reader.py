"""The consumer side on one machine: partition ``j`` of every producer instance, from committed local files.

Streaming: one block per producer in memory (the k-way merge of a sorted edge), or one block at a time (an
unsorted edge, the producers read one after another). The remote path is :class:`~.transfer.ShuffleClient`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa

from feitian.errors import InvalidArgumentError
from feitian.job.streamline.blocks import read_blocks
from feitian.job.streamline.merge import merge_sorted
from feitian.job.streamline.store import OutputStore
from feitian.runtime.files import translating

__all__ = ["read_partition"]


def _instance_batches(store: OutputStore, output: str, instance: int, partition: int) -> Iterator[pa.RecordBatch]:
    index = store.index(output, instance)
    if not 0 <= partition < len(index.partitions):
        raise InvalidArgumentError(f"{output}/{instance}: partition {partition} of {len(index.partitions)}")
    entry = index.partitions[partition]
    path = store.partition_path(output, instance, partition)
    with translating("read", path), open(path, "rb") as f:
        yield from read_blocks(f, 0, entry.length, str(path))


def read_partition(
    store: OutputStore, output: str, instances: Sequence[int], partition: int, *, sort: bool = False, key: str = "key"
) -> Iterator[pa.RecordBatch]:
    """The records of ``partition`` of each committed producer instance, merged by ``key`` when ``sort``."""
    sources: list[Iterable[pa.RecordBatch]] = [_instance_batches(store, output, i, partition) for i in instances]
    if sort:
        yield from merge_sorted(sources, key)
    else:
        for source in sources:
            yield from source
