"""Linearizable reads stay available through process faults of real Nuwa replicas (default Raft timing).

* After the leader is SIGKILLed or SIGSTOPped, a fresh linearizable read succeeds on every survivor within one
  second of the new leader's first acknowledged write (a ReadIndex round sent to the dead leader is sent again
  to the new one; it used to wait out the replica's 10 s default timeout, and every later read behind it).
* With one follower SIGSTOPped, simultaneous reads at the leader and at the other follower both succeed, every
  time (their read contexts used to collide at the leader, and one of the two was dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from coord_workload import proxied_nuwa

from feitian.coord.messages import GetRequest, SetRequest
from feitian.errors import FeitianError
from feitian.rpc import Client
from feitian.testing.coord import CoordReplicas

pytestmark = pytest.mark.timeout(180)

READ_TIMEOUT_S = 3.0  # below the old stall (10 s) and the old dropped read's wait (5 s)


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[CoordReplicas]:
    rs = CoordReplicas(tmp_path / "nuwa", 3, election_ticks=20)  # the replicas' default timing: 1-2 s
    await asyncio.to_thread(rs.start_all)
    try:
        yield rs
    finally:
        assert await asyncio.to_thread(rs.stop) == []


async def _first_successes(
    rpc: Client, addresses: list[str], started: float, give_up_s: float
) -> tuple[dict[str, float], float | None]:
    """Every 0.1 s, a linearizable read at each address and a write through the client; returns when each
    address has answered a read and a write succeeded: seconds after ``started`` of each address's first
    answered read, and of the first acknowledged write."""
    reads: dict[str, float] = {}
    write_at: list[float] = []
    tasks: set[asyncio.Task[None]] = set()

    async def read(address: str) -> None:
        try:
            got = await rpc.call(address, GetRequest("/r/k"), timeout=READ_TIMEOUT_S)
        except FeitianError:
            return
        assert got.value in (b"before", b"after")
        reads.setdefault(address, time.monotonic() - started)

    async def write(address: str) -> None:
        try:
            await rpc.call(address, SetRequest(path="/r/k", value=b"after"), timeout=READ_TIMEOUT_S)
        except FeitianError:
            return
        write_at.append(time.monotonic() - started)

    try:
        while len(reads) < len(addresses) or not write_at:
            if time.monotonic() - started > give_up_s:
                break
            for address in addresses:
                tasks.add(asyncio.ensure_future(read(address)))
                if not write_at:
                    tasks.add(asyncio.ensure_future(write(address)))
            await asyncio.sleep(0.1)  # the pace of the probes, not a wait for a condition
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return reads, (min(write_at) if write_at else None)


async def _fault_then_reads(replicas: CoordReplicas, fault: Callable[[int], None]) -> None:
    rpc = await replicas.rpc()
    client = replicas.client(rpc)
    try:
        await client.create("/r/k", b"before", parents=True)
        leader = await replicas.leader(rpc)
        assert leader is not None
        survivors = [a for i, a in replicas.addresses.items() if i != leader]
        for address in survivors:  # every survivor serves reads before the fault
            await rpc.call(address, GetRequest("/r/k"), timeout=READ_TIMEOUT_S)
        started = time.monotonic()
        await asyncio.to_thread(fault, leader)
        reads, write_at = await _first_successes(rpc, survivors, started, give_up_s=30)
        assert write_at is not None, "no new leader acknowledged a write within 30 s"
        assert set(reads) == set(survivors), f"survivors without an answered read in 30 s: {reads}"
        for address, at in reads.items():
            assert at <= write_at + 1.0, (
                f"{address}: first linearizable read {at:.2f}s after the fault, the new leader's first write "
                f"{write_at:.2f}s"
            )
    finally:
        await client.close()
        await rpc.close()


async def test_reads_after_the_leader_is_sigkilled(replicas: CoordReplicas) -> None:
    await _fault_then_reads(replicas, replicas.kill)


async def test_reads_after_the_leader_is_sigstopped(replicas: CoordReplicas) -> None:
    await _fault_then_reads(replicas, replicas.freeze)


async def test_simultaneous_reads_with_one_follower_sigstopped(tmp_path: Path) -> None:
    """Consensus traffic crosses a fault proxy that delays the leader's link to the follower still running, so
    the leader's own round is pending when the follower's request arrives (the moment equal contexts used to
    collide). Each replica numbers its rounds; an extra read on one side per attempt (first the follower, then
    the leader) makes the two numberings meet."""
    async with proxied_nuwa(tmp_path) as nuwa:
        client = nuwa.client()
        try:
            await client.create("/r/k", b"before", parents=True)
            leader = await nuwa.leader()
            paused, other = (i for i in nuwa.addresses if i != leader)
            await asyncio.to_thread(nuwa.freeze, paused)
            nuwa.proxy.link(leader, other).delay(0.02)
            at_leader, at_other = nuwa.addresses[leader], nuwa.addresses[other]
            for attempt in range(16):
                extra = at_other if attempt < 8 else at_leader
                await nuwa.rpc.call(extra, GetRequest("/r/k"), timeout=READ_TIMEOUT_S)
                both = await asyncio.gather(
                    nuwa.rpc.call(at_leader, GetRequest("/r/k"), timeout=READ_TIMEOUT_S),
                    nuwa.rpc.call(at_other, GetRequest("/r/k"), timeout=READ_TIMEOUT_S),
                    return_exceptions=True,
                )
                failed = [r for r in both if isinstance(r, BaseException)]
                assert not failed, f"attempt {attempt}: {failed}"
        finally:
            await client.close()
