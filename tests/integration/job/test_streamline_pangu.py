"""Streamline's per-edge alternative through Pangu, on a real Pangu cluster (1 master, 3 chunk servers): one file
per (producer instance, partition), published with one atomic rename, a second attempt refused, and consumers
reading partitions equal to the plain Python reference."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from feitian.job.streamline import (
    CommitResult,
    OutputStore,
    PanguOutput,
    PartitionedWriter,
    Partitioning,
    StreamlineConfig,
    kv_batch,
    stable_hash,
)
from feitian.testing.dfs import running_dfs

CONFIG = StreamlineConfig(memory_bytes=64 << 10, block_bytes=4 << 10, fetch_piece_bytes=16 << 10)
Record = tuple[bytes, bytes]


def records_of(seed: int, n: int) -> list[Record]:
    rng = random.Random(seed)
    return [(rng.randbytes(rng.randint(1, 12)), rng.randbytes(rng.randint(0, 120))) for _ in range(n)]


def produce(store: OutputStore, instance: int, attempt: int, records: list[Record]) -> CommitResult:
    w = PartitionedWriter(store, "edge", instance, attempt, Partitioning.hash(2, sort=True), CONFIG)
    w.write(kv_batch([k for k, _ in records], [v for _, v in records]))
    return w.close()


async def test_an_edge_through_pangu(tmp_path: Path) -> None:
    inputs = {0: records_of(1, 1200), 1: records_of(2, 900)}
    async with running_dfs(tmp_path / "pangu", masters=1, chunkservers=3) as (_, dfs):
        pangu = PanguOutput(dfs, "/jobs/j1", CONFIG, replication=1)
        for instance, records in inputs.items():
            store = OutputStore(tmp_path / f"worker-{instance}")
            assert await pangu.publish(store, produce(store, instance, 0, records))
        # a backup of instance 0 on a third worker finishes later: refused, its upload deleted
        late = OutputStore(tmp_path / "worker-late")
        assert not await pangu.publish(late, produce(late, 0, 1, inputs[0]))
        assert [e.name for e in await dfs.list("/jobs/j1/edge/attempts")] == []
        names = sorted(e.name for e in await dfs.list("/jobs/j1/edge/committed/0"))
        assert names == ["index.json", "part-00000", "part-00001"]
        assert (await pangu.index("edge", 0)).attempt == 0

        for j in range(2):
            want = [r for recs in inputs.values() for r in recs if stable_hash(r[0]) % 2 == j]
            for sort in (True, False):
                got = [
                    r
                    async for b in pangu.fetch("edge", [0, 1], j, sort=sort)
                    for r in zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True)
                ]
                assert Counter(got) == Counter(want)
                if sort:
                    assert [k for k, _ in got] == sorted(k for k, _ in want)
