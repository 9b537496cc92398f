"""Streamline's shuffle over real Kuafu servers on 127.0.0.1: producers commit partitioned outputs on two
"workers" (each a Kuafu server over its own store), a consumer fetches partition j of every producer instance
over the bulk path, and the result equals a plain Python reference; sorted fetches merge in memory or staged on
disk under the memory bound; a producer's other location is used when the first cannot serve it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pyarrow as pa
import pytest

from feitian.errors import UnavailableError
from feitian.job.streamline import (
    FetchPartition,
    FetchReply,
    OutputStore,
    PartitionedWriter,
    Partitioning,
    ProducerLocation,
    ShuffleClient,
    ShuffleService,
    StreamlineConfig,
    kv_batch,
    stable_hash,
)
from feitian.rpc import CallContext, Client, ClientConfig, Server, ServerConfig
from feitian.testing.rpc import serving

Record = tuple[bytes, bytes]
CONFIG = StreamlineConfig(memory_bytes=64 << 10, block_bytes=4 << 10, fetch_piece_bytes=8 << 10, fetch_parallelism=2)
PARTITIONS = 3


def records_of(seed: int, n: int) -> list[Record]:
    rng = random.Random(seed)
    return [(rng.randbytes(rng.randint(1, 12)), rng.randbytes(rng.randint(0, 120))) for _ in range(n)]


def produce(store: OutputStore, instance: int, records: list[Record], sort: bool, attempt: int = 0) -> None:
    w = PartitionedWriter(store, "edge", instance, attempt, Partitioning.hash(PARTITIONS, sort=sort), CONFIG)
    for start in range(0, len(records), 100):
        piece = records[start : start + 100]
        w.write(kv_batch([k for k, _ in piece], [v for _, v in piece]))
    assert w.close().committed


def rows(batches: list[pa.RecordBatch]) -> list[Record]:
    return [r for b in batches for r in zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True)]


@asynccontextmanager
async def workers(
    tmp: Path, n: int, services: list[ShuffleService] | None = None
) -> AsyncIterator[list[tuple[OutputStore, str]]]:
    """``n`` workers: a store each, served by a real Kuafu server on an ephemeral 127.0.0.1 port."""
    async with AsyncExitStack() as stack:
        out = []
        for i in range(n):
            store = OutputStore(tmp / f"worker-{i}")
            server = Server(ServerConfig(name=f"worker-{i}"))
            service = ShuffleService(store)
            service.register(server)
            if services is not None:
                services.append(service)
            _, address = await stack.enter_async_context(serving(server))
            out.append((store, address))
        yield out


async def fetch_all(client: ShuffleClient, producers: list[ProducerLocation], j: int, sort: bool) -> list[Record]:
    return rows([b async for b in client.fetch("edge", producers, j, sort=sort)])


@pytest.mark.parametrize(
    ("memory_bytes", "staged"), [(256 << 10, False), (32 << 10, True)], ids=["merge-in-memory", "staged-on-disk"]
)
async def test_consumers_fetch_every_partition_like_the_reference(
    tmp_path: Path, memory_bytes: int, staged: bool
) -> None:
    inputs = {i: records_of(i, 1500) for i in range(5)}  # five producer instances, ~100 KB each
    services: list[ShuffleService] = []
    async with workers(tmp_path, 2, services) as ws, Client() as rpc:
        producers = []
        for i, records in inputs.items():
            store, address = ws[i % 2]
            produce(store, i, records, sort=True)
            producers.append(ProducerLocation(i, (address,)))
        config = StreamlineConfig(
            memory_bytes=memory_bytes, block_bytes=4 << 10, fetch_piece_bytes=8 << 10, fetch_parallelism=2
        )
        client = ShuffleClient(rpc, config, scratch=tmp_path)
        for j in range(PARTITIONS):
            want = [r for recs in inputs.values() for r in recs if stable_hash(r[0]) % PARTITIONS == j]
            got = await fetch_all(client, producers, j, sort=True)
            assert Counter(got) == Counter(want)
            assert [k for k, _ in got] == sorted(k for k, _ in want)
        assert client.merge_fits(len(producers)) is not staged
        if staged:
            assert client.staged_bytes > 0
            assert not list(tmp_path.glob("streamline-fetch-*"))  # the staged copies are deleted
        else:
            assert client.staged_bytes == 0
    # every byte of every partition crossed a socket, and only once
    committed = sum(
        e.length
        for store, _ in ws
        for i in inputs
        if store.is_committed("edge", i)
        for e in store.index("edge", i).partitions
    )
    assert sum(s.bytes_served for s in services) == committed


async def test_unsorted_fetch_reads_every_producer(tmp_path: Path) -> None:
    inputs = {i: records_of(10 + i, 800) for i in range(6)}
    async with workers(tmp_path, 2) as ws, Client() as rpc:
        producers = []
        for i, records in inputs.items():
            store, address = ws[i % 2]
            produce(store, i, records, sort=False)
            producers.append(ProducerLocation(i, (address,)))
        client = ShuffleClient(rpc, CONFIG)
        for j in range(PARTITIONS):
            want = [r for recs in inputs.values() for r in recs if stable_hash(r[0]) % PARTITIONS == j]
            assert Counter(await fetch_all(client, producers, j, sort=False)) == Counter(want)


async def test_another_location_serves_what_the_first_cannot(tmp_path: Path) -> None:
    records = records_of(99, 1500)
    async with workers(tmp_path, 3) as ws, Client(ClientConfig(connect_timeout_s=0.2)) as rpc:
        (a, addr_a), (b, addr_b), (c, addr_c) = ws
        produce(b, 0, records, sort=True)  # committed on b only; a never ran it
        produce(c, 0, records, sort=True)  # an identical copy on c (a deterministic retry)
        client = ShuffleClient(rpc, CONFIG)
        want = [r for r in records if stable_hash(r[0]) % PARTITIONS == 0]
        loc = ProducerLocation(0, (addr_a, addr_b))
        assert Counter(await fetch_all(client, [loc], 0, sort=True)) == Counter(want)

        # b loses its copy after the first piece was read: c's identical copy finishes the partition
        stream = client.fetch("edge", [ProducerLocation(0, (addr_b, addr_c))], 0, sort=False)
        got = rows([await anext(stream)])
        b.remove("edge")
        got += rows([x async for x in stream])
        assert Counter(got) == Counter(want)

        # c's copy is replaced by a different one after the first piece: refused, never mixed
        produce(a, 0, records_of(98, 1500), sort=True)
        stream = client.fetch("edge", [ProducerLocation(0, (addr_c, addr_a))], 0, sort=False)
        await anext(stream)
        c.remove("edge")
        with pytest.raises(UnavailableError, match="differs"):
            async for _ in stream:
                pass

        # no location holds it: a clear error naming what was tried
        with pytest.raises(UnavailableError, match="no location could serve"):
            await fetch_all(client, [ProducerLocation(7, (addr_b,))], 0, sort=False)


class GatedService(ShuffleService):
    """Counts fetches in flight: the first ``parallelism`` wait for each other (up to a deadline), so a client that
    kept fewer in flight shows a smaller maximum, and one that sent more shows a larger one."""

    def __init__(self, store: OutputStore, parallelism: int) -> None:
        super().__init__(store)
        self.parallelism = parallelism
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate = asyncio.Event()

    async def fetch(self, ctx: CallContext, req: FetchPartition) -> FetchReply:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.in_flight >= self.parallelism:
                self.gate.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.wait(), timeout=10)
            return await super().fetch(ctx, req)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("sort", [False, True])
async def test_fetch_parallelism_is_bounded(tmp_path: Path, sort: bool) -> None:
    store = OutputStore(tmp_path / "worker")
    inputs = {i: records_of(20 + i, 600) for i in range(6)}
    for i, records in inputs.items():
        produce(store, i, records, sort=sort)
    config = StreamlineConfig(memory_bytes=1 << 20, block_bytes=4 << 10, fetch_piece_bytes=4 << 10, fetch_parallelism=2)
    service = GatedService(store, config.fetch_parallelism)
    server = Server(ServerConfig(name="gated"))
    service.register(server)
    async with serving(server) as (_, address), Client() as rpc:
        client = ShuffleClient(rpc, config)
        producers = [ProducerLocation(i, (address,)) for i in inputs]
        got = await fetch_all(client, producers, 1, sort=sort)
    want = [r for recs in inputs.values() for r in recs if stable_hash(r[0]) % PARTITIONS == 1]
    assert Counter(got) == Counter(want)
    assert service.max_in_flight == config.fetch_parallelism
