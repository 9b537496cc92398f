"""The driver's ReadIndex rounds on three replicas in one process, over real Kuafu sockets and real disks.

The retry timer is set far beyond the test's bounds, so these pass only if a round is answered as soon as its
answer arrives (not at its next retry) and is sent again as soon as leadership changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from feitian.deploy.cluster import free_ports
from feitian.replica.driver import Replica, ReplicaConfig
from feitian.rpc import Client, ClientConfig, Server, ServerConfig
from feitian.testing.waiting import wait_for_condition

RETRY_MS = 60_000  # longer than any bound below: a read that waits for a retry fails the test


class Counter:
    """A state machine counting the commands applied."""

    def __init__(self) -> None:
        self.applied = 0

    def apply(self, index: int, data: bytes) -> Any:
        self.applied += 1
        return self.applied

    def snapshot(self) -> bytes:
        return str(self.applied).encode()

    def restore(self, data: bytes) -> None:
        self.applied = int(data or b"0")


class Member:
    def __init__(self, replica: Replica, server: Server, client: Client) -> None:
        self.replica, self.server, self.client = replica, server, client
        self.stopped = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.replica.stop()
            await self.server.stop()
            await self.client.close()


@pytest.fixture
async def members(tmp_path: Path) -> AsyncIterator[list[Member]]:
    ports = free_ports(3)
    peers = {i + 1: f"tcp://127.0.0.1:{port}" for i, port in enumerate(ports)}
    out: list[Member] = []
    try:
        for i in peers:
            server = Server(ServerConfig(name=f"replica-{i}"))
            client = Client(ClientConfig(name=f"replica-{i}", connect_timeout_s=0.2))
            config = ReplicaConfig(
                id=i,
                peers=peers,
                data_dir=str(tmp_path / str(i)),
                tick_ms=20,
                election_ticks=10,
                read_retry_ms=RETRY_MS,
            )
            replica = Replica(config, Counter(), client)
            replica.register(server)
            await server.start([peers[i]])
            await replica.start()
            out.append(Member(replica, server, client))
        yield out
    finally:
        for member in out:
            await member.stop()


async def leader_of(members: list[Member]) -> Member:
    found: list[Member] = []

    def elected() -> bool:
        found[:] = [m for m in members if not m.stopped and m.replica.is_leader]
        return bool(found)

    await wait_for_condition(elected, 20, "a leader")
    return found[0]


async def test_reads_are_answered_without_waiting_for_a_retry(members: list[Member]) -> None:
    leader = await leader_of(members)
    await leader.replica.propose(b"x")
    async with asyncio.timeout(10):
        for member in members:
            for _ in range(20):
                await member.replica.read_barrier()
            assert member.replica.core.applied_index >= 2  # the leader's empty entry, then "x"
        # Concurrent reads on every replica at once share rounds and all finish.
        await asyncio.gather(*(m.replica.read_barrier() for m in members for _ in range(50)))


async def test_a_round_sent_to_a_stopped_leader_is_sent_to_the_next(members: list[Member]) -> None:
    old = await leader_of(members)
    await old.replica.propose(b"x")
    followers = [m for m in members if m is not old]
    await old.stop()  # the requests now sent to it are never answered
    reads = [asyncio.ensure_future(m.replica.read_barrier(timeout=30)) for m in followers]
    async with asyncio.timeout(15):  # an election takes 0.2-0.4 s here; the retry timer 60 s
        new = await leader_of(members)
        assert new is not old
        await asyncio.gather(*reads)
        for member in followers:  # and fresh reads after the election too
            await member.replica.read_barrier()
    with contextlib.suppress(Exception):
        await asyncio.gather(*reads)


@pytest.mark.parametrize("where", ["persist", "apply", "send"])
async def test_an_exception_in_the_ready_loop_is_survived(members: list[Member], where: str) -> None:
    """A failure anywhere in a Ready's steps is logged, counted, and the Ready resumed after a back-off: nothing
    is lost, nothing applied twice, and the replica goes on serving."""
    leader = await leader_of(members)
    replica = leader.replica
    assert await replica.propose(b"a") == 1
    failures = [RuntimeError(f"injected {where} failure")]

    def failing_once(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if failures:
                raise failures.pop()
            return original(*args, **kwargs)

        return wrapper

    if where == "persist":
        assert replica.log is not None
        replica.log.persist = failing_once(replica.log.persist)  # type: ignore[method-assign]
    elif where == "apply":
        replica._apply = failing_once(replica._apply)  # type: ignore[method-assign]
    else:
        replica._send = failing_once(replica._send)  # type: ignore[method-assign]
    async with asyncio.timeout(20):
        results = await asyncio.gather(*(replica.propose(b"x%d" % i) for i in range(10)))
    assert sorted(results) == list(range(2, 12))  # each applied exactly once, in order
    assert failures == [] and replica.loop_errors == 1
    assert where in replica.stats().last_loop_error
    for member in members:  # and every replica holds the same state
        await wait_for_condition(lambda m=member: m.replica.sm.applied == 11, 10, "replicas converge")  # type: ignore[attr-defined,misc]


class Blob(Counter):
    """A state machine whose snapshot is large: 64 KiB, whatever it holds."""

    def snapshot(self) -> bytes:
        return str(self.applied).encode().ljust(64 << 10)

    def restore(self, data: bytes) -> None:
        self.applied = int(data.strip() or b"0")


async def test_snapshots_wait_for_a_log_in_proportion_to_their_size(tmp_path: Path) -> None:
    """snapshot_every_entries is not enough: the log since the last snapshot must also reach snapshot_log_ratio
    times its size, so a large state is not re-encoded every few small writes."""
    (port,) = free_ports(1)
    address = f"tcp://127.0.0.1:{port}"
    server = Server(ServerConfig(name="solo"))
    client = Client(ClientConfig(name="solo"))
    config = ReplicaConfig(
        id=1, peers={1: address}, data_dir=str(tmp_path), snapshot_every_entries=10, snapshot_log_ratio=0.5
    )
    replica = Replica(config, Blob(), client)
    replica.register(server)
    await server.start([address])
    await replica.start()
    try:
        await wait_for_condition(lambda: replica.is_leader, 10, "the single replica leads")
        for _ in range(12):  # past snapshot_every_entries: the first snapshot (the state had none)
            await replica.propose(b"x" * 100)
        await wait_for_condition(lambda: replica.stats().snapshot_index > 1, 10, "the first snapshot")
        first = replica.stats().snapshot_index
        assert 64 << 10 <= replica.snapshot_bytes < 65 << 10  # its file, data and all
        for _ in range(200):  # 20 KB of log: below half of the 64 KiB snapshot
            await replica.propose(b"x" * 100)
        assert replica.stats().snapshot_index == first
        for _ in range(300):  # 50 KB: past half of it even stretched by the random 0-50 % (48 KiB)
            await replica.propose(b"x" * 100)
        await wait_for_condition(lambda: replica.stats().snapshot_index > first, 10, "the second snapshot")
        # The snapshot's data is in its file only, read when a follower needs it.
        assert replica.log is not None
        held = replica.log.snapshot
        assert held.data == b""
        data = await replica.log.snapshot_data(held.meta)
        assert len(data) == 64 << 10 and int(data.strip()) > 300  # the commands applied up to that snapshot
    finally:
        await replica.stop()
        await server.stop()
        await client.close()
