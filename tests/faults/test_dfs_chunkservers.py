"""Pangu under chunk server faults, against real processes: SIGKILL during a write and during a read, bytes
flipped in a stored chunk file (found by a reader, and by the scrubber). Every acknowledged byte stays readable
and correct, and every chunk returns to its replication factor (fsck clean)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feitian.dfs.chunkserver.chunk_file import PAGE, ChunkGeometry
from feitian.dfs.client.client import DfsClient
from feitian.dfs.messages.chunk import ReadChunk
from feitian.dfs.messages.master import Locate, LocateReply
from feitian.testing.dfs import DfsCluster, running_dfs
from feitian.testing.waiting import wait_for_condition

KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[DfsCluster, DfsClient]]:
    scrub = {"scrub_interval_s": 1.0}
    async with running_dfs(
        tmp_path, masters=1, chunkservers=4, chunk_size_bytes=1 * MiB, chunkserver_options=scrub
    ) as w:
        yield w


async def located(client: DfsClient, path: str) -> LocateReply:
    length = (await client.stat(path)).length
    reply: LocateReply = await client.master(Locate(path, 0, length))
    return reply


async def fully_replicated(client: DfsClient, path: str, avoid: str = "") -> None:
    """fsck is clean and every chunk of ``path`` has 3 replicas on 3 racks (none on ``avoid``), each of which
    serves the chunk's bytes verified."""
    await client.wait_healthy(60)

    async def settled() -> bool:  # replicas on a dead server are dropped once the chunk has 3 good ones
        grants = (await located(client, path)).chunks
        return all(len(g.servers) == 3 and avoid not in {s.server_id for s in g.servers} for g in grants)

    await wait_for_condition(settled, 30, f"every chunk of {path} on 3 servers, none on {avoid!r}")
    for grant in (await located(client, path)).chunks:
        assert len({s.rack for s in grant.servers}) >= 2, grant  # 3 unless the only server of a rack died
        loc = grant.location
        for server in grant.servers:
            reply = await client.rpc.call_full(
                server.address, ReadChunk(loc.chunk_id, loc.version, 0, loc.length, loc.length), timeout=10
            )
            assert len(reply.payload) == loc.length


@pytest.mark.parametrize("victim_index", [0, 2], ids=["primary", "last-in-chain"])
async def test_sigkill_chunkserver_during_a_write(world: tuple[DfsCluster, DfsClient], victim_index: int) -> None:
    cluster, client = world
    data = os.urandom(5 * MiB + 4321)
    writer = await client.create("/faults/w")
    victim = ""
    for i in range(0, len(data), 96 * KiB):
        await writer.write(data[i : i + 96 * KiB])
        if not victim and i >= 2 * MiB and writer.pipe is not None and writer.pipe.pieces:
            victim = writer.pipe.servers[victim_index]
            cluster.kill(victim)  # while writes to its chunk are in flight
    assert victim
    assert await writer.close() == len(data)
    assert await client.read("/faults/w") == data
    await fully_replicated(client, "/faults/w", avoid=victim)
    assert await client.read("/faults/w") == data


async def test_sigkill_chunkserver_during_reads(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    data = os.urandom(4 * MiB + 99)
    await client.write_file("/faults/r", data)
    victim = (await located(client, "/faults/r")).chunks[0].servers[0].server_id  # the first replica readers try
    reads = 0

    async def read_forever() -> None:
        nonlocal reads
        while True:
            assert await client.read("/faults/r") == data
            reads += 1

    readers = [asyncio.ensure_future(read_forever()) for _ in range(3)]
    try:
        await wait_for_condition(lambda: reads >= 3, 20, "reads before the kill")
        cluster.kill(victim)
        before = reads
        await wait_for_condition(lambda: reads >= before + 9 or any(t.done() for t in readers), 30, "reads after")
        for task in readers:
            if task.done():
                task.result()  # a failed read fails the test
    finally:
        for task in readers:
            task.cancel()
    await fully_replicated(client, "/faults/r", avoid=victim)


def flip_bytes(cluster: DfsCluster, server_id: str, chunk_id: int, offset: int) -> None:
    path = cluster.data_dir(server_id) / "chunks" / f"{chunk_id}.chunk"
    with open(path, "r+b") as f:
        geometry = ChunkGeometry.parse(f.read(PAGE), path)
        f.seek(geometry.data_offset + offset)
        old = f.read(3)
        f.seek(geometry.data_offset + offset)
        f.write(bytes(b ^ 0xFF for b in old))


async def test_flipped_bytes_are_detected_by_a_reader_and_repaired(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    data = os.urandom(2 * MiB + 10)
    await client.write_file("/faults/flip", data)
    grant = (await located(client, "/faults/flip")).chunks[1]
    bad = grant.servers[0].server_id  # readers try it first
    flip_bytes(cluster, bad, grant.location.chunk_id, 1000)
    assert await client.read("/faults/flip") == data  # the reader noticed, reported, and read another replica

    async def replaced() -> bool:
        grants = (await located(client, "/faults/flip")).chunks
        return bad not in {s.server_id for s in grants[1].servers}

    await wait_for_condition(replaced, 30, "the corrupt replica replaced")
    await fully_replicated(client, "/faults/flip")
    assert await client.read("/faults/flip") == data


async def test_flipped_bytes_are_found_by_the_scrubber_and_repaired(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    data = os.urandom(MiB + 5)
    await client.write_file("/faults/scrub", data)
    grant = (await located(client, "/faults/scrub")).chunks[0]
    bad = grant.servers[2].server_id
    flip_bytes(cluster, bad, grant.location.chunk_id, 70 * KiB)

    async def replaced() -> bool:
        grants = (await located(client, "/faults/scrub")).chunks
        return bad not in {s.server_id for s in grants[0].servers}

    await wait_for_condition(replaced, 30, "the scrubber's find replaced")  # no reader touched it
    await fully_replicated(client, "/faults/scrub")
    assert await client.read("/faults/scrub") == data


async def test_random_write_rebuilds_the_pipeline_around_a_dead_replica(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    data = bytearray(os.urandom(2 * MiB + 5))
    await client.write_file("/faults/rand", bytes(data))
    victim = (await located(client, "/faults/rand")).chunks[0].servers[1].server_id
    cluster.kill(victim)  # the master does not know yet: taking the chunk over finds it gone
    writer = await client.open_write("/faults/rand", mode="random")
    patch = os.urandom(300 * KiB)
    await writer.pwrite(1000, patch)
    data[1000 : 1000 + len(patch)] = patch
    await writer.close()
    assert await client.read("/faults/rand") == bytes(data)
    first = (await located(client, "/faults/rand")).chunks[0]
    assert len(first.servers) == 3 and victim not in {s.server_id for s in first.servers}  # a replacement joined
    await fully_replicated(client, "/faults/rand", avoid=victim)
    assert await client.read("/faults/rand") == bytes(data)
