"""The Nuwa leader's disk fills up: it refuses what it cannot store with a clear error, the other replicas elect a
leader and go on, no acknowledged write is lost or damaged, and the full replica recovers and catches up when
space returns. Real processes, real (tmpfs) disks."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feitian.coord import CoordClient
from feitian.coord.messages import GetRequest, SetRequest
from feitian.errors import FeitianError
from feitian.rpc import Client
from feitian.runtime.raft_store import RaftStore
from feitian.testing.coord import CoordReplicas
from feitian.testing.disks import DiskUnavailable, fill, small_disk
from feitian.testing.waiting import wait_for_condition

VALUE_BYTES = 32 << 10


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[CoordReplicas]:
    rs = CoordReplicas(tmp_path / "cluster", 3, segment_size_bytes=1 << 20)
    data = Path(rs.cluster.dir) / "data"
    try:
        with contextlib.ExitStack() as disks:
            for i in rs.ids:  # each replica on a small disk of its own; the test fills the leader's
                disks.enter_context(small_disk(data / rs.name(i), "8m"))
            await asyncio.to_thread(rs.start_all)
            try:
                yield rs
            finally:
                assert await asyncio.to_thread(rs.stop) == []
    except DiskUnavailable as exc:
        pytest.skip(str(exc))


async def test_a_full_disk_on_the_leader(replicas: CoordReplicas) -> None:
    rpc: Client = await replicas.rpc()
    client = CoordClient(rpc, replicas.address_list, timeout_s=30, attempt_timeout_s=1)
    acked: dict[str, bytes] = {}

    async def write(name: str) -> None:
        value = os.urandom(VALUE_BYTES)
        await client.create(f"/full/{name}", value, parents=True)
        acked[f"/full/{name}"] = value

    try:
        for i in range(10):
            await write(f"before-{i}")
        leader = await replicas.leader(rpc)
        assert leader is not None
        full_address = replicas.addresses[leader]
        ballast = await asyncio.to_thread(fill, Path(replicas.cluster.dir) / "data" / replicas.name(leader))

        async def disk_error() -> str:
            statuses = await replicas.statuses(rpc)
            return statuses[leader].replica.disk_error if leader in statuses else ""

        n = 0
        while "disk full" not in await disk_error():  # until the leader needs a new log segment and cannot cut it
            await write(f"during-{n}")
            n += 1
            assert n < 500, "the leader never reported its full disk"

        # A clear error for what it cannot store; the others have elected a leader that takes writes.
        with pytest.raises(FeitianError) as refused:
            request = SetRequest(path="/full/before-0", value=b"x", client_id="disk-full-test", request_seq=1)
            await rpc.call(full_address, request, timeout=2)
        assert refused.value.code in ("not_leader", "unavailable")
        if refused.value.code == "unavailable":
            assert "disk full" in refused.value.message or "log not writable" in refused.value.message
        for i in range(10):
            await write(f"more-{i}")

        # Another replica leads (the full one's own status may lag a moment: its Ready loop waits on the disk,
        # and a status call to the new leader can time out on a busy machine): ask until it is seen.
        async def another_leads() -> bool:
            found = await replicas.leader(rpc)
            return found is not None and found != leader

        await wait_for_condition(another_leads, 20, "another replica leading")
        assert "disk full" in await disk_error()

        os.unlink(ballast)  # space returns

        async def recovered() -> bool:
            statuses = await replicas.statuses(rpc)
            return (
                len(statuses) == 3
                and statuses[leader].replica.disk_error == ""
                and len({s.revision for s in statuses.values()}) == 1
            )

        await wait_for_condition(recovered, 40, "the full replica writable again and caught up")
        for path, value in acked.items():  # nothing acknowledged was lost or damaged, on the recovered replica too
            got = await rpc.call(full_address, GetRequest(path, stale=True), timeout=5)
            assert got.value == value, path
        assert (await rpc.call(full_address, GetRequest("/full/more-9"), timeout=5)).value == acked["/full/more-9"]

        # What the full disk left on it is sound: the replica restarts from its own log and snapshot (a torn or
        # corrupt record would stop it, or lose entries) and serves everything from its own state.
        applied = (await replicas.statuses(rpc))[leader].replica.applied_index
        await asyncio.to_thread(replicas.kill, leader)
        raft_dir = Path(replicas.cluster.dir) / "data" / replicas.name(leader) / "raft"
        store = await asyncio.to_thread(RaftStore.open, raft_dir)  # DataCorruptionError on a damaged record
        state = await asyncio.to_thread(store.load)
        store.close()
        held = state.entries[-1].index if state.entries else (state.snapshot.meta.index if state.snapshot else 0)
        assert held >= applied  # everything it had applied is in its own log (or snapshot)
        await asyncio.to_thread(replicas.start, leader)
        await wait_for_condition(recovered, 40, "the restarted replica caught up")
        for path, value in acked.items():
            got = await rpc.call(full_address, GetRequest(path, stale=True), timeout=5)
            assert got.value == value, path
        assert "corrupt" not in replicas.log(leader).lower()
    finally:
        await client.close()
        await rpc.close()
