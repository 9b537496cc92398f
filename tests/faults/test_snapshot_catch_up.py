"""A follower that fell behind the compacted log catches up by a snapshot larger than a Kuafu message may be,
while the cluster keeps serving (real processes).

The leader used to send the whole snapshot as one ``raft.Step``: past 16 MiB (``max_body_bytes``) the send raised
out of its Ready loop and the leader stopped for good, then the next leader did the same. Snapshots now travel
in bounded chunks (``feitian.replica.snapshot_transfer``).

* Nuwa: 20 values of 1 MiB (a 20 MiB state); a follower is SIGKILLed, the log compacted past it, the follower
  restarted: it installs the snapshot and serves linearizable reads, and every write meanwhile succeeds.
* Pangu's masters: the same with the masters' Kuafu servers refusing frames over 64 KiB, so a namespace of a
  few hundred files is already "larger than a message".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from feitian.coord.messages import CoordStatus, GetRequest, StatusRequest
from feitian.dfs.messages.master import MasterStatus
from feitian.errors import FeitianError
from feitian.rpc import Client
from feitian.testing.coord import CoordReplicas
from feitian.testing.dfs import DfsCluster
from feitian.testing.waiting import wait_for_condition

pytestmark = pytest.mark.timeout(240)

MiB = 1 << 20


@pytest.fixture
async def nuwa(tmp_path: Path) -> AsyncIterator[CoordReplicas]:
    rs = CoordReplicas(
        tmp_path / "nuwa", 3, snapshot_every_entries=60, keep_entries_after_snapshot=10, snapshot_log_ratio=0
    )
    await asyncio.to_thread(rs.start_all)
    try:
        yield rs
    finally:
        assert await asyncio.to_thread(rs.stop) == []


async def _status(rpc: Client, address: str) -> CoordStatus | None:
    try:
        status: CoordStatus = await rpc.call(address, StatusRequest(), timeout=2)
    except FeitianError:
        return None
    return status


async def test_nuwa_follower_catches_up_by_a_snapshot_larger_than_a_message(nuwa: CoordReplicas) -> None:
    rpc = await nuwa.rpc()
    client = nuwa.client(rpc, timeout_s=30)
    writes_failed: list[FeitianError] = []
    stop = asyncio.Event()
    try:
        await client.create("/big/", parents=True)
        for i in range(20):
            await client.create(f"/big/k{i}", bytes([i]) * (MiB - 64))
        leader = await nuwa.leader(rpc)
        assert leader is not None
        follower = next(i for i in nuwa.addresses if i != leader)
        await asyncio.to_thread(nuwa.kill, follower)
        killed_at = await _status(rpc, nuwa.addresses[leader])
        assert killed_at is not None

        written = 0

        async def writer() -> None:
            nonlocal written
            await client.create("/w/", parents=True)
            while not stop.is_set():
                try:
                    await client.set("/w/last", b"%d" % written) if written else await client.create("/w/last", b"0")
                except FeitianError as exc:
                    writes_failed.append(exc)
                written += 1

        task = asyncio.ensure_future(writer())

        async def compacted_past() -> bool:
            status = await _status(rpc, nuwa.addresses[leader])
            return status is not None and status.replica.snapshot_index > killed_at.replica.applied_index + 50

        await wait_for_condition(compacted_past, 60, "the leader compacting its log past the stopped follower")
        await asyncio.to_thread(nuwa.start, follower)

        async def serving() -> bool:
            status = await _status(rpc, nuwa.addresses[follower])
            if status is None or status.replica.snapshots_installed < 1:
                return False
            try:
                got = await rpc.call(nuwa.addresses[follower], GetRequest("/big/k19"), timeout=2)
            except FeitianError:
                return False
            return bool(got.value[:1] == bytes([19]))

        await wait_for_condition(serving, 60, "the restarted follower installing the snapshot and serving reads")
        stop.set()
        await task
        assert writes_failed == [], f"writes failed while the follower caught up: {writes_failed[:3]}"
        assert written > 100
        leader_status = await _status(rpc, nuwa.addresses[leader])
        assert leader_status is not None
        assert leader_status.replica.snapshot_bytes > 16 * MiB  # larger than any Kuafu message
        assert leader_status.replica.snapshots_sent >= 1
        for i, address in nuwa.addresses.items():
            status = await _status(rpc, address)
            assert status is not None and status.replica.loop_errors == 0, (i, status)
        # The follower holds everything: the last write too, read linearizably there.
        last = await rpc.call(nuwa.addresses[follower], GetRequest("/w/last"), timeout=5)
        assert last.value == b"%d" % (written - 1)
    finally:
        stop.set()
        await client.close()
        await rpc.close()


async def test_dfs_master_follower_catches_up_by_a_snapshot_larger_than_a_message(tmp_path: Path) -> None:
    options = {"snapshot_every_entries": 50, "keep_entries_after_snapshot": 10, "snapshot_log_ratio": 0}
    cluster = DfsCluster(tmp_path, masters=3, chunkservers=3, chunk_size_bytes=MiB, master_options=options)
    small_frames = {"limits": {"max_body_bytes": 64 << 10}}
    cluster.specs = [
        msgspec.structs.replace(s, rpc={**s.rpc, **small_frames}) if s.role == "dfs-master" else s
        for s in cluster.specs
    ]
    await asyncio.to_thread(cluster.start)
    client = await cluster.client()
    try:
        await client.mkdir("/ns")
        for i in range(150):
            await client.write_file(f"/ns/a-file-with-a-rather-long-name-{i:05d}", b"x")
        leader = await cluster.leader(client.rpc)
        follower = next(n for n in cluster.names("dfs-master") if n != leader)
        await asyncio.to_thread(cluster.kill, follower)
        for i in range(150, 400):
            await client.write_file(f"/ns/a-file-with-a-rather-long-name-{i:05d}", b"y")
        snaps = sorted((cluster.data_dir(leader) / "raft" / "snap").glob("snap-*.snap"))
        assert snaps and snaps[-1].stat().st_size > 64 << 10  # larger than a master accepts in one message
        await asyncio.to_thread(cluster.restart, follower)
        address = next(s.listen[0] for s in cluster.specs if s.name == follower)
        leader_address = next(s.listen[0] for s in cluster.specs if s.name == leader)

        async def caught_up() -> bool:
            try:
                mine = await client.rpc.call(address, MasterStatus(), timeout=2)
                theirs = await client.rpc.call(leader_address, MasterStatus(), timeout=2)
            except FeitianError:
                return False
            return bool(mine.files == theirs.files and mine.applied_index >= theirs.applied_index - 5)

        await wait_for_condition(caught_up, 60, "the restarted master catching up")
        await client.write_file("/ns/after", b"z")  # and the cluster still serves
        assert await client.read("/ns/after") == b"z"
    finally:
        await client.rpc.close()
        assert await asyncio.to_thread(cluster.stop) == []
