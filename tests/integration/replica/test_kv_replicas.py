"""Three real replica processes of the replicated key-value store: writes survive SIGKILL of the leader and
SIGSTOP of a follower; replicas converge; a lagging replica catches up from a snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feitian.errors import ConflictError, FeitianError
from feitian.examples.kv import Get, KvClient, Stats
from feitian.replica.driver import ReplicaStats
from feitian.rpc import Client, ClientConfig
from feitian.testing.replicas import KvReplicas
from feitian.testing.waiting import wait_for_condition


@pytest.fixture(params=["inline", "worker"])
async def replicas(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[KvReplicas]:
    """Each test runs twice: replicas fsync their logs on the event-loop thread (the default), and on a worker
    thread (``leader_sync_inline`` / ``follower_sync_inline`` off), where a leader commits and answers while
    its own write is still under way."""
    rs = KvReplicas(
        tmp_path,
        3,
        tick_ms=50,
        election_ticks=10,
        snapshot_every_entries=300,
        keep_entries_after_snapshot=50,
        sync_inline=request.param == "inline",
    )
    await asyncio.to_thread(rs.start_all)
    try:
        yield rs
    finally:
        assert await asyncio.to_thread(rs.stop) == []


async def stats(client: Client, address: str) -> ReplicaStats | None:
    try:
        return await client.call(address, Stats(), timeout=1)
    except FeitianError:
        return None


async def leader_of(client: Client, rs: KvReplicas) -> int:
    for i, address in rs.addresses.items():
        s = await stats(client, address)
        if s is not None and s.role == "leader":
            return i
    return 0


async def converged(client: Client, rs: KvReplicas, ids: list[int]) -> bool:
    found = [await stats(client, rs.addresses[i]) for i in ids]
    if any(s is None for s in found):
        return False
    applied = {s.applied_index for s in found if s is not None}
    return len(applied) == 1


async def assert_all_present(client: Client, rs: KvReplicas, acked: dict[str, bytes]) -> None:
    """Every acknowledged write is on every replica (local reads after convergence)."""
    await wait_for_condition(lambda: converged(client, rs, rs.ids), 30, "replicas converge")
    for address in rs.addresses.values():
        for key, value in acked.items():
            reply = await client.call(address, Get(key, stale=True), timeout=5)
            assert reply.found and reply.value == value, f"{key} missing or wrong on {address}"


async def wait_until_more(acked: dict[str, bytes], target: int, what: str) -> None:
    await wait_for_condition(lambda: len(acked) >= target, 30, what)


async def test_linearizable_reads_writes_and_conditions(replicas: KvReplicas) -> None:
    async with Client(ClientConfig(connect_timeout_s=1)) as client:
        kv = KvClient(client, list(replicas.addresses.values()))
        assert await kv.put("a", b"1") == 1
        assert await kv.put("a", b"2") == 2
        with pytest.raises(ConflictError):
            await kv.put("a", b"3", expect_version=1)
        assert await kv.put("new", b"x", expect_version=0) == 1
        # A linearizable read on any replica, follower included, sees the latest write.
        for address in replicas.addresses.values():
            reply = await client.call(address, Get("a"), timeout=5)
            assert reply.found and reply.value == b"2" and reply.version == 2
        assert await kv.delete("a") is True
        assert not (await kv.get("a")).found


async def test_sigkill_the_leader_under_load_loses_no_acknowledged_write(replicas: KvReplicas) -> None:
    acked: dict[str, bytes] = {}
    async with Client(ClientConfig(connect_timeout_s=0.5)) as client:
        kv = KvClient(client, list(replicas.addresses.values()), timeout_s=20)
        stop = asyncio.Event()

        async def writer(w: int) -> None:
            n = 0
            while not stop.is_set():
                key, value = f"w{w}-{n}", f"{w}:{n}".encode()
                try:
                    await kv.put(key, value)
                    acked[key] = value
                except FeitianError:
                    pass  # not acknowledged: may or may not be there
                n += 1

        writers = [asyncio.ensure_future(writer(w)) for w in range(8)]
        for _ in range(2):
            await wait_until_more(acked, len(acked) + 100, "writes flowing")
            leader = await leader_of(client, replicas)
            assert leader
            await asyncio.to_thread(replicas.kill, leader)
            await wait_until_more(acked, len(acked) + 50, "writes continue after failover")
            await asyncio.to_thread(replicas.start, leader)
        stop.set()
        await asyncio.gather(*writers)
        await assert_all_present(client, replicas, acked)


async def test_sigstop_a_follower_then_it_catches_up_from_a_snapshot(replicas: KvReplicas) -> None:
    async with Client(ClientConfig(connect_timeout_s=0.5)) as client:
        kv = KvClient(client, list(replicas.addresses.values()), timeout_s=20)
        await kv.put("first", b"1")
        leader = await leader_of(client, replicas)
        follower = next(i for i in replicas.ids if i != leader)
        replicas.freeze(follower)
        acked = {"first": b"1"}
        try:
            for n in range(1200):  # beyond snapshot_every_entries: the log is compacted meanwhile
                key = f"k{n}"
                await kv.put(key, b"v%d" % n)
                acked[key] = b"v%d" % n
        finally:
            replicas.resume(follower)
        await assert_all_present(client, replicas, acked)
        lagging = await stats(client, replicas.addresses[follower])
        assert lagging is not None and lagging.snapshots_installed >= 1  # it was sent a snapshot, not the log
