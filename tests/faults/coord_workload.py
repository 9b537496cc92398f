"""The register workload of the coordination fault tests: concurrent clients read, write and compare-and-set a few
keys while a nemesis injects faults; every operation is recorded for the linearizability checker.

A store is driven through a :class:`RegisterStore` adapter (the replicated KV store, Nuwa). An adapter raises
:class:`DidNotHappen` when an operation certainly had no effect (refused before it was proposed); every other
exception makes the operation indeterminate (``info``). Adapters never resend a write whose first attempt may
have reached the log, unless the store deduplicates retries (Nuwa does; the KV store does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import msgspec

from feitian.coord import CoordClient, CoordStatus
from feitian.coord.messages import StatusRequest
from feitian.errors import ConflictError, FeitianError, NotFoundError, NotLeaderError
from feitian.examples.kv import Get, Put, Stats
from feitian.replica.driver import ReplicaStats
from feitian.rpc import Client, ClientConfig, Request
from feitian.testing.coord import CoordReplicas
from feitian.testing.faultproxy import FaultProxy
from feitian.testing.linearizability import HistoryRecorder, OpKind
from feitian.testing.replicas import KvReplicas
from feitian.testing.waiting import wait_for_condition


class DidNotHappen(Exception):
    """The operation certainly had no effect."""


class RegisterStore(Protocol):
    async def read(self, key: str) -> tuple[Any, int]:
        """Linearizable read: (value or None, version; 0 when absent)."""
        ...

    async def write(self, key: str, value: str) -> None: ...

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        """Write if the key is at ``expected_version`` (0: absent); False when it was not."""
        ...


@dataclass
class WorkloadStats:
    ok: int = 0
    failed: int = 0
    indeterminate: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


class RegisterWorkload:
    """``clients`` concurrent clients, each with its own store adapter (its own view of the leader)."""

    def __init__(self, stores: list[RegisterStore], keys: list[str], *, seed: int = 1, think_s: float = 0.02) -> None:
        self.stores = stores
        self.think_s = think_s  # pacing between one client's operations (uniform in [0, 2 * think_s])
        self.keys = keys
        self.history = HistoryRecorder()
        self.stats = WorkloadStats()
        self.rng = random.Random(seed)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, until: Awaitable[Any]) -> None:
        """Run the clients until ``until`` (the nemesis) finishes, then stop them."""
        clients = [asyncio.ensure_future(self._client(p, store)) for p, store in enumerate(self.stores)]
        try:
            await until
        finally:
            self.stop()
            await asyncio.gather(*clients)

    async def _client(self, process: int, store: RegisterStore) -> None:
        rng = random.Random(self.rng.random())
        known: dict[str, tuple[Any, int]] = {}  # this client's last read of each key: (value, version)
        n = 0
        while not self._stop.is_set():
            key = rng.choice(self.keys)
            roll = rng.random()
            n += 1
            value = f"p{process}-{n}"  # every written value is unique
            if roll < 0.4 or (roll >= 0.7 and key not in known):
                await self._do(process, key, OpKind.READ, partial(store.read, key), known)
            elif roll < 0.7:
                await self._do(process, key, OpKind.WRITE, partial(store.write, key, value), known, value)
            else:
                # Compare-and-set from this client's last read: the version it saw names the value it saw.
                expected_value, version = known.pop(key)
                action = partial(store.cas, key, version, value)
                await self._do(process, key, OpKind.CAS, action, known, value, expected_value)
            await asyncio.sleep(rng.uniform(0, 2 * self.think_s))

    async def _do(
        self,
        process: int,
        key: str,
        kind: OpKind,
        action: Callable[[], Awaitable[Any]],
        known: dict[str, tuple[Any, int]],
        value: Any = None,
        expected: Any = None,
    ) -> None:
        op = self.history.invoke(process, key, kind, value=value, expected=expected)
        self.stats.by_kind[kind.value] = self.stats.by_kind.get(kind.value, 0) + 1
        try:
            result = await action()
        except DidNotHappen:
            self.history.fail(op)
            self.stats.failed += 1
            return
        except Exception as exc:  # indeterminate: it may have happened
            self.history.info(op)
            self.stats.indeterminate += 1
            name = type(exc).__name__
            self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
            return
        self.stats.ok += 1
        if kind is OpKind.READ:
            known[key] = result
            self.history.ok(op, result[0])
        elif kind is OpKind.CAS:
            self.history.ok(op, bool(result))
        else:
            self.history.ok(op)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> float:
    """Poll an async predicate; returns the seconds it took (fails the test after ``timeout_s``)."""
    started = time.monotonic()
    await wait_for_condition(predicate, timeout_s, what)
    return time.monotonic() - started


# -- the replicated KV store (feitian.examples.kv) -------------------------------------------------------------------


class KvRegisterStore:
    """One client's view of the KV store. Only NotLeaderError proves a write was not proposed, so only that is
    retried (at the hinted leader); anything else after sending leaves the write indeterminate. The store has no
    retry deduplication, so resending could apply a write twice or turn a successful CAS into a conflict."""

    def __init__(self, client: Client, addresses: list[str], *, attempt_timeout_s: float = 1.0) -> None:
        self.client = client
        self.addresses = addresses
        self.attempt_timeout_s = attempt_timeout_s
        self.leader: str | None = None
        self._next = 0

    def _target(self) -> str:
        if self.leader is not None:
            return self.leader
        self._next += 1
        return self.addresses[self._next % len(self.addresses)]

    async def _call(self, request: Request[Any]) -> Any:
        target = self._target()
        for _ in range(2 * len(self.addresses)):
            try:
                reply = await self.client.call(target, request, timeout=self.attempt_timeout_s)
            except NotLeaderError as exc:
                hint = exc.fields.get("leader_hint") or ""
                self.leader = None
                target = hint if hint and hint != target else self._target()
                continue
            except Exception:
                self.leader = None
                raise
            self.leader = target
            return reply
        raise DidNotHappen("no leader accepted it")

    async def read(self, key: str) -> tuple[Any, int]:
        try:
            reply = await self._call(Get(key))
        except Exception as exc:
            raise DidNotHappen(str(exc)) from exc  # a read that failed observed nothing
        return (reply.value.decode() if reply.found else None), reply.version

    async def write(self, key: str, value: str) -> None:
        await self._call(Put(key, value.encode()))

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        try:
            await self._call(Put(key, value.encode(), expected_version))
        except ConflictError:
            return False
        return True


async def kv_stats(client: Client, addresses: dict[int, str], timeout_s: float = 1.0) -> dict[int, ReplicaStats]:
    """Stats of the replicas that answer within ``timeout_s``."""

    async def one(address: str) -> ReplicaStats | None:
        try:
            stats: ReplicaStats = await client.call(address, Stats(), timeout=timeout_s)
        except FeitianError:
            return None
        return stats

    found = await asyncio.gather(*(one(a) for a in addresses.values()))
    return {i: s for i, s in zip(addresses, found, strict=True) if s is not None}


class ProxiedKv:
    """Three KV replicas whose consensus traffic crosses a :class:`FaultProxy`, and a client for the test."""

    def __init__(self, replicas: KvReplicas, proxy: FaultProxy, client: Client) -> None:
        self.replicas = replicas
        self.proxy = proxy
        self.client = client

    @property
    def addresses(self) -> dict[int, str]:
        return self.replicas.addresses

    def freeze(self, i: int) -> None:
        self.replicas.freeze(i)

    def resume(self, i: int) -> None:
        self.replicas.resume(i)

    def kill(self, i: int) -> None:
        self.replicas.kill(i)

    def restart(self, i: int) -> None:
        self.replicas.start(i)

    async def leader(self, among: set[int] | None = None, timeout_s: float = 20) -> int:
        found: list[int] = []

        async def elected() -> bool:
            leader = await kv_leader(self.client, self.addresses, among)
            if leader is not None:
                found.append(leader)
            return leader is not None

        await wait_for_condition(elected, timeout_s, f"a leader among {sorted(among or self.addresses)}")
        return found[-1]


@contextlib.asynccontextmanager
async def proxied_kv(directory: Path) -> AsyncIterator[ProxiedKv]:
    """Start three KV replicas behind a fault proxy; stop every process by pid afterwards."""
    replicas = KvReplicas(directory / "cluster", 3, tick_ms=50, election_ticks=10)
    proxy = FaultProxy(seed=7)
    try:
        replicas.route_peers(await proxy.route_replicas(replicas.addresses))
        await asyncio.to_thread(replicas.start_all)
        async with Client(ClientConfig(name="fault-test", connect_timeout_s=0.5)) as client:
            yield ProxiedKv(replicas, proxy, client)
    finally:
        stuck = await asyncio.to_thread(replicas.stop)
        await proxy.close()
        assert stuck == []


async def kv_leader(client: Client, addresses: dict[int, str], among: set[int] | None = None) -> int | None:
    """The replica that says it leads (the highest term wins), among ``among`` (default all)."""
    stats = await kv_stats(client, {i: a for i, a in addresses.items() if among is None or i in among})
    leaders = [(s.term, i) for i, s in stats.items() if s.role == "leader"]
    return max(leaders)[1] if leaders else None


# -- Nuwa (feitian.coord) -----------------------------------------------------------------------------------------

INITIAL = "init"  # every key of a Nuwa register run is created with this value first


class NuwaRegisterStore:
    """One client's view of Nuwa through :class:`CoordClient`, on the files ``root + key``. The client retries
    writes across failovers with a request number the state machine deduplicates, so a retry never applies twice
    (and a retried CAS returns its first answer); what remains indeterminate is a write whose client gave up."""

    def __init__(self, client: CoordClient, root: str) -> None:
        self.client = client
        self.root = root

    async def read(self, key: str) -> tuple[Any, int]:
        try:
            got = await self.client.get(self.root + key)
        except NotFoundError:
            return None, 0
        except Exception as exc:
            raise DidNotHappen(str(exc)) from exc
        return got.value.decode(), got.stat.version

    async def write(self, key: str, value: str) -> None:
        await self.client.set(self.root + key, value.encode())

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        try:
            await self.client.set(self.root + key, value.encode(), version=expected_version)
        except ConflictError:
            return False
        return True


class ProxiedNuwa:
    """Three Nuwa replicas whose consensus traffic crosses a :class:`FaultProxy`, and a Kuafu client."""

    def __init__(self, replicas: CoordReplicas, proxy: FaultProxy, rpc: Client) -> None:
        self.replicas = replicas
        self.proxy = proxy
        self.rpc = rpc

    @property
    def addresses(self) -> dict[int, str]:
        return self.replicas.addresses

    def freeze(self, i: int) -> None:
        self.replicas.freeze(i)

    def resume(self, i: int) -> None:
        self.replicas.resume(i)

    def kill(self, i: int) -> None:
        self.replicas.kill(i)

    def restart(self, i: int) -> None:
        self.replicas.start(i)

    def client(self, **options: Any) -> CoordClient:
        return CoordClient(self.rpc, list(self.addresses.values()), **options)

    async def statuses(self, among: set[int] | None = None, timeout_s: float = 1.0) -> dict[int, CoordStatus]:
        async def one(address: str) -> CoordStatus | None:
            try:
                status: CoordStatus = await self.rpc.call(address, StatusRequest(), timeout=timeout_s)
            except FeitianError:
                return None
            return status

        chosen = {i: a for i, a in self.addresses.items() if among is None or i in among}
        found = await asyncio.gather(*(one(a) for a in chosen.values()))
        return {i: s for i, s in zip(chosen, found, strict=True) if s is not None}

    async def leader(self, among: set[int] | None = None, timeout_s: float = 20) -> int:
        """Wait for a replica (among ``among``) that leads and has taken over the sessions."""
        found: list[int] = []

        async def elected() -> bool:
            statuses = await self.statuses(among)
            leaders = sorted((s.replica.term, i) for i, s in statuses.items() if s.tracking)
            if leaders:
                found.append(leaders[-1][1])
            return bool(leaders)

        await wait_for_condition(elected, timeout_s, f"a Nuwa leader among {sorted(among or self.addresses)}")
        return found[-1]


@contextlib.asynccontextmanager
async def proxied_nuwa(directory: Path, **role_options: Any) -> AsyncIterator[ProxiedNuwa]:
    """Start three Nuwa replicas behind a fault proxy; stop every process by pid afterwards."""
    replicas = CoordReplicas(directory / "cluster", 3, tick_ms=50, election_ticks=10, **role_options)
    proxy = FaultProxy(seed=5)
    try:
        routes = await proxy.route_replicas(replicas.addresses)
        replicas.specs = [
            msgspec.structs.replace(
                spec,
                role_options={**spec.role_options, "peer_addresses": {str(j): a for j, a in routes[i].items()}},
            )
            for i, spec in zip(replicas.ids, replicas.specs, strict=True)
        ]
        await asyncio.to_thread(replicas.start_all)
        rpc = await replicas.rpc("fault-test")
        try:
            yield ProxiedNuwa(replicas, proxy, rpc)
        finally:
            await rpc.close()
    finally:
        stuck = await asyncio.to_thread(replicas.stop)
        await proxy.close()
        assert stuck == []


# -- the nemesis --------------------------------------------------------------------------------------------------


class FaultyCluster(Protocol):
    proxy: FaultProxy

    @property
    def addresses(self) -> dict[int, str]: ...

    async def leader(self, among: set[int] | None = None, timeout_s: float = 20) -> int: ...

    def freeze(self, i: int) -> None: ...

    def resume(self, i: int) -> None: ...

    def kill(self, i: int) -> None: ...

    def restart(self, i: int) -> None: ...


async def progress(workload: RegisterWorkload, ops: int, what: str) -> None:
    """Wait until the clients have completed ``ops`` more operations successfully."""
    target = workload.stats.ok + ops
    await wait_for_condition(lambda: workload.stats.ok >= target, 30, f"{ops} operations {what}")


async def faults_in_turn(cluster: FaultyCluster, workload: RegisterWorkload, log: list[str], ops: int) -> None:
    """Isolate the leader, heal; SIGSTOP the next leader, resume; isolate a follower, heal; SIGKILL the leader,
    restart it — each phase lasting until the clients completed ``ops`` operations (the majority must keep
    serving throughout)."""

    def others(i: int) -> set[int]:
        return {j for j in cluster.addresses if j != i}

    await progress(workload, ops, "before any fault")
    old = await cluster.leader()
    cluster.proxy.isolate(old)
    log.append(f"isolate leader {old}")
    await cluster.leader(others(old))
    await progress(workload, ops, "with the old leader isolated")
    cluster.proxy.heal()
    log.append("heal")
    await progress(workload, ops // 2, "after healing")

    frozen = await cluster.leader()
    cluster.freeze(frozen)
    log.append(f"SIGSTOP leader {frozen}")
    try:
        await cluster.leader(others(frozen))
        await progress(workload, ops, "with the leader frozen")
    finally:
        cluster.resume(frozen)
        log.append(f"SIGCONT {frozen}")
    await progress(workload, ops // 2, "after resuming")

    leader = await cluster.leader()
    follower = min(others(leader))
    cluster.proxy.isolate(follower)
    log.append(f"isolate follower {follower}")
    await progress(workload, ops, "with a follower isolated")
    cluster.proxy.heal()
    log.append("heal")
    await progress(workload, ops // 2, "after healing")

    killed = await cluster.leader()
    await asyncio.to_thread(cluster.kill, killed)
    log.append(f"SIGKILL leader {killed}")
    await cluster.leader(others(killed))
    await progress(workload, ops, "with the leader killed")
    await asyncio.to_thread(cluster.restart, killed)
    log.append(f"restart {killed}")
    await progress(workload, ops, "at the end")
