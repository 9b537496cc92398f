"""Pangu's masters under faults: SIGKILL of the leader while clients write and read (they follow the new
leader; every file whose close was acknowledged is intact), and a writer that vanishes (its lease expires, the
master seals what the replicas agree on and closes the file)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feitian.dfs.client import DfsClient
from feitian.errors import FeitianError
from feitian.testing.dfs import DfsCluster, running_dfs
from feitian.testing.waiting import wait_for_condition

KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[DfsCluster, DfsClient]]:
    options = {"lease_ttl_s": 2.0}
    async with running_dfs(tmp_path, masters=3, chunkservers=3, chunk_size_bytes=1 * MiB, master_options=options) as w:
        yield w


async def test_sigkill_master_leader_under_load(world: tuple[DfsCluster, DfsClient]) -> None:
    cluster, client = world
    acknowledged: dict[str, bytes] = {}
    failures: list[FeitianError] = []
    stop = asyncio.Event()
    rng = random.Random(7)

    async def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            path, data = f"/load/{w}/{i}", rng.randbytes(rng.randrange(1, 400 * KiB))
            try:
                await client.write_file(path, data)
                acknowledged[path] = data
                assert await client.read(path) == data
            except FeitianError as exc:  # an outcome the client could not learn: allowed, not counted
                failures.append(exc)
            i += 1

    tasks = [asyncio.ensure_future(writer(w)) for w in range(4)]
    try:
        await wait_for_condition(lambda: len(acknowledged) >= 8, 30, "writes before the kill")
        leader = await cluster.leader(client.rpc)
        cluster.kill(leader)
        before = len(acknowledged)
        await wait_for_condition(lambda: len(acknowledged) >= before + 12, 40, "writes under the new leader")
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
    assert len(failures) <= 4, failures  # at most the calls in flight at the kill
    for path, data in acknowledged.items():
        assert await client.read(path) == data
    assert await cluster.leader(client.rpc) != leader
    await asyncio.to_thread(cluster.restart, leader)  # comes back as a follower and catches up
    report = await client.wait_healthy(30)
    assert report.files >= len(acknowledged)


async def test_abandoned_writer_lease_is_recovered(world: tuple[DfsCluster, DfsClient]) -> None:
    _, client = world
    data = os.urandom(MiB + 300 * KiB)
    writer = await client.create("/lease/abandoned")
    await writer.write(data)
    await writer.flush()  # acknowledged: every replica has it
    writer._renewer.cancel()  # the writer vanishes without a word (as a killed client would): no renewal, no abort
    assert (await client.stat("/lease/abandoned")).lease_holder is not None

    async def recovered() -> bool:
        return (await client.stat("/lease/abandoned")).lease_holder is None

    await wait_for_condition(recovered, 30, "the master recovered the lease (expiry + takeover grace)")
    assert await client.read("/lease/abandoned") == data
    assert await client.append("/lease/abandoned", b"more") == len(data) + 4
