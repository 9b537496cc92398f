"""Recipes through real replicas (NUWA-6, 7, 8): exclusive and shared locks with fencing tokens, election,
naming with the New/Old cache (a lookup costs one request while nothing changes), nuwa:// addresses in Kuafu,
a barrier and a queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from feitian.coord import (
    Barrier,
    CheckOp,
    CoordClient,
    NameCache,
    NuwaResolver,
    Queue,
    SetOp,
    register,
)
from feitian.errors import (
    ConflictError,
    DeadlineExceededError,
    NotFoundError,
    SessionExpiredError,
    UnavailableError,
)
from feitian.rpc import CallContext, Client, ClientConfig, Server, ServerConfig
from feitian.testing.clock import ShiftedClock
from feitian.testing.coord import CoordReplicas
from feitian.testing.rpc import serving
from feitian.testing.waiting import wait_for_condition


@pytest.fixture
async def rpc(nuwa: CoordReplicas) -> AsyncIterator[Client]:
    client = await nuwa.rpc()
    try:
        yield client
    finally:
        await client.close()


def nuwa_client(nuwa: CoordReplicas, rpc: Client) -> CoordClient:
    # A TTL comfortable on a loaded 2-core machine: these tests are not about failover timing.
    return nuwa.client(rpc, session_ttl_ms=8000, watch_wait_ms=2000)


async def test_an_exclusive_lock_passes_to_the_next_holder_with_a_larger_token(
    nuwa: CoordReplicas, rpc: Client, base: str
) -> None:
    a, b = nuwa_client(nuwa, rpc), nuwa_client(nuwa, rpc)
    try:
        holders: list[tuple[str, int]] = []
        first = await a.lock(f"{base}lock").acquire()
        waiting = asyncio.ensure_future(b.lock(f"{base}lock").acquire())
        await asyncio.sleep(0)  # b queues behind a
        with pytest.raises(DeadlineExceededError):
            await b.lock(f"{base}lock").acquire(timeout_s=0.3)
        assert not waiting.done()
        holders.append(("a", first.token))
        await a.create(f"{base}guarded", b"a", parents=True)
        # a's writes are fenced by its token.
        await a.txn([CheckOp(path=first.path, create_revision=first.token), SetOp(path=f"{base}guarded", value=b"a2")])
        await first.release()
        second = await asyncio.wait_for(waiting, 10)
        holders.append(("b", second.token))
        assert second.token > first.token
        with pytest.raises(ConflictError):  # the old holder's fenced write is refused
            await a.txn(
                [CheckOp(path=first.path, create_revision=first.token), SetOp(path=f"{base}guarded", value=b"x")]
            )
        await second.release()
        # The contenders that timed out or were released left no node behind.
        await wait_for_condition(
            lambda: _empty(a, f"{base}lock/"), 5, "the lock directory is empty once everyone is done"
        )
    finally:
        await a.close()
        await b.close()


async def _count(client: CoordClient, directory: str, n: int) -> bool:
    try:
        return len((await client.list(directory)).children) == n
    except NotFoundError:
        return n == 0


async def _empty(client: CoordClient, directory: str) -> bool:
    return not (await client.list(directory)).children


async def test_shared_holders_coexist_and_exclude_an_exclusive_one(nuwa: CoordReplicas, rpc: Client, base: str) -> None:
    a, b, c = nuwa_client(nuwa, rpc), nuwa_client(nuwa, rpc), nuwa_client(nuwa, rpc)
    try:
        r1 = await a.lock(f"{base}rw", shared=True).acquire(timeout_s=5)
        r2 = await b.lock(f"{base}rw", shared=True).acquire(timeout_s=5)  # shared with r1
        writer = asyncio.ensure_future(c.lock(f"{base}rw").acquire())
        await wait_for_condition(lambda: _count(a, f"{base}rw/", 3), 10, "the writer queues")
        with pytest.raises(DeadlineExceededError):  # a reader behind a queued writer does not pass it
            await b.lock(f"{base}rw", shared=True).acquire(timeout_s=0)
        late_reader = asyncio.ensure_future(a.lock(f"{base}rw", shared=True).acquire())
        await wait_for_condition(lambda: _count(a, f"{base}rw/", 4), 10, "the late reader queues")
        await r1.release()
        await wait_for_condition(lambda: _count(a, f"{base}rw/", 3), 10, "r1's node is gone")
        assert not writer.done() and not late_reader.done()  # r2 still holds: the writer (and the reader) wait
        await r2.release()
        w = await asyncio.wait_for(writer, 10)
        assert w.token > r2.token
        await w.release()
        r3 = await asyncio.wait_for(late_reader, 10)
        await r3.release()
    finally:
        for client in (a, b, c):
            await client.close()


async def test_async_with_holds_and_releases(nuwa: CoordReplicas, rpc: Client, base: str) -> None:
    client = nuwa_client(nuwa, rpc)
    try:
        async with client.lock(f"{base}cm") as lease:
            assert not lease.lost
            assert [c.path for c in (await client.list(f"{base}cm/")).children] == [lease.path]
        assert not (await client.list(f"{base}cm/")).children
    finally:
        await client.close()


async def test_a_body_that_finds_the_loss_itself_is_not_cancelled_afterwards(
    nuwa: CoordReplicas, rpc: Client, base: str
) -> None:
    """The body checks its lease and finds the session lost (the clock moved past the client lease before the
    keeper noticed): it gets SessionExpiredError from the check, and no cancellation is left pending for the
    caller's next await — a "catch, back off, retry" loop goes on."""
    clock = ShiftedClock()
    client = nuwa.client(rpc, session_ttl_ms=8000, watch_wait_ms=2000, clock=clock)
    try:
        with pytest.raises(SessionExpiredError):
            async with client.lock(f"{base}checked") as lease:
                clock.advance(6)  # past the client lease (2/3 of the TTL), with no await in between
                lease.check()
        await asyncio.sleep(0)  # a stray cancellation would be raised here
        assert lease.lost and not asyncio.current_task().cancelling()  # type: ignore[union-attr]
    finally:
        await client.close()


async def test_one_lock_object_in_two_tasks_releases_each_task_own_node(
    nuwa: CoordReplicas, rpc: Client, base: str
) -> None:
    client = nuwa_client(nuwa, rpc)
    lock = client.lock(f"{base}shared", shared=True)
    a_in, a_out, b_in = asyncio.Event(), asyncio.Event(), asyncio.Event()
    paths: dict[str, str] = {}

    async def holder(name: str, entered: asyncio.Event, leave: asyncio.Event) -> None:
        async with lock as lease:
            paths[name] = lease.path
            entered.set()
            await leave.wait()

    try:
        a = asyncio.ensure_future(holder("a", a_in, a_out))
        await a_in.wait()
        b_out = asyncio.Event()
        b = asyncio.ensure_future(holder("b", b_in, b_out))
        await b_in.wait()
        a_out.set()
        await a
        nodes = [c.path for c in (await client.list(f"{base}shared/")).children]
        assert nodes == [paths["b"]]  # a's exit deleted a's node, not b's
        b_out.set()
        await b
        assert not (await client.list(f"{base}shared/")).children
    finally:
        await client.close()


async def test_a_timed_out_lock_wait_leaves_no_long_poll_behind(nuwa: CoordReplicas, rpc: Client, base: str) -> None:
    holder, waiter = nuwa_client(nuwa, rpc), nuwa.client(rpc, session_ttl_ms=8000, watch_wait_ms=10_000)
    try:
        lease = await holder.lock(f"{base}held").acquire()
        for _ in range(3):
            with pytest.raises(DeadlineExceededError):
                await waiter.lock(f"{base}held").acquire(timeout_s=0.3)
        polls = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Watch.__anext__"]  # type: ignore[union-attr]
        assert polls == []
        await lease.release()
    finally:
        await holder.close()
        await waiter.close()


async def test_election_campaign_observe_and_resign(nuwa: CoordReplicas, rpc: Client, base: str) -> None:
    a, b = nuwa_client(nuwa, rpc), nuwa_client(nuwa, rpc)
    name = base.strip("/")
    try:
        assert await a.election(name).leader() is None
        observed = a.election(name).observe()
        assert await asyncio.wait_for(anext(observed), 10) is None
        lead_a = await a.election(name).campaign(b"alpha").acquire(timeout_s=5)
        assert (await asyncio.wait_for(anext(observed), 10)).value == b"alpha"  # type: ignore[union-attr]
        candidate_b = asyncio.ensure_future(b.election(name).campaign(b"beta").acquire())
        await wait_for_condition(lambda: _count(a, f"/elections/{name}/", 2), 10, "b stands as a candidate")
        assert not candidate_b.done()
        leader = await b.election(name).leader()
        assert leader is not None and leader.value == b"alpha" and leader.token == lead_a.token
        await lead_a.resign()
        lead_b = await asyncio.wait_for(candidate_b, 10)
        assert lead_b.token > lead_a.token
        changed = await asyncio.wait_for(anext(observed), 10)
        assert changed is not None and changed.value == b"beta"
        await b.close()  # leadership is tied to the session
        assert await asyncio.wait_for(anext(observed), 10) is None
        await observed.aclose()
    finally:
        await a.close()
        await b.close()


async def test_naming_cache_asks_once_and_follows_changes(nuwa: CoordReplicas, rpc: Client, base: str) -> None:
    servers, clients = [], []
    root = base  # a services root of this test's own
    try:
        for _ in range(3):
            clients.append(nuwa_client(nuwa, rpc))
        cache_client = nuwa_client(nuwa, rpc)
        clients.append(cache_client)
        cache = NameCache(cache_client, root=root)
        one = await _register(clients[0], root, "svc", "s1", "tcp://127.0.0.1:1001")
        servers.append(one)
        assert await cache.resolve("svc") == ["tcp://127.0.0.1:1001"]
        changes: list[int] = []
        cache.on_change("svc", lambda: changes.append(1))
        for _ in range(20):
            assert await cache.resolve("svc") == ["tcp://127.0.0.1:1001"]
        assert cache.lookups == 1  # New: answered locally
        servers.append(await _register(clients[1], root, "svc", "s2", "tcp://127.0.0.1:1002"))
        await wait_for_condition(lambda: bool(changes), 10, "the registration marks the item Old")
        assert sorted(await cache.resolve("svc")) == ["tcp://127.0.0.1:1001", "tcp://127.0.0.1:1002"]
        assert cache.lookups == 2
        await clients[0].close()  # s1's session ends: its registration goes with it
        await wait_for_condition(lambda: len(changes) >= 2, 10, "the dead server's node going marks it Old")
        assert await cache.resolve("svc") == ["tcp://127.0.0.1:1002"]
        assert await cache.resolve("other") == []
        await cache.close()
    finally:
        for client in clients:
            await client.close()


async def test_a_change_seen_while_a_lookup_is_answered_makes_its_answer_old(
    nuwa: CoordReplicas, rpc: Client, base: str
) -> None:
    """The subscription can deliver a change before the reply of a lookup that was read before the change (they
    travel separately): the lookup's answer is then installed Old and asked again, never kept as New."""
    cache_client, server_client = nuwa_client(nuwa, rpc), nuwa_client(nuwa, rpc)
    cache = NameCache(cache_client, root=base)
    real_list = cache_client.list
    registered: list[object] = []

    async def list_then_register(path: str, **options: Any) -> Any:
        try:
            return await real_list(path, **options)  # NotFoundError: the directory does not exist yet
        finally:
            if path == f"{base}late/" and not registered:
                registered.append(await _register(server_client, base, "late", "s1", "tcp://127.0.0.1:1009"))
                await wait_for_condition(
                    lambda: cache._changed_during.get("late", -1) > 0, 10, "the subscription saw the registration"
                )

    try:
        assert await cache.resolve("first") == []  # starts the subscription
        cache_client.list = list_then_register  # type: ignore[method-assign]
        assert await cache.resolve("late") == []  # the answer read before the registration...
        assert not cache.items["late"].fresh  # ...is Old
        assert await cache.resolve("late") == ["tcp://127.0.0.1:1009"]
        await cache.close()
    finally:
        await cache_client.close()
        await server_client.close()


async def _register(client: CoordClient, root: str, name: str, server: str, address: str) -> object:
    from feitian.coord.client.recipes.naming import Registration

    registration = Registration(client, name, server, address, root=root)
    registration.start()
    await asyncio.wait_for(registration.registered.wait(), 10)
    return registration


async def test_nuwa_addresses_resolve_through_nuwa_in_kuafu(nuwa: CoordReplicas, rpc: Client, base: str) -> None:
    service = f"echo-{base.strip('/')}"
    registrar, resolver_client = nuwa_client(nuwa, rpc), nuwa_client(nuwa, rpc)

    def named(name: str) -> Server:
        server = Server(ServerConfig(name=name))

        async def who(ctx: CallContext, text: str) -> str:
            return name

        server.add_text_handler("who", who)
        return server

    resolver = NuwaResolver(resolver_client, cluster="local")
    try:
        async with serving(named("one")) as (_, one), serving(named("two")) as (_, two):
            reg_one = await register(registrar, service, "one", one)
            await asyncio.wait_for(reg_one.registered.wait(), 10)
            async with Client(ClientConfig(name="caller", connect_timeout_s=0.5), resolver=resolver) as caller:
                address = f"nuwa://local/{service}"
                assert {await caller.call_text(address, "who", "", timeout=5) for _ in range(4)} == {"one"}
                lookups = resolver.resolve_calls
                assert lookups == 1
                reg_two = await register(registrar, service, "two", two)
                await asyncio.wait_for(reg_two.registered.wait(), 10)
                await wait_for_condition(
                    lambda: _served_by(caller, address, {"one", "two"}), 10, "calls reach the new server"
                )
                await reg_one.close()
                await wait_for_condition(lambda: _served_by(caller, address, {"two"}), 10, "only two serves")
                with pytest.raises(UnavailableError, match="no live server"):
                    await caller.call_text("nuwa://elsewhere/x", "who", "", timeout=1)
    finally:
        await resolver.close()
        await registrar.close()
        await resolver_client.close()


async def _served_by(caller: Client, address: str, expected: set[str]) -> bool:
    seen = {await caller.call_text(address, "who", "", timeout=5) for _ in range(6)}
    return seen == expected


async def test_barrier_and_queue(nuwa: CoordReplicas, rpc: Client, base: str) -> None:
    clients = [nuwa_client(nuwa, rpc) for _ in range(3)]
    try:
        entered = [asyncio.ensure_future(Barrier(c, f"{base}b", 3).wait(f"m{i}")) for i, c in enumerate(clients[:2])]
        await wait_for_condition(lambda: _count(clients[0], f"{base}b/", 2), 10, "two members entered")
        assert not any(e.done() for e in entered)
        entered.append(asyncio.ensure_future(Barrier(clients[2], f"{base}b", 3).wait("m2")))
        assert await asyncio.wait_for(asyncio.gather(*entered), 10) == [3, 3, 3]

        queue = [Queue(c, f"{base}q") for c in clients]
        consumers = [asyncio.ensure_future(q.get()) for q in queue[:2]]
        for i in range(4):
            await queue[2].put(b"item-%d" % i)
        got = await asyncio.wait_for(asyncio.gather(*consumers, queue[2].get(), queue[0].get()), 10)
        assert sorted(got) == [b"item-0", b"item-1", b"item-2", b"item-3"]  # each taken exactly once
        with pytest.raises(DeadlineExceededError):
            await queue[0].get(timeout_s=0.3)
    finally:
        for client in clients:
            await client.close()


async def test_a_barrier_stays_open_when_a_member_that_passed_leaves(
    nuwa: CoordReplicas, rpc: Client, base: str
) -> None:
    """Member a passes (two of two entered) and leaves at once, its session and node with it, before b has
    looked: b still passes — the barrier was opened for good, not counted again."""
    a, b = nuwa_client(nuwa, rpc), nuwa_client(nuwa, rpc)
    a_left = asyncio.Event()
    real_list = b.list

    async def list_after_a_left(path: str, **options: Any) -> Any:
        await a_left.wait()
        return await real_list(path, **options)

    b.list = list_after_a_left  # type: ignore[method-assign]
    try:
        waiting = asyncio.ensure_future(Barrier(b, f"{base}b2", 2).wait("b"))
        assert await asyncio.wait_for(Barrier(a, f"{base}b2", 2).wait("a"), 10) == 2
        await a.close()
        a_left.set()
        assert await asyncio.wait_for(waiting, 10) == 1  # only b is left, and it passed
    finally:
        await a.close()
        await b.close()
