"""A replica whose disk fills up: it refuses to acknowledge what it cannot store, the others go on, and it
recovers and catches up when space returns. Real processes, a real (tmpfs) disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feitian.errors import FeitianError
from feitian.examples.kv import Get, KvClient, Stats
from feitian.replica.driver import ReplicaStats
from feitian.rpc import Client, ClientConfig
from feitian.testing.disks import DiskUnavailable, fill, small_disk
from feitian.testing.replicas import KvReplicas
from feitian.testing.waiting import wait_for_condition


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[KvReplicas]:
    rs = KvReplicas(tmp_path / "cluster", 3, tick_ms=50, election_ticks=10, segment_size_bytes=1 << 20)
    try:
        with small_disk(rs.data_dir(1), "6m"):
            await asyncio.to_thread(rs.start_all)
            try:
                yield rs
            finally:
                assert await asyncio.to_thread(rs.stop) == []
    except DiskUnavailable as exc:
        pytest.skip(str(exc))


async def stats(client: Client, address: str) -> ReplicaStats | None:
    try:
        return await client.call(address, Stats(), timeout=1)
    except FeitianError:
        return None


async def test_a_full_disk_stops_one_replica_not_the_cluster(replicas: KvReplicas) -> None:
    value = os.urandom(32 << 10)
    async with Client(ClientConfig(connect_timeout_s=0.5)) as client:
        kv = KvClient(client, list(replicas.addresses.values()), timeout_s=30)
        acked: dict[str, bytes] = {}
        for i in range(20):
            await kv.put(f"before-{i}", value)
            acked[f"before-{i}"] = value
        ballast = await asyncio.to_thread(fill, replicas.data_dir(1))
        full_address = replicas.addresses[1]

        async def disk_error_reported() -> bool:
            s = await stats(client, full_address)
            return s is not None and "disk full" in s.disk_error

        n = 0
        while not await disk_error_reported():  # write until replica 1 needs a new log segment and cannot cut it
            # retry_lost: an unconditional put may be repeated, so a write in flight when the leader's disk
            # fills (outcome unknown) is sent again rather than raised.
            await kv.put(f"during-{n}", value, retry_lost=True)
            acked[f"during-{n}"] = value
            n += 1
            assert n < 2000, "replica 1 never reported its full disk"
        for i in range(20):  # the other two replicas keep the cluster writable
            await kv.put(f"more-{i}", value, retry_lost=True)
            acked[f"more-{i}"] = value
        full = await stats(client, full_address)
        assert full is not None and full.role != "leader" and "disk full" in full.disk_error

        os.unlink(ballast)  # space returns
        await wait_for_condition(lambda: _recovered(client, replicas), 30, "replica 1 writable and caught up")
        for key, expected in acked.items():
            reply = await client.call(full_address, Get(key, stale=True), timeout=5)
            assert reply.found and reply.value == expected, key


async def _recovered(client: Client, replicas: KvReplicas) -> bool:
    found = [await stats(client, a) for a in replicas.addresses.values()]
    if any(s is None for s in found):
        return False
    first = found[0]
    assert first is not None
    return first.disk_error == "" and len({s.applied_index for s in found if s is not None}) == 1


@pytest.fixture
async def small_disks(tmp_path: Path) -> AsyncIterator[KvReplicas]:
    rs = KvReplicas(tmp_path / "cluster", 3, tick_ms=50, election_ticks=10, segment_size_bytes=1 << 20)
    try:
        with contextlib.ExitStack() as disks:
            for i in rs.ids:
                disks.enter_context(small_disk(rs.data_dir(i), "64m"))  # the leader's is then filled
            await asyncio.to_thread(rs.start_all)
            try:
                yield rs
            finally:
                assert await asyncio.to_thread(rs.stop) == []
    except DiskUnavailable as exc:
        pytest.skip(str(exc))


async def test_a_leader_whose_disk_fills_hands_over_and_writes_go_on(small_disks: KvReplicas) -> None:
    replicas = small_disks
    value = os.urandom(32 << 10)
    async with Client(ClientConfig(connect_timeout_s=0.5)) as client:
        kv = KvClient(client, list(replicas.addresses.values()), timeout_s=30)
        await kv.put("first", value)
        roles = {i: await stats(client, a) for i, a in replicas.addresses.items()}
        leader = next(i for i, s in roles.items() if s is not None and s.role == "leader")
        ballast = await asyncio.to_thread(fill, replicas.data_dir(leader))
        acked = {}
        for i in range(100):  # the leader runs out of log space; its writes fail over to the new leader
            await kv.put(f"k{i}", value, retry_lost=True)
            acked[f"k{i}"] = value
        full = await stats(client, replicas.addresses[leader])
        assert full is not None and full.role != "leader" and "disk full" in full.disk_error
        os.unlink(ballast)
        await wait_for_condition(lambda: _recovered(client, replicas), 30, "the old leader writable and caught up")
        for key, expected in acked.items():
            reply = await client.call(replicas.addresses[leader], Get(key, stale=True), timeout=5)
            assert reply.found and reply.value == expected, key
