"""Snapshot transfer in chunks over real Kuafu sockets: whole, resumed, checksummed, bounded."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from crc32c import crc32c

from feitian.consensus import ConfState, InstallSnapshot, Snapshot, SnapshotMeta
from feitian.errors import InvalidArgumentError
from feitian.replica.snapshot_transfer import SnapshotChunk, SnapshotReceiver, SnapshotSender
from feitian.rpc import Client, ClientConfig, Server, ServerConfig
from feitian.testing.waiting import wait_for_condition

KiB = 1 << 10


@dataclass
class World:
    receiver: SnapshotReceiver
    client: Client
    address: str
    delivered: list[InstallSnapshot] = field(default_factory=list)
    reports: list[tuple[int, bool]] = field(default_factory=list)

    def sender(self, chunk_bytes: int = 256 * KiB) -> SnapshotSender:
        return SnapshotSender(
            "c",
            2,
            self.address,
            self.client,
            lambda peer, failed: self.reports.append((peer, failed)),
            chunk_bytes=chunk_bytes,
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    delivered: list[InstallSnapshot] = []
    receiver = SnapshotReceiver("c", 2, str(tmp_path), delivered.append)
    server = Server(ServerConfig(name="follower"))
    server.add_handler(SnapshotChunk, receiver.handle)
    (address,) = await server.start(["tcp://127.0.0.1:0"])
    client = Client(ClientConfig(name="leader"))
    try:
        yield World(receiver, client, address, delivered)
    finally:
        await client.close()
        await server.stop()


def message(data: bytes, index: int = 40) -> InstallSnapshot:
    meta = SnapshotMeta(index=index, term=3, conf=ConfState(voters=(1, 2, 3)))
    return InstallSnapshot(from_id=1, to_id=2, term=3, snapshot=Snapshot(meta=meta, data=data))


async def test_a_snapshot_arrives_whole_in_chunks(world: World) -> None:
    data = random.Random(1).randbytes(5 * 1024 * KiB + 123)
    sender = world.sender()
    sender.start(message(data))
    await wait_for_condition(lambda: world.reports == [(2, False)], 30, "the transfer reported")
    assert [m.snapshot.data == data for m in world.delivered] == [True]
    assert world.delivered[0].snapshot.meta.index == 40
    assert sender.bytes_sent == len(data)
    assert not list(Path(world.receiver.directory).glob("snapshot-incoming-*"))  # the spool is gone


async def test_an_empty_snapshot_arrives(world: World) -> None:
    world.sender().start(message(b""))
    await wait_for_condition(lambda: world.reports == [(2, False)], 30, "the transfer reported")
    assert world.delivered[0].snapshot.data == b""


async def test_a_transfer_that_broke_off_resumes_where_it_stopped(world: World) -> None:
    data = random.Random(2).randbytes(1024 * KiB)
    crc = crc32c(data)
    chunk = 256 * KiB
    for offset in (0, chunk):  # an earlier transfer delivered two chunks, then its leader went away
        request = SnapshotChunk("c", 1, 2, 3, 40, 3, len(data), crc, offset)
        await world.client.call(world.address, request, payload=data[offset : offset + chunk], timeout=5)
    sender = world.sender(chunk)
    sender.start(message(data))
    await wait_for_condition(lambda: world.reports == [(2, False)], 30, "the transfer reported")
    assert world.delivered[0].snapshot.data == data
    assert sender.bytes_sent == len(data) - 2 * chunk


async def test_a_damaged_transfer_is_refused_and_the_next_starts_afresh(world: World) -> None:
    data = random.Random(3).randbytes(512 * KiB)
    request = SnapshotChunk("c", 1, 2, 3, 40, 3, len(data), crc32c(data), 0)
    garbage = bytes(256 * KiB)  # the wrong bytes at offset 0 of the same snapshot
    await world.client.call(world.address, request, payload=garbage, timeout=5)
    sender = world.sender()
    sender.start(message(data))
    await wait_for_condition(lambda: world.reports == [(2, True)], 30, "the failure reported")
    assert world.delivered == []
    sender.start(message(data))  # the core probes again and sends it anew
    await wait_for_condition(lambda: world.reports[-1:] == [(2, False)], 30, "the retry reported")
    assert world.delivered[0].snapshot.data == data


async def test_a_second_install_of_the_same_snapshot_does_not_restart_the_transfer(world: World) -> None:
    data = random.Random(4).randbytes(4 * 1024 * KiB)
    sender = world.sender(64 * KiB)
    sender.start(message(data))
    first = sender.task
    sender.start(message(data))
    assert sender.task is first
    await wait_for_condition(lambda: world.reports == [(2, False)], 30, "the transfer reported")
    assert len(world.delivered) == 1


async def test_misaddressed_and_oversized_chunks_are_refused(world: World) -> None:
    for request in (
        SnapshotChunk("other", 1, 2, 3, 40, 3, 10, 0, 0),
        SnapshotChunk("c", 1, 5, 3, 40, 3, 10, 0, 0),
        SnapshotChunk("c", 1, 2, 3, 40, 3, world.receiver.max_bytes + 1, 0, 0),
    ):
        with pytest.raises(InvalidArgumentError):
            await world.client.call(world.address, request, timeout=5)
    request = SnapshotChunk("c", 1, 2, 3, 40, 3, 10, 0, 0)
    with pytest.raises(InvalidArgumentError, match="past the snapshot's size"):
        await world.client.call(world.address, request, payload=bytes(11), timeout=5)
    assert world.delivered == []
