"""Elasticity (PANGU-6): a new chunk server takes chunks at once and receives moves from the balancer; a
decommissioned one gets every chunk migrated off before it is out of service; replication factors follow
SetReplication."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feitian.dfs.client.client import DfsClient
from feitian.dfs.messages.master import Locate, LocateReply
from feitian.testing.dfs import DfsCluster, running_dfs
from feitian.testing.waiting import wait_for_condition

MiB = 1 << 20


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[DfsCluster, DfsClient]]:
    # Small disks, so that a few files make utilization differ by more than the balance threshold (10 %).
    disks = {"capacity_bytes": 32 * MiB}
    async with running_dfs(
        tmp_path, masters=1, chunkservers=3, chunk_size_bytes=1 * MiB, chunkserver_options=disks
    ) as w:
        yield w


async def chunks_by_server(client: DfsClient) -> dict[str, int]:
    return {s.server_id: s.chunks for s in await client.servers()}


async def test_new_server_is_used_at_once_and_balance_fills_it(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    files = {f"/el/{i}": os.urandom(MiB) for i in range(8)}
    for path, data in files.items():
        await client.write_file(path, data)
    await asyncio.to_thread(cluster.add_chunkserver, "chunkserver-9", "r2")
    await cluster.wait_servers(4)
    assert (await chunks_by_server(client))["chunkserver-9"] == 0
    for i in range(6):  # new chunks: the empty server on rack r2 is preferred to its busy rack-mate
        await client.write_file(f"/el/new-{i}", os.urandom(MiB // 2))
    assert (await chunks_by_server(client))["chunkserver-9"] >= 1
    reply = await client.balance()
    assert reply.moves_started >= 1 and reply.spread_before > 0.0
    await wait_for_condition(
        lambda: _balanced(client), timeout_s=60, what="chunks moved from chunkserver-2 to its new rack-mate"
    )
    await client.wait_healthy(30)
    for path, data in files.items():
        assert await client.read(path) == data


async def _balanced(client: DfsClient) -> bool:
    """chunkserver-2 and chunkserver-9 share rack r2 (every chunk has one replica there): balanced when their
    usage differs by no more than the threshold (10 % of 32 MiB) plus one chunk."""
    servers = {s.server_id: s for s in await client.servers()}
    busy, fresh = servers["chunkserver-2"], servers["chunkserver-9"]
    even = busy.used_bytes - fresh.used_bytes <= 0.10 * busy.capacity_bytes + MiB
    return even and fresh.chunks >= 3 and not (await client.fsck()).copies_in_flight


async def test_decommission_migrates_every_chunk_then_the_server_leaves(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    await asyncio.to_thread(cluster.add_chunkserver, "chunkserver-8", "r1")
    await cluster.wait_servers(4)
    files = {f"/dc/{i}": os.urandom(MiB - 7 * i) for i in range(6)}
    for path, data in files.items():
        await client.write_file(path, data)
    held = await client.decommission("chunkserver-1")
    assert held > 0

    async def gone() -> bool:
        states = {s.server_id: s.state for s in await client.servers()}
        return states["chunkserver-1"] == "decommissioned"  # listed so, holding nothing, until recommissioned

    await wait_for_condition(gone, timeout_s=60, what="chunkserver-1 drained and decommissioned")
    report = await client.wait_healthy(30)
    assert report.healthy and not report.under_replicated
    for path, data in files.items():
        assert await client.read(path) == data
        located: LocateReply = await client.master(Locate(path, 0, len(data)))
        for grant in located.chunks:
            servers = {s.server_id for s in grant.servers}
            assert "chunkserver-1" not in servers and len(servers) == 3
            assert len({s.rack for s in grant.servers}) == 3  # r1's copy moved to the other r1 server


async def test_replication_factor_per_file(world: tuple[DfsCluster, DfsClient]) -> None:
    _, client = world
    await client.write_file("/rep/one", os.urandom(MiB), replication=1)
    assert (await client.stat("/rep/one")).replication == 1
    await client.set_replication("/rep/one", 3)
    await client.wait_healthy(30)
    located: LocateReply = await client.master(Locate("/rep/one", 0, MiB))
    assert all(len(g.servers) == 3 for g in located.chunks)
    await client.set_replication("/rep/one", 2)

    async def trimmed() -> bool:
        located = await client.master(Locate("/rep/one", 0, MiB))
        return all(len(g.servers) == 2 for g in located.chunks)

    await wait_for_condition(trimmed, timeout_s=30, what="excess replicas trimmed")
