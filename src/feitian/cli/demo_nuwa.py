"""The Nuwa part of ``feitian demo``: election, a lock passing on with its fencing token, a subscription, and
``nuwa://`` addresses resolved through Nuwa."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import click

from feitian.cli.coord import cluster_coord
from feitian.coord import CoordClient, Event, NuwaResolver
from feitian.deploy import ClusterResolver, ClusterState, LocalCluster
from feitian.errors import NotFoundError
from feitian.rpc import ClientConfig, Resolver

DEMO_TTL_MS = 3000  # short sessions, so the lock passes on quickly when its holder's session ends


def say(text: str) -> None:
    click.echo(text)


def runs_nuwa(state: ClusterState) -> bool:
    return any(p.role == "coord" for p in state.processes)


@contextlib.asynccontextmanager
async def service_resolver(lc: LocalCluster, state: ClusterState) -> AsyncIterator[Resolver]:
    """Nuwa's resolver when the cluster runs coord replicas (echo nodes register there), else the state file's."""
    if not runs_nuwa(state):
        yield ClusterResolver(lc)
        return
    async with cluster_coord(lc, name="demo-resolver") as nuwa:
        resolver = NuwaResolver(nuwa, cluster=state.name)
        try:
            yield resolver
        finally:
            await resolver.close()


async def nuwa_tour(lc: LocalCluster, state: ClusterState) -> None:
    if not runs_nuwa(state):
        return
    replicas = [p.name for p in state.processes if p.role == "coord"]
    say(f"\n== Nuwa: the coordination service on {len(replicas)} replicas ({', '.join(replicas)}) ==")
    async with (
        cluster_coord(lc, name="demo-a", session_ttl_ms=DEMO_TTL_MS) as a,
        cluster_coord(lc, name="demo-b", session_ttl_ms=DEMO_TTL_MS) as b,
    ):
        await _election(a, b)
        await _lock(a, b)
        await _subscription(a, b)
    await _naming(lc, state)


async def _election(a: CoordClient, b: CoordClient) -> None:
    lead_a = await a.election("demo-master").campaign(b"server-a").acquire(timeout_s=10)
    say(f"  election demo-master: server-a campaigns and leads (token {lead_a.token})")
    candidate_b = asyncio.ensure_future(b.election("demo-master").campaign(b"server-b").acquire(timeout_s=20))
    await asyncio.sleep(0.2)
    leader = await b.election("demo-master").leader()
    say(f"  server-b campaigns too; the leader it observes: {leader.value.decode() if leader else None}")
    await lead_a.resign()
    lead_b = await candidate_b
    say(f"  server-a resigns -> server-b leads (token {lead_b.token})")
    await lead_b.resign()


async def _lock(a: CoordClient, b: CoordClient) -> None:
    holder = await a.lock("/locks/demo").acquire(timeout_s=10)
    say(f"  lock /locks/demo: client a holds it with fencing token {holder.token}")
    waiting = asyncio.ensure_future(b.lock("/locks/demo").acquire(timeout_s=30))
    await asyncio.sleep(0.2)
    say(f"  client b waits for it (acquired yet: {waiting.done()})")
    ended = time.perf_counter()
    await holder.session.close()  # as if the holder died: its session ends, its lock node goes
    lease = await waiting
    say(
        f"  client a's session ends -> client b holds the lock {(time.perf_counter() - ended) * 1000:.0f} ms later "
        f"with token {lease.token} (> {holder.token}: a resource can refuse the old holder)"
    )
    await lease.release()


async def _subscription(a: CoordClient, b: CoordClient) -> None:
    await b.create("/demo/config/", parents=True)
    watch = b.watch("/demo/config/")
    start = await watch.start()
    say(f"  subscribed to the entries of /demo/config/ from revision {start}")
    await a.create("/demo/config/db", b"primary=10.0.0.1")
    await a.set("/demo/config/db", b"primary=10.0.0.2")
    await a.delete("/demo/config/db")
    for _ in range(3):
        item = await watch.next(10)
        if isinstance(item, Event):
            say(f"    event: revision {item.revision} {item.kind.value} {item.path}")
    watch.close()


async def _naming(lc: LocalCluster, state: ClusterState) -> None:
    echoes = sorted(p.name for p in state.processes if p.role == "echo")
    async with cluster_coord(lc, name="demo-naming") as nuwa:
        registered = await _registered(nuwa, echoes)
        for name, address in registered.items():
            say(f"  naming: /services/echo/{name} = {address} (ephemeral: it goes when {name} dies)")
        resolver = NuwaResolver(nuwa, cluster=state.name)
        try:
            config = ClientConfig(name="demo-nuwa-call", connect_timeout_s=0.5)
            async with await lc.client(config, state=state, resolver=resolver) as client:
                served = [
                    (await client.call_map("nuwa://local/echo", "echo.map", {}, timeout=5, idempotent=True))[
                        "served_by"
                    ]
                    for _ in range(4)
                ]
            say(
                f"  4 calls to nuwa://local/echo resolved through Nuwa, served by: {', '.join(served)} "
                f"(lookups sent to Nuwa: {resolver.resolve_calls})"
            )
        finally:
            await resolver.close()


async def _registered(nuwa: CoordClient, expected: list[str], timeout_s: float = 20.0) -> dict[str, str]:
    """The echo servers registered under /services/echo/, once all of ``expected`` are (they register at start)."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            listing = await nuwa.list("/services/echo/", values=True)
            found = {n: v.decode() for n, v in zip(listing.names, listing.values, strict=True)}
        except NotFoundError:
            found = {}
        if sorted(found) == expected:
            break
        await asyncio.sleep(0.1)
    return found
