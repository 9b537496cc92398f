"""Subscriptions through real replicas (NUWA-5): node, children and subtree selectors, events with their
revisions, resuming from a revision with every missed event, and a Resync (signal + current state) when the
missed history was compacted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nuwa_world import HISTORY_MAX_EVENTS

from feitian.coord import CoordClient, Event, EventKind, Resync, Selector
from feitian.rpc import Client
from feitian.testing.coord import CoordReplicas


@pytest.fixture
async def client(nuwa: CoordReplicas) -> AsyncIterator[CoordClient]:
    rpc: Client = await nuwa.rpc()
    nc = nuwa.client(rpc, session_ttl_ms=8000, watch_wait_ms=2000)
    try:
        yield nc
    finally:
        await nc.close()
        await rpc.close()


async def events(watch: object, n: int) -> list[tuple[int, str, str]]:
    out = []
    for _ in range(n):
        item = await watch.next(10)  # type: ignore[attr-defined]
        assert isinstance(item, Event), item
        out.append((item.revision, item.kind.value, item.path))
    return out


async def test_selectors_deliver_their_events_with_revisions(client: CoordClient, base: str) -> None:
    await client.create(f"{base}d/", parents=True)
    node = client.watch(f"{base}d/f")
    children = client.watch(f"{base}d/")
    subtree = client.watch(base, recursive=True)
    for w in (node, children, subtree):
        await w.start()
    f = await client.create(f"{base}d/f", b"1")
    deep = await client.create(f"{base}d/sub/g", b"2", parents=True)
    s = await client.set(f"{base}d/f", b"3")
    d = await client.delete(f"{base}d/f")
    assert await events(node, 3) == [
        (f.revision, "created", f"{base}d/f"),
        (s.revision, "changed", f"{base}d/f"),
        (d.revision, "deleted", f"{base}d/f"),
    ]
    assert await events(children, 4) == [
        (f.revision, "created", f"{base}d/f"),
        (deep.revision, "created", f"{base}d/sub/"),  # the entry, not what is below it
        (s.revision, "changed", f"{base}d/f"),
        (d.revision, "deleted", f"{base}d/f"),
    ]
    assert [e[2] for e in await events(subtree, 5)] == [
        f"{base}d/f",
        f"{base}d/sub/",
        f"{base}d/sub/g",  # two events, one revision
        f"{base}d/f",
        f"{base}d/f",
    ]
    assert subtree.revision == d.revision


async def test_a_new_client_resumes_from_a_revision_without_missing_anything(
    nuwa: CoordReplicas, client: CoordClient, base: str
) -> None:
    await client.create(f"{base}log/", parents=True)
    watch = client.watch(f"{base}log/")
    start = await watch.start()
    for i in range(10):
        await client.create(f"{base}log/e{i}", b"")
    seen = await events(watch, 4)
    resume_from = watch.revision
    watch.close()
    # The subscriber moves to another client (another replica, as after a failover) and asks from its revision.
    rpc = await nuwa.rpc("other")
    try:
        other = CoordClient(rpc, list(reversed(nuwa.address_list)))
        rest = other.watch(f"{base}log/", since=resume_from)
        seen += await events(rest, 6)
        await other.close()
    finally:
        await rpc.close()
    assert [p for _, _, p in seen] == [f"{base}log/e{i}" for i in range(10)]
    assert [r for r, _, _ in seen] == list(range(start + 1, start + 11))


async def test_a_compacted_history_gives_a_resync_with_the_current_state(client: CoordClient, base: str) -> None:
    await client.create(f"{base}busy", b"0", parents=True)
    watch = client.watch(f"{base}busy")
    old = await watch.start()
    for i in range(HISTORY_MAX_EVENTS + 50):  # more events than the history keeps
        await client.set(f"{base}busy", b"%d" % i)
    item = await watch.next(10)
    assert isinstance(item, Resync)
    assert item.compacted.since == old and item.compacted.compacted_through > old
    assert [n.path for n in item.nodes] == [f"{base}busy"] and item.nodes[0].version == HISTORY_MAX_EVENTS + 51
    last = await client.set(f"{base}busy", b"after")
    after = await watch.next(10)
    assert isinstance(after, Event) and after.revision == last.revision and after.kind is EventKind.CHANGED


async def test_select_lists_what_a_selector_covers(client: CoordClient, base: str) -> None:
    await client.create(f"{base}x/y/z", parents=True)
    found = await client.select(Selector.subtree(base))
    assert [n.path for n in found.nodes] == [base, f"{base}x/", f"{base}x/y/", f"{base}x/y/z"]
