"""Chunk servers that come back (issue 16): a rack whose only server died gets its share of replicas back once
it returns (fsck reports chunks whose replicas share racks as misplaced until then), and a decommissioned
server stays out of service through its own restarts and a change of master leader until it is recommissioned.
Real processes: 3 masters, chunk servers on racks r1, r2, r3, r1."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feitian.dfs.client.client import DfsClient
from feitian.testing.cli import feitian
from feitian.testing.dfs import TEST_CLIENT_CONFIG, DfsCluster, running_dfs
from feitian.testing.waiting import wait_for_condition

KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[DfsCluster, DfsClient]]:
    async with running_dfs(tmp_path, masters=3, chunkservers=4, chunk_size_bytes=1 * MiB) as world:
        yield world


async def racks_of(client: DfsClient, path: str) -> list[set[str]]:
    """For each chunk of ``path``, the racks of its good replicas."""
    reply = await client.placement(path)
    return [{r.rack for r in c.replicas if r.state == "good"} for c in reply.chunks]


async def live(client: DfsClient, server_id: str) -> bool:
    return any(s.server_id == server_id and s.live for s in await client.servers())


async def test_a_returning_rack_gets_its_replicas_back(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    files = {f"/racks/{i}": os.urandom(MiB + 100 * KiB * i) for i in range(3)}  # two chunks each
    for path, data in files.items():
        await client.write_file(path, data)
    cluster.kill("chunkserver-2")  # the only server on rack r2

    async def repaired_on_two_racks() -> bool:
        if await live(client, "chunkserver-2"):
            return False
        report = await client.fsck()
        return report.healthy and not report.copies_in_flight

    await wait_for_condition(repaired_on_two_racks, 60, "the chunks of r2 repaired onto r1 and r3")
    for path in files:
        assert all(racks == {"r1", "r3"} for racks in await racks_of(client, path))
    assert (await client.fsck()).misplaced == ()  # two live racks: two racks are all a chunk can be on
    await asyncio.to_thread(cluster.restart, "chunkserver-2")

    async def spread_again() -> bool:
        if (await client.fsck()).misplaced:
            return False
        spreads = [racks for path in files for racks in await racks_of(client, path)]
        return all(racks == {"r1", "r2", "r3"} for racks in spreads)

    await wait_for_condition(spread_again, 90, "every chunk back on three racks")
    report = await client.wait_healthy(30)
    assert report.healthy and not report.misplaced and not report.over_replicated
    for path, data in files.items():
        assert await client.read(path) == data
        placement = await client.placement(path)
        assert all(len(c.replicas) == 3 and c.racks == c.wanted_racks == 3 for c in placement.chunks)
    logs = "".join(Path(cluster.log_path(name)).read_text() for name in cluster.names("dfs-master"))
    assert "spread copy of chunk" in logs  # moved back by the leader's maintenance, not rewritten


async def test_misplaced_chunks_are_reported_while_a_rack_cannot_take_them(tmp_path: Path) -> None:
    # r3's only server is too small for a chunk: every chunk lands on r1 and r2 although three racks are live.
    cluster = DfsCluster(tmp_path, masters=1, chunkservers=3, chunk_size_bytes=1 * MiB, racks=("r1", "r1", "r2"))
    await asyncio.to_thread(cluster.start)
    client = await cluster.client(TEST_CLIENT_CONFIG)
    try:
        await asyncio.to_thread(cluster.add_chunkserver, "chunkserver-9", "r3", {"capacity_bytes": 256 * KiB})
        await cluster.wait_servers(4)
        await client.write_file("/tight/f", os.urandom(MiB // 2))
        (chunk,) = (await client.placement("/tight/f")).chunks
        assert (chunk.racks, chunk.wanted_racks) == (2, 3)

        async def reported() -> bool:  # once its replicas have confirmed what they hold
            return (await client.fsck()).misplaced == ((chunk.chunk_id, 2, 3),)

        await wait_for_condition(reported, 30, "the chunk reported misplaced")
        assert (await client.fsck()).healthy  # misplaced is not unhealthy: every copy is there
        shown = await asyncio.to_thread(feitian, "dfs", "fsck", "--cluster", cluster.cluster.dir)
        assert shown.returncode == 0 and "misplaced          1" in shown.stdout
        assert "HEALTHY (1 chunk(s) misplaced across racks" in shown.stdout
    finally:
        await client.rpc.close()
        assert await asyncio.to_thread(cluster.stop) == []


async def test_a_decommissioned_server_stays_out(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    for i in range(3):
        await client.write_file(f"/dc/{i}", os.urandom(MiB + i))
    await client.decommission("chunkserver-4")

    async def state(server_id: str) -> str:
        return next(s.state for s in await client.servers() if s.server_id == server_id)

    async def decommissioned() -> bool:
        return await state("chunkserver-4") == "decommissioned"

    await wait_for_condition(decommissioned, 60, "chunkserver-4 drained")
    # It restarts (its heartbeats registered it again as active before issue 16 was fixed) ...
    cluster.kill("chunkserver-4")

    async def dead() -> bool:
        return not await live(client, "chunkserver-4")

    await wait_for_condition(dead, 30, "chunkserver-4 declared dead")
    await asyncio.to_thread(cluster.restart, "chunkserver-4")
    await wait_for_condition(lambda: live(client, "chunkserver-4"), 30, "chunkserver-4 heartbeating again")
    assert await state("chunkserver-4") == "decommissioned"
    # ... and the master leader changes: the state is in the replicated namespace, not in the leader's memory.
    leader = await cluster.leader(client.rpc)
    cluster.kill(leader)
    await wait_for_condition(lambda: _new_leader(cluster, client, leader), 30, "a new master leader")
    assert await state("chunkserver-4") == "decommissioned"
    for i in range(4):
        await client.write_file(f"/dc/new-{i}", os.urandom(MiB // 2))
        placement = await client.placement(f"/dc/new-{i}")
        assert all("chunkserver-4" not in {r.server_id for r in c.replicas} for c in placement.chunks)
    assert next(s.chunks for s in await client.servers() if s.server_id == "chunkserver-4") == 0
    assert "chunkserver-4" not in (await client.fsck()).dead_servers
    await client.recommission("chunkserver-4")
    assert await state("chunkserver-4") == "active"


async def _new_leader(cluster: DfsCluster, client: DfsClient, old: str) -> bool:
    try:
        return await cluster.leader(client.rpc) != old
    except AssertionError:  # none yet
        return False
