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

from feitian.dfs.client.client import DfsClient
from feitian.dfs.messages.master import DeleteRequest, MkdirRequest
from feitian.errors import FeitianError, InvalidArgumentError, NotFoundError
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


async def test_a_write_retried_after_a_leader_change_is_applied_once(world: tuple[DfsCluster, DfsClient]) -> None:
    """A namespace write applied by the leader whose reply never reached the client (here: the first attempt's
    answer is set aside), then the leader is killed: the client's retry of the same request reaches the new
    leader and gets the first result back — not AlreadyExistsError / NotFoundError from applying it twice."""
    cluster, client = world
    await client.mkdir("/once")
    leader = await cluster.leader(client.rpc)
    address = next(s.listen[0] for s in cluster.specs if s.name == leader)
    mkdir = MkdirRequest("/once/d", parents=False, client_id="retrying-client", request_seq=1)
    delete = DeleteRequest("/once/d", client_id="retrying-client", request_seq=2)
    first_mkdir = await client.rpc.call(address, mkdir, timeout=10)  # applied; its answer is "lost"
    assert first_mkdir.created
    first_delete = await client.rpc.call(address, delete, timeout=10)
    assert first_delete.dirs == 1
    cluster.kill(leader)
    # The retries, as the router sends them: to whichever master leads now (redirects and elections followed).
    assert await client.masters.call(mkdir) == first_mkdir
    assert await client.masters.call(delete) == first_delete
    assert await cluster.leader(client.rpc) != leader
    assert not await client.exists("/once/d")  # the retried mkdir did not create it again after the delete
    with pytest.raises(NotFoundError):  # a new request is applied: the directory is gone
        await client.masters.call(DeleteRequest("/once/d", client_id="retrying-client", request_seq=3))
    with pytest.raises(InvalidArgumentError, match="different request"):  # a number reused for another write
        await client.masters.call(MkdirRequest("/once/e", parents=False, client_id="retrying-client", request_seq=1))
