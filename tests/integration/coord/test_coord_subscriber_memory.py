"""Watch subscribers' memory on a replica (issue 15): a subscriber costs little while it is connected, what it
cost is free again when it leaves, and waves of subscribers coming and going do not grow the replica.

Each subscriber is a client of its own (its own mutual-TLS connection, like a separate process) with a long
poll waiting on the replica. Before the fix every connection allocated two 256 KiB receive buffers (frames and
ciphertext) up front: ~560 KiB per subscriber, all of it still resident after the subscribers had left (the
allocator keeps freed heap memory for reuse; RSS is a high-water mark). Now a connection's frame buffer starts
at 16 KiB and grows only while reads fill it, and a server's connections share one ciphertext buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from feitian.coord import CoordClient
from feitian.rpc import Client, Health, HealthReply
from feitian.runtime.procs import rss_bytes
from feitian.testing.coord import CoordReplicas
from feitian.testing.waiting import wait_for_condition

SUBSCRIBERS = 150  # per wave
WAVES = 3
MAX_COST_PER_SUBSCRIBER = 200 << 10  # resident bytes on the replica while connected (~560 KiB before the fix)
MAX_KEPT_PER_SUBSCRIBER = 150 << 10  # resident after they left, per subscriber of one wave (~560 KiB before)
MAX_GROWTH_AFTER_FIRST_WAVE = 4 << 20  # the replica after the last wave left vs after the first


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordReplicas]:
    replicas = CoordReplicas(tmp_path_factory.mktemp("nuwa-subs"), 1, secure=True)
    replicas.start_all()
    try:
        yield replicas
    finally:
        assert replicas.stop() == []


@pytest.fixture
async def admin(replica: CoordReplicas) -> AsyncIterator[Client]:
    rpc = await replica.rpc("admin")
    try:
        yield rpc
    finally:
        await rpc.close()


async def _connections(rpc: Client, replica: CoordReplicas) -> int:
    reply: HealthReply = await rpc.call(replica.addresses[1], Health(), timeout=5)
    return int(reply.detail["connections"])


def _rss(replica: CoordReplicas) -> int:
    rss = rss_bytes(replica.ref(1))
    assert rss is not None, "the replica is not running"
    return rss


async def _wave(replica: CoordReplicas, admin: Client, path: str, base_connections: int) -> int:
    """SUBSCRIBERS subscribers connect, each with a long poll waiting; then they all leave. Returns the
    replica's resident bytes while they were all connected."""
    rpcs: list[Client] = []
    clients: list[CoordClient] = []
    waits: list[asyncio.Future[object]] = []
    try:
        for i in range(SUBSCRIBERS):
            rpc = await replica.rpc(f"subscriber-{i}")
            rpcs.append(rpc)
            clients.append(replica.client(rpc, watch_wait_ms=30_000))
        watches = [c.watch(path) for c in clients]
        await asyncio.gather(*(w.start() for w in watches))
        waits = [asyncio.ensure_future(w.next(60)) for w in watches]
        await wait_for_condition(
            lambda: _all_polling(clients), timeout_s=30, what="every subscriber's long poll is sent"
        )
        assert await _connections(admin, replica) >= base_connections + SUBSCRIBERS
        peak = _rss(replica)
        assert not any(w.done() for w in waits), "a subscriber saw an event nobody made"
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        for c in clients:
            await c.close()
        for rpc in rpcs:
            await rpc.close()

    async def left() -> bool:
        return await _connections(admin, replica) == base_connections

    await wait_for_condition(left, timeout_s=30, what="every subscriber's connection is closed on the replica")
    return peak


def _all_polling(clients: list[CoordClient]) -> bool:
    # start() made one poll; the pending next() makes the second.
    return all(c.router.calls_by_method.get("WatchRequest", 0) >= 2 for c in clients)


async def test_subscribers_memory_is_small_and_given_back(replica: CoordReplicas, admin: Client) -> None:
    setup = replica.client(admin)
    await setup.create("/subs/x", b"1", parents=True)
    base_connections = await _connections(admin, replica)
    before = _rss(replica)
    peaks, after = [], []
    for _ in range(WAVES):
        peaks.append(await _wave(replica, admin, "/subs/x", base_connections))
        after.append(_rss(replica))
    await setup.close()
    mib = [round(x / 2**20, 1) for x in (before, *peaks, *after)]
    cost = (peaks[0] - before) / SUBSCRIBERS
    assert cost < MAX_COST_PER_SUBSCRIBER, f"{cost / 1024:.0f} KiB per subscriber (RSS MiB: {mib})"
    kept = (after[-1] - before) / SUBSCRIBERS
    assert kept < MAX_KEPT_PER_SUBSCRIBER, f"{kept / 1024:.0f} KiB per subscriber kept after they left (RSS MiB: {mib})"
    growth = after[-1] - after[0]
    assert growth < MAX_GROWTH_AFTER_FIRST_WAVE, (
        f"the replica grew by {growth / 2**20:.1f} MiB after {WAVES - 1} more waves of {SUBSCRIBERS} subscribers "
        f"came and went (RSS MiB: before, peaks, after: {mib})"
    )
