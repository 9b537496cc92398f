"""Nuwa under process faults: SIGKILL of the leader during writes (repeatedly), SIGKILL of a lock holder's
process, SIGSTOP of every replica under a held lock.

* No acknowledged write is lost; clients go on after each election without the application handling it (and
  no retried write applies twice: a create that ran twice would fail with AlreadyExistsError).
* A subscription sees every event of a known sequence, in order, across the failovers.
* A session survives leader failover; its ephemeral node stays.
* Lock failover after the holder's process dies takes at most the session TTL + 0.5 s.
* When the session is lost the body of ``async with lock`` is cancelled and SessionExpiredError raised.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feitian.coord import CoordClient, Event, EventKind
from feitian.coord.messages import ListRequest
from feitian.errors import FeitianError, SessionExpiredError
from feitian.replica.options import ReplicaOptions
from feitian.rpc import Client
from feitian.runtime.procs import ProcessRef, signal_process, start_time_of
from feitian.testing.cli import lock_holder
from feitian.testing.coord import CoordReplicas
from feitian.testing.waiting import wait_for_condition

pytestmark = pytest.mark.timeout(180)

TTL_MS = 3000


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[CoordReplicas]:
    rs = CoordReplicas(tmp_path / "nuwa", 3, snapshot_every_entries=200, keep_entries_after_snapshot=50)
    await asyncio.to_thread(rs.start_all)
    try:
        yield rs
    finally:
        assert await asyncio.to_thread(rs.stop) == []


async def test_sigkill_the_leader_during_writes_repeatedly(replicas: CoordReplicas) -> None:
    await kill_leaders_during_writes(replicas, rounds=3)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_soak_sigkill_the_leader_ten_times(replicas: CoordReplicas) -> None:
    await kill_leaders_during_writes(replicas, rounds=10)


async def kill_leaders_during_writes(replicas: CoordReplicas, rounds: int) -> None:
    """Writers create nodes while, each round, a replica is SIGKILLed and restarted: the leader in even rounds,
    in odd ones the replica the subscription is reading from (the leader too, sometimes). A subscriber follows
    a known sequence live throughout, and must keep receiving it after every kill."""
    rpc = await replicas.rpc()
    writers = [replicas.client(rpc) for _ in range(4)]
    observer = replicas.client(rpc, watch_wait_ms=1000)  # the default session TTL
    acked: set[str] = set()
    sequence: list[str] = []  # written one at a time, in this order
    seen: list[str] = []  # what the subscription delivered, as it arrived
    errors: list[BaseException] = []
    stop = asyncio.Event()
    follower: asyncio.Future[None] | None = None
    try:
        await observer.create("/w/", parents=True)
        session = await observer.session()
        await observer.create("/alive", b"", ephemeral=True)
        watch = observer.watch("/seq/")
        await watch.start()

        async def follow() -> None:
            while True:
                item = await watch.next()
                assert isinstance(item, Event) and item.kind is EventKind.CREATED, item
                seen.append(item.path)

        async def write(w: int, client: CoordClient) -> None:
            n = 0
            while not stop.is_set():
                path = f"/w/{w}-{n}"
                try:
                    await client.create(path, b"%d" % n)
                except FeitianError as exc:
                    errors.append(exc)
                else:
                    acked.add(path)
                n += 1

        async def write_sequence(client: CoordClient) -> None:
            n = 0
            while not stop.is_set():
                created = await client.create(f"/seq/k-{n:05d}", parents=True)
                sequence.append(created.stat.path)
                n += 1

        def following(count: int) -> bool:
            assert follower is not None
            if follower.done():
                follower.result()  # a wrong event: raise it here
            return len(seen) >= count

        follower = asyncio.ensure_future(follow())
        tasks = [asyncio.ensure_future(write(w, c)) for w, c in enumerate(writers[:3])]
        tasks.append(asyncio.ensure_future(write_sequence(writers[3])))
        for round_ in range(rounds):
            target = len(acked) + 100
            await wait_for_condition(lambda t=target: len(acked) >= t, 60, "writes flow")  # type: ignore[misc]
            leader = await replicas.leader(rpc)
            assert leader is not None
            watched = next(i for i, a in replicas.addresses.items() if a == observer.router.current)
            victim = leader if round_ % 2 == 0 else watched
            await asyncio.to_thread(replicas.kill, victim)
            target = len(acked) + 100
            await wait_for_condition(lambda t=target: len(acked) >= t, 60, "writes go on after the election")  # type: ignore[misc]
            count = len(sequence) + 1  # + the creation of /seq/ itself
            await wait_for_condition(lambda c=count: following(c), 30, "the subscription goes on after the kill")  # type: ignore[misc]
            await asyncio.to_thread(replicas.start, victim)
        stop.set()
        await asyncio.gather(*tasks)
        assert errors == []  # every write was acknowledged: failover is the client's business, not the app's

        # Every acknowledged write is there (a linearizable listing), and nothing else.
        found: set[str] = set()
        start_after = ""
        while True:
            page = await observer.list("/w/", start_after=start_after)
            found.update(c.path for c in page.children)
            if not page.more:
                break
            start_after = page.children[-1].path
        assert found == acked

        # Every replica, the restarted ones too (from their snapshot and log), converges on the same state.
        await wait_for_condition(lambda: _converged(replicas, rpc), 30, "the replicas converge")
        for address in replicas.address_list:
            listing = await rpc.call(address, ListRequest("/w/", stale=True), timeout=5)
            assert {c.path for c in listing.children} == acked
        assert max(s.replica.snapshot_index for s in (await replicas.statuses(rpc)).values()) > 1  # compacted

        # The subscription saw the whole known sequence, in order, live across every kill.
        await wait_for_condition(lambda: following(len(sequence) + 1), 30, "the subscription delivers the rest")
        assert seen == ["/seq/", *sequence]

        # The session lived through every failover: its ephemeral node is still there.
        assert not session.lost.is_set() and session.alive, session.lost_reason
        assert (await observer.exists("/alive")).exists
    finally:
        stop.set()
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        for client in (*writers, observer):
            await client.close()
        await rpc.close()


async def _converged(replicas: CoordReplicas, rpc: Client) -> bool:
    statuses = await replicas.statuses(rpc)
    return len(statuses) == len(replicas.ids) and len({s.replica.applied_index for s in statuses.values()}) == 1


async def _contenders(client: CoordClient, n: int) -> bool:
    return len((await client.list("/locks/failover/")).children) == n


def holder_process(cluster_dir: str, path: str, ttl_ms: int | None = TTL_MS) -> tuple[subprocess.Popen[str], int]:
    """`feitian coord lock PATH` in its own process; returns it and the fencing token it printed."""
    proc, info = lock_holder(cluster_dir, path, *(["--ttl", str(ttl_ms)] if ttl_ms else []))
    return proc, int(info["token"])


async def test_lock_failover_after_sigkill_of_the_holder_process(replicas: CoordReplicas) -> None:
    failover_s = await lock_failover(replicas, TTL_MS)
    assert failover_s <= TTL_MS / 1000 + 0.5


async def test_lock_failover_with_default_settings_is_under_10_s(tmp_path: Path) -> None:
    """The default session TTL (8 s) and the default Raft timing (election_ticks 20)."""
    rs = CoordReplicas(tmp_path / "nuwa", 3, election_ticks=ReplicaOptions(id=1, peers={}).election_ticks)
    await asyncio.to_thread(rs.start_all)
    try:
        assert await lock_failover(rs, None) < 10.0
    finally:
        assert await asyncio.to_thread(rs.stop) == []


async def lock_failover(replicas: CoordReplicas, ttl_ms: int | None) -> float:
    """Seconds from SIGKILL of a lock holder's process until a waiter holds the lock."""
    proc, token = await asyncio.to_thread(holder_process, replicas.cluster.dir, "/locks/failover", ttl_ms)
    replicas.track(ProcessRef(proc.pid, start_time_of(proc.pid)))
    rpc = await replicas.rpc()
    waiter = replicas.client(rpc)
    try:
        waiting = asyncio.ensure_future(waiter.lock("/locks/failover").acquire())
        await wait_for_condition(lambda: _contenders(waiter, 2), 10, "the waiter queues behind the holder")
        assert not waiting.done()
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        lease = await asyncio.wait_for(waiting, 60)
        failover_s = time.monotonic() - killed_at
        proc.wait()
        assert lease.token > token
        print(f"lock failover after SIGKILL of the holder: {failover_s:.2f} s (session TTL {ttl_ms or 'default'})")
        return failover_s
    finally:
        await waiter.close()
        await rpc.close()


async def test_the_lock_body_is_cancelled_when_the_session_is_lost(replicas: CoordReplicas) -> None:
    rpc = await replicas.rpc()
    holder = replicas.client(rpc, session_ttl_ms=TTL_MS, attempt_timeout_s=0.5)
    other = replicas.client(rpc, session_ttl_ms=TTL_MS)
    body_cancelled = asyncio.Event()
    try:
        with pytest.raises(SessionExpiredError):
            async with holder.lock("/locks/frozen") as lease:
                for i in replicas.ids:  # the whole service stops answering: no heartbeat can be acknowledged
                    replicas.freeze(i)
                frozen_at = time.monotonic()
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    body_cancelled.set()
                    raise
        lost_after = time.monotonic() - frozen_at
        assert body_cancelled.is_set() and lease.lost
        assert lost_after < TTL_MS / 1000  # the client gave up within its lease, before any server could expire it
        for i in replicas.ids:
            replicas.resume(i)
        # The service expires the session in its turn; then the lock passes on.
        other_lease = await other.lock("/locks/frozen").acquire(timeout_s=30)
        assert other_lease.token > lease.token
    finally:
        for i in replicas.ids:
            signal_process(replicas.ref(i), signal.SIGCONT)
        await holder.close()
        await other.close()
        await rpc.close()


_SESSION_HOLDER = """
import asyncio, sys
from feitian.coord import CoordClient
from feitian.rpc import Client, ClientConfig

async def main(addresses):
    rpc = Client(ClientConfig(name="session-holder", connect_timeout_s=2))
    client = CoordClient(rpc, addresses, session_ttl_ms=int(sys.argv[1]))
    await client.create("/expiry/a", b"", ephemeral=True, parents=True)
    await client.create("/expiry/b", b"", ephemeral=True)
    lease = await client.lock("/expiry/lock").acquire()
    print(lease.token, lease.path, flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[2:]))
"""


async def test_session_expiry_removes_its_ephemerals_and_locks_at_one_revision(replicas: CoordReplicas) -> None:
    """The process owning a session dies: the service expires the session and removes its ephemeral nodes and
    its lock node in one step — every deletion carries the same revision — and the lock passes on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SESSION_HOLDER, str(TTL_MS), *replicas.address_list, stdout=asyncio.subprocess.PIPE
    )
    replicas.track(ProcessRef(proc.pid, start_time_of(proc.pid)))
    rpc = await replicas.rpc()
    observer = replicas.client(rpc)
    try:
        assert proc.stdout is not None
        token_text, lock_node = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        token = int(token_text)
        watch = observer.watch("/expiry/", recursive=True)
        await watch.start()
        waiter = asyncio.ensure_future(observer.lock("/expiry/lock").acquire())
        proc.send_signal(signal.SIGKILL)
        lease = await asyncio.wait_for(waiter, 30)
        assert lease.token > token
        deleted: dict[str, int] = {}
        while len(deleted) < 3:
            item = await watch.next(30)
            if isinstance(item, Event) and item.kind is EventKind.DELETED:
                deleted[item.path] = item.revision
        assert set(deleted) == {"/expiry/a", "/expiry/b", lock_node}
        assert len(set(deleted.values())) == 1, deleted  # one revision: all or nothing
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await observer.close()
        await rpc.close()
