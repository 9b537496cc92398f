"""Nuwa's data model through real replicas: files and directories, versions, sequential nodes, transactions,
linearizable and stale reads, retried writes that apply once, sessions and ephemeral nodes (NUWA-2, 3, 4, 9)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from feitian.coord import CheckOp, CoordClient, CreateOp, DeleteOp, SetOp
from feitian.coord.client.sync import SyncCoordClient
from feitian.coord.messages import CreateRequest, CreateSessionRequest, GetRequest
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotFoundError,
    SessionExpiredError,
)
from feitian.rpc import Client
from feitian.testing.clock import ShiftedClock
from feitian.testing.coord import CoordReplicas
from feitian.testing.waiting import wait_for_condition


@pytest.fixture
async def rpc(nuwa: CoordReplicas) -> AsyncIterator[Client]:
    client = await nuwa.rpc()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def client(nuwa: CoordReplicas, rpc: Client) -> AsyncIterator[CoordClient]:
    nc = nuwa.client(rpc, session_ttl_ms=8000)  # comfortable on a loaded 2-core machine
    try:
        yield nc
    finally:
        await nc.close()


async def test_files_directories_versions_and_errors(client: CoordClient, base: str) -> None:
    created = await client.create(f"{base}apps/web/conf", b"v1", parents=True)
    assert created.parents == (base, f"{base}apps/", f"{base}apps/web/")
    assert created.stat.version == 1 and created.stat.create_revision == created.revision
    got = await client.get(f"{base}apps/web/conf")
    assert got.value == b"v1" and got.revision >= created.revision and got.stat.creator == "anonymous"
    updated = await client.set(f"{base}apps/web/conf", b"v2", version=1)
    assert updated.stat.version == 2 and updated.revision > created.revision
    with pytest.raises(ConflictError) as conflict:
        await client.set(f"{base}apps/web/conf", b"v3", version=1)
    assert conflict.value.fields["found"] == 2
    with pytest.raises(AlreadyExistsError):
        await client.create(f"{base}apps/web/conf")
    with pytest.raises(NotFoundError):
        await client.get(f"{base}nope")
    with pytest.raises(NotFoundError):
        await client.create(f"{base}missing/child")  # no parents=True
    with pytest.raises(ConflictError):
        await client.delete(f"{base}apps/web/")  # not empty
    with pytest.raises(MessageTooLargeError):
        await client.set(f"{base}apps/web/conf", b"x" * ((1 << 20) + 1))
    with pytest.raises(InvalidArgumentError):
        await client.create(f"{base}bad*name")
    listing = await client.list(f"{base}apps/web/", values=True)
    assert listing.names == ["conf"] and listing.values == (b"v2",)
    assert (await client.stat(f"{base}apps/")).children == 1
    assert (await client.exists(f"{base}apps/web/conf")).exists
    await client.delete(f"{base}apps/web/conf", version=2)
    assert not (await client.exists(f"{base}apps/web/conf")).exists


async def test_sequential_nodes_list_in_creation_order(client: CoordClient, base: str) -> None:
    paths = [
        (await client.create(f"{base}q/job-", b"%d" % i, sequential=True, parents=True)).stat.path for i in range(5)
    ]
    assert paths == [f"{base}q/job-{i:010d}" for i in range(5)]
    await client.delete(paths[4])
    again = await client.create(f"{base}q/job-", sequential=True)
    assert again.stat.path == f"{base}q/job-0000000005"  # the counter never goes back
    page = await client.list(f"{base}q/", limit=3)
    assert page.more and len(page.children) == 3
    rest = await client.list(f"{base}q/", start_after=page.children[-1].path)
    assert [c.path for c in page.children + rest.children] == [*paths[:4], again.stat.path]


async def test_transactions_are_all_or_nothing(client: CoordClient, base: str) -> None:
    await client.create(f"{base}a", b"1", parents=True)
    done = await client.txn(
        [CheckOp(path=f"{base}a", version=1), SetOp(path=f"{base}a", value=b"2"), CreateOp(path=f"{base}b", value=b"b")]
    )
    assert len(done.results) == 3 and (await client.get(f"{base}b")).stat.create_revision == done.revision
    before = (await client.exists(f"{base}c")).revision
    with pytest.raises(ConflictError) as failed:
        await client.txn([CreateOp(path=f"{base}c"), DeleteOp(path=f"{base}b"), CheckOp(path=f"{base}a", version=1)])
    assert failed.value.fields["op_index"] == 2
    after = await client.exists(f"{base}c")
    assert not after.exists and (await client.exists(f"{base}b")).exists
    assert after.revision == before  # nothing applied, no revision taken


async def test_linearizable_reads_on_every_replica_and_stale_reads(
    nuwa: CoordReplicas, rpc: Client, client: CoordClient, base: str
) -> None:
    for n in range(5):
        written = await client.create(f"{base}k{n}", b"%d" % n, parents=True)
        for address in nuwa.address_list:  # followers too: a read barrier first
            got = await rpc.call(address, GetRequest(f"{base}k{n}"), timeout=5)
            assert got.value == b"%d" % n and got.revision >= written.revision
    await wait_for_condition(
        lambda: _stale_everywhere(nuwa, rpc, f"{base}k4"), 10, "every replica applies the write (stale reads see it)"
    )


async def _stale_everywhere(nuwa: CoordReplicas, rpc: Client, path: str) -> bool:
    for address in nuwa.address_list:
        try:
            await rpc.call(address, GetRequest(path, stale=True), timeout=2)
        except NotFoundError:
            return False
    return True


async def test_a_retried_write_applies_once(nuwa: CoordReplicas, rpc: Client, client: CoordClient, base: str) -> None:
    await client.create(base)
    leader = nuwa.addresses[await _leader(nuwa, rpc)]
    request = CreateRequest(path=f"{base}job-", sequential=True, client_id="retry-test", request_seq=1)
    first = await rpc.call(leader, request, timeout=5)
    second = await rpc.call(leader, request, timeout=5)  # the reply was "lost": the client sends it again
    assert first == second  # the same node, not a second one
    assert [c.path for c in (await client.list(base)).children] == [first.stat.path]


async def _leader(nuwa: CoordReplicas, rpc: Client) -> int:
    leader = await nuwa.leader(rpc)
    assert leader is not None
    return leader


async def test_ephemeral_nodes_go_with_their_session(
    nuwa: CoordReplicas, rpc: Client, client: CoordClient, base: str
) -> None:
    session = await client.session()
    await client.create(f"{base}alive", b"x", ephemeral=True, parents=True)
    info = await client.session_info(session.session_id)
    assert info.ephemerals == (f"{base}alive",) and info.ttl_ms == 8000
    # A session nobody heartbeats expires on the server after its TTL, with its ephemerals, at one revision.
    leader = nuwa.addresses[await _leader(nuwa, rpc)]
    orphan = await rpc.call(leader, CreateSessionRequest(ttl_ms=1000), timeout=5)
    await rpc.call(
        leader,
        CreateRequest(path=f"{base}orphan-1", ephemeral=True, session_id=orphan.session_id),
        timeout=5,
    )
    await rpc.call(
        leader,
        CreateRequest(path=f"{base}orphan-2", ephemeral=True, session_id=orphan.session_id),
        timeout=5,
    )
    await wait_for_condition(lambda: _gone(client, f"{base}orphan-1"), 5, "the unheartbeated session expires (TTL 1 s)")
    one, two = await client.exists(f"{base}orphan-1"), await client.exists(f"{base}orphan-2")
    assert not one.exists and not two.exists
    with pytest.raises(SessionExpiredError):
        await client.session_info(orphan.session_id)
    # Our own session is kept alive by heartbeats.
    await wait_for_condition(lambda: session.heartbeats_acked >= 1, 10, "a heartbeat acknowledged")
    assert session.alive and (await client.exists(f"{base}alive")).exists
    await session.close()
    assert not (await client.exists(f"{base}alive")).exists
    assert not session.alive
    fresh = await client.session()  # a lost session is never revived: a new one is made
    assert fresh.session_id != session.session_id


async def _gone(client: CoordClient, path: str) -> bool:
    return not (await client.exists(path)).exists


def test_the_synchronous_client(nuwa: CoordReplicas, base: str) -> None:
    with SyncCoordClient(nuwa.address_list, session_ttl_ms=8000) as nc:
        nc.create(f"{base}conf", b"1", parents=True)
        assert nc.get(f"{base}conf").value == b"1"
        nc.set(f"{base}conf", b"2", version=1)
        with nc.lock(f"{base}lock") as lease:
            lease.check()
            assert lease.token > 0
        since = nc.get(f"{base}conf").stat.mod_revision - 1
        events = nc.watch(f"{base}conf", since=since, count=1, timeout_s=10)
        assert [e.path for e in events] == [f"{base}conf"]  # type: ignore[union-attr]
        assert nc.list(base).names == ["conf", "lock/"]


def test_a_synchronous_lock_body_that_outlived_its_session_is_told_on_exit(nuwa: CoordReplicas, base: str) -> None:
    """A synchronous body cannot be cancelled: leaving ``with nuwa.lock(...)`` after the session was lost raises
    SessionExpiredError, so the caller does not take the body's work as done under the lock."""
    clock = ShiftedClock()
    with SyncCoordClient(nuwa.address_list, session_ttl_ms=8000, clock=clock) as nc:
        with pytest.raises(SessionExpiredError, match="lost while the lock was held"), nc.lock(f"{base}slow"):
            clock.advance(6)  # the body "ran" past the client lease
        with nc.lock(f"{base}slow") as lease:  # a new session takes it again (once the old one is gone)
            lease.check()


async def test_concurrent_writes_of_one_client_travel_in_batches_and_each_gets_its_own_answer(
    client: CoordClient, base: str
) -> None:
    import asyncio

    await client.create(f"{base}batch/", parents=True)
    await client.create(f"{base}batch/guarded", b"v1")
    writes = [client.create(f"{base}batch/n{i}", str(i).encode()) for i in range(24)]
    writes.append(client.set(f"{base}batch/guarded", b"v2", version=5))  # a conflict fails alone
    writes.append(client.create(f"{base}nope/child"))  # no parent: fails alone
    writes.append(client.set(f"{base}batch/guarded", b"v3", version=1))
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results[:24]), results[:24]
    assert isinstance(results[24], ConflictError) and isinstance(results[25], NotFoundError)
    assert not isinstance(results[26], BaseException)
    assert client.batcher.batches >= 1 and client.batcher.batched_writes >= 2
    listing = await client.list(f"{base}batch/", values=True)
    values = dict(zip(listing.names, listing.values, strict=True))
    assert values == {"guarded": b"v3", **{f"n{i}": str(i).encode() for i in range(24)}}
    revisions = sorted(r.revision for r in results[:24] if not isinstance(r, BaseException))
    assert len(set(revisions)) == 24  # each write has a revision of its own
