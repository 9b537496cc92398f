"""``feitian bench coord``: Nuwa against etcd, the same workload in the same invocation.

The workload (the same for both systems): 100-byte values and 100-byte keys; one client
process (this one) drives the requests in flight. Both systems run at once, side by side; each measurement is
taken ``rounds`` times per system, alternating which goes first, and the median is reported:

* sequential write latency p50/p99 and writes/s with 1 in flight; writes/s with 16 and 64 in flight;
* linearizable and local (stale / serializable) reads/s with 64 in flight;
* watch latency p50/p99: write sent -> event received by another client (timed as the event arrives, which
  may be before the writer's own reply);
* lock acquire+release cycles/s, one client;
* lock failover: a holder in its own process takes the lock (session / lease TTL 2 s), a waiter here queues
  behind it, the holder gets SIGKILL; seconds from the kill until the waiter holds the lock.

Nuwa runs as ``n`` coord replica processes of an insecure local cluster (``LocalCluster(secure=False)`` through
``feitian.testing.coord.CoordReplicas``), driven by ``CoordClient`` over Kuafu. etcd runs as ``n`` members on
127.0.0.1 (``bench/coord_etcd.py``), driven through its JSON gateway with aiohttp. Both clients send everything
to the leader (the cheapest path for either), and every process started is stopped by its pid. The machine is
shared and noisy: compare the ratios from one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from feitian.coord import CoordClient
from feitian.errors import FeitianError, UnavailableError
from feitian.rpc import Client, ClientConfig
from feitian.runtime.eventloop import run

VALUE = b"v" * 100
KEY_BYTES = 100
KEYS = 1000  # distinct keys written in turn
LOCK_TTL_MS = 2000
WRITES_PER_CLIENT = 32  # CoordClient keeps at most dedupe_window writes in flight: more clients for more


class Driver(Protocol):
    name: str

    async def prepare(self, keys: Sequence[str], value: bytes) -> None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def get(self, key: str, *, linearizable: bool) -> None: ...

    async def subscribe(self, key: str, on_event: Callable[[], None]) -> Callable[[], Awaitable[None]]: ...

    async def lock_cycle(self, name: str) -> None: ...

    async def acquire(self, name: str) -> None: ...

    def holder_argv(self, name: str, ttl_ms: int) -> list[str]: ...

    async def close(self) -> None: ...


def key_names(prefix: str, n: int = KEYS) -> list[str]:
    """``n`` keys of exactly KEY_BYTES bytes."""
    return [_key(prefix, i) for i in range(n)]


def _key(prefix: str, i: int) -> str:
    name = f"{prefix}{i:06d}"
    return name + "k" * (KEY_BYTES - len(name))


def _ms(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))] * 1000, 3)


# -- measurements -------------------------------------------------------------------------------------------------


async def _in_flight(window: int, seconds: float, op: Callable[[int], Awaitable[None]]) -> tuple[float, list[float]]:
    """``window`` tasks calling ``op(n)`` back to back for ``seconds``: (operations/s, latencies)."""
    latencies: list[float] = []
    start = time.perf_counter()
    stop_at = start + seconds
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while (now := time.perf_counter()) < stop_at:
            await op(next(counter))
            latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(worker() for _ in range(window)))
    return len(latencies) / (time.perf_counter() - start), latencies


async def _watch_latency(driver: Driver, key: str, samples: int) -> tuple[float, float]:
    """Seconds from sending a write until the watcher's client hands over its event, timed when the event
    arrives (it may arrive before the writer's own reply: both follow the commit)."""
    arrived = asyncio.Event()
    arrived_at = 0.0

    def on_event() -> None:
        nonlocal arrived_at
        arrived_at = time.perf_counter()
        arrived.set()

    stop = await driver.subscribe(key, on_event)
    try:
        latencies = []
        for i in range(samples + 5):  # the first few warm up
            arrived.clear()
            sent = time.perf_counter()
            await driver.put(key, VALUE)
            await asyncio.wait_for(arrived.wait(), 10)
            if i >= 5:
                latencies.append(arrived_at - sent)
            await asyncio.sleep(0.002)  # let the watcher settle into its next wait
    finally:
        await stop()
    return _ms(latencies, 0.5), _ms(latencies, 0.99)


async def _lock_failover(driver: Driver, name: str) -> float:
    """Seconds from SIGKILL of the holder's process until a waiter here holds the lock."""
    argv = [sys.executable, "-m", "feitian.bench.coord", "hold", *driver.holder_argv(name, LOCK_TTL_MS)]
    holder = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30)
        if line.strip() != b"held":
            raise UnavailableError(f"lock holder of {driver.name} did not take the lock: {line!r}")
        waiter = asyncio.ensure_future(driver.acquire(name))
        await asyncio.sleep(0.5)  # the waiter queues behind the holder
        if waiter.done():
            raise UnavailableError(f"{driver.name}: the waiter got the lock while the holder held it")
        killed = time.perf_counter()
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(waiter, 30)
        return round(time.perf_counter() - killed, 3)
    finally:
        if holder.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                holder.send_signal(signal.SIGKILL)
        await holder.wait()


async def _writes(driver: Driver, keys: list[str], seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for window in (1, 16, 64):
        rate, latencies = await _in_flight(window, seconds, lambda n: driver.put(keys[n % KEYS], VALUE))
        out[f"writes_per_s_{window}"] = round(rate)
        if window == 1:
            out["write_p50_ms"], out["write_p99_ms"] = _ms(latencies, 0.5), _ms(latencies, 0.99)
    return out


async def _reads(driver: Driver, keys: list[str], seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for linearizable, label in ((True, "linearizable"), (False, "local")):

        def get(n: int, linearizable: bool = linearizable) -> Awaitable[None]:
            return driver.get(keys[n % KEYS], linearizable=linearizable)

        rate, _ = await _in_flight(64, seconds, get)
        out[f"{label}_reads_per_s_64"] = round(rate)
    return out


async def _watch(driver: Driver, keys: list[str], seconds: float) -> dict[str, float]:
    p50, p99 = await _watch_latency(driver, keys[0], max(50, int(100 * seconds)))
    return {"watch_p50_ms": p50, "watch_p99_ms": p99}


async def _locks(driver: Driver, keys: list[str], seconds: float) -> dict[str, float]:
    lock = f"/bench/{driver.name}-locks/cycle"
    cycles, _ = await _in_flight(1, seconds, lambda _n: driver.lock_cycle(lock))
    return {"lock_cycles_per_s": round(cycles)}


async def _failover(driver: Driver, keys: list[str], seconds: float) -> dict[str, float]:
    return {"lock_failover_s": await _lock_failover(driver, f"/bench/{driver.name}-locks/failover")}


MEASUREMENTS = [
    ("writes at 1, 16, 64 in flight", _writes),
    ("linearizable and local reads, 64 in flight", _reads),
    ("watch latency", _watch),
    ("lock cycles", _locks),
    (f"lock failover after SIGKILL of the holder (TTL {LOCK_TTL_MS / 1000:g} s)", _failover),
]


async def measure(
    drivers: Sequence[Driver], seconds: float, rounds: int, progress: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Every measurement for every system, side by side: for each one, ``rounds`` rounds alternating which system
    goes first; the median of the rounds is reported (the machine is shared and noisy)."""
    keys = {d.name: key_names(f"/bench/{d.name}/") for d in drivers}
    for driver in drivers:
        await driver.prepare(keys[driver.name], VALUE)
    samples: dict[str, dict[str, list[float]]] = {d.name: {} for d in drivers}
    for label, measurement in MEASUREMENTS:
        for r in range(rounds):
            for driver in drivers if r % 2 == 0 else list(reversed(drivers)):
                progress(f"{driver.name}: {label} (round {r + 1}/{rounds})")
                for key, value in (await measurement(driver, keys[driver.name], seconds)).items():
                    samples[driver.name].setdefault(key, []).append(value)
    out: dict[str, dict[str, Any]] = {}
    for name, figures in samples.items():
        out[name] = {key: statistics.median(values) for key, values in figures.items()}
        out[name]["lock_ttl_s"] = LOCK_TTL_MS / 1000
    return out


# -- Nuwa ---------------------------------------------------------------------------------------------------------


class NuwaDriver:
    """The workload through ``CoordClient``; every request goes to the leader."""

    name = "feitian"

    def __init__(self, addresses: Sequence[str], leader: str) -> None:
        self.addresses = list(addresses)
        self.leader = leader
        self.rpc = Client(ClientConfig(name="bench-coord", connect_timeout_s=2))
        self.clients = [self._client(self.rpc) for _ in range(64 // WRITES_PER_CLIENT)]
        self._lock_client = self._client(self.rpc, session_ttl_ms=10_000)
        self._others: list[tuple[Client, CoordClient]] = []
        self._next = 0

    def _client(self, rpc: Client, **options: Any) -> CoordClient:
        client = CoordClient(rpc, self.addresses, timeout_s=30, **options)
        client.router.leader = client.router.current = self.leader
        return client

    def _pick(self) -> CoordClient:
        self._next += 1
        return self.clients[self._next % len(self.clients)]

    async def close(self) -> None:
        for client in [*self.clients, self._lock_client]:
            await client.close()
        for rpc, client in self._others:
            await client.close()
            await rpc.close()
        await self.rpc.close()

    async def prepare(self, keys: Sequence[str], value: bytes) -> None:
        client = self.clients[0]
        await client.create(keys[0][: keys[0].rindex("/") + 1], parents=True)
        await asyncio.gather(*(client.create(k, value) for k in keys))

    async def put(self, key: str, value: bytes) -> None:
        await self._pick().set(key, value)

    async def get(self, key: str, *, linearizable: bool) -> None:
        await self._pick().get(key, stale=not linearizable)

    async def subscribe(self, key: str, on_event: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Watch ``key`` from another client (its own Kuafu connections)."""
        rpc = Client(ClientConfig(name="bench-coord-watcher", connect_timeout_s=2))
        client = self._client(rpc)
        self._others.append((rpc, client))
        watch = client.watch(key)
        await watch.start()

        async def read() -> None:
            async for _event in watch:
                on_event()

        task = asyncio.get_running_loop().create_task(read())

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        return stop

    async def lock_cycle(self, name: str) -> None:
        async with self._lock_client.lock(name):
            pass

    async def acquire(self, name: str) -> None:
        lease = await self._lock_client.lock(name).acquire()
        await lease.release()

    def holder_argv(self, name: str, ttl_ms: int) -> list[str]:
        return ["nuwa", name, str(ttl_ms), *self.addresses]


async def nuwa_hold_lock(addresses: Sequence[str], name: str, ttl_ms: int, ready: Callable[[], None]) -> None:
    rpc = Client(ClientConfig(name="bench-coord-holder", connect_timeout_s=2))
    client = CoordClient(rpc, addresses, session_ttl_ms=ttl_ms)
    await client.lock(name).acquire()
    ready()
    await asyncio.Event().wait()  # hold until killed


# -- the run ------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _nuwa(directory: str, replicas: int, say: Callable[[str], None]) -> AsyncIterator[NuwaDriver]:
    from feitian.testing.coord import CoordReplicas

    cluster = CoordReplicas(os.path.join(directory, "nuwa"), replicas)
    say(f"feitian: starting {replicas} coord replica(s)")
    try:
        await asyncio.to_thread(cluster.start_all)
        async with Client(ClientConfig(name="bench-coord-setup", connect_timeout_s=2)) as rpc:
            deadline = time.monotonic() + 30
            while (leader := await cluster.leader(rpc)) is None:
                if time.monotonic() > deadline:
                    raise UnavailableError("feitian: no coord leader within 30 s")
                await asyncio.sleep(0.05)
        driver = NuwaDriver(cluster.address_list, cluster.addresses[leader])
        try:
            yield driver
        finally:
            await driver.close()
    finally:
        stuck = await asyncio.to_thread(cluster.stop)
        if stuck:
            say(f"feitian: processes that would not stop: {[r.pid for r in stuck]}")


@contextlib.asynccontextmanager
async def _etcd(directory: str, replicas: int, say: Callable[[str], None]) -> AsyncIterator[Driver]:
    from feitian.bench.coord_etcd import EtcdCluster, EtcdDriver

    cluster = EtcdCluster(os.path.join(directory, "etcd"), replicas)
    os.makedirs(cluster.dir, exist_ok=True)
    say(f"etcd: starting {replicas} member(s)")
    try:
        cluster.start()
        driver = EtcdDriver(await cluster.wait_ready())
        try:
            yield driver
        finally:
            await driver.close()
    finally:
        stuck = await asyncio.to_thread(cluster.stop)
        if stuck:
            say(f"etcd: processes that would not stop: {[r.pid for r in stuck]}")


def _targets(ours: dict[str, Any], etcd: dict[str, Any] | None, replicas: int) -> dict[str, Any]:
    """The targets of issue 6 (3 replicas): ratios against etcd from the same run."""
    out: dict[str, Any] = {}

    def add(name: str, value: float | None, target: float, met: bool | None) -> None:
        out[name] = {"value": value, "target": target, "met": met}

    failover = ours["lock_failover_s"]
    add("lock_failover_s <= ttl + 0.5", failover, ours["lock_ttl_s"] + 0.5, failover <= ours["lock_ttl_s"] + 0.5)
    writes = ours["writes_per_s_64"]
    add("writes_per_s_64 >= 3000", writes, 3000, writes >= 3000 if replicas == 3 else None)
    if etcd is None:
        return out
    ratio = round(writes / etcd["writes_per_s_64"], 2)
    add("writes_per_s_64 / etcd >= 2", ratio, 2.0, ratio >= 2)
    ratio = round(ours["linearizable_reads_per_s_64"] / etcd["linearizable_reads_per_s_64"], 2)
    add("linearizable_reads_per_s_64 / etcd >= 2", ratio, 2.0, ratio >= 2)
    add(
        "watch_p50_ms <= etcd", ours["watch_p50_ms"], etcd["watch_p50_ms"], ours["watch_p50_ms"] <= etcd["watch_p50_ms"]
    )
    return out


def run_coord_bench(
    seconds: float = 2.0,
    replicas: int = 3,
    directory: str | None = None,
    with_etcd: bool = True,
    rounds: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)

    async def main(tmp: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "replicas": replicas,
            "value_bytes": len(VALUE),
            "key_bytes": KEY_BYTES,
            "seconds_per_measurement": seconds,
            "rounds": rounds,
        }
        async with contextlib.AsyncExitStack() as stack:
            drivers: list[Driver] = [await stack.enter_async_context(_nuwa(tmp, replicas, say))]
            if with_etcd:
                try:
                    drivers.append(await stack.enter_async_context(_etcd(tmp, replicas, say)))
                except FeitianError as exc:
                    result["etcd_note"] = f"etcd not measured: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
                    say(result["etcd_note"])
            figures = await measure(drivers, seconds, rounds, say)
        result["feitian"] = figures["feitian"]
        etcd = figures.get("etcd")
        if etcd is not None:
            result["etcd"] = etcd
            result["ratios"] = {
                k: round(result["feitian"][k] / v, 2)
                for k, v in etcd.items()
                if isinstance(v, int | float) and v and k != "lock_ttl_s"
            }
        result["targets"] = _targets(result["feitian"], etcd, replicas)
        return result

    with tempfile.TemporaryDirectory(prefix="feitian-bench-coord-", dir=directory) as tmp:
        return run(main(tmp))


ROWS = [
    ("sequential write p50 ms", "write_p50_ms"),
    ("sequential write p99 ms", "write_p99_ms"),
    ("writes/s, 1 in flight", "writes_per_s_1"),
    ("writes/s, 16 in flight", "writes_per_s_16"),
    ("writes/s, 64 in flight", "writes_per_s_64"),
    ("linearizable reads/s, 64 in flight", "linearizable_reads_per_s_64"),
    ("local reads/s, 64 in flight", "local_reads_per_s_64"),
    ("watch latency p50 ms", "watch_p50_ms"),
    ("watch latency p99 ms", "watch_p99_ms"),
    ("lock acquire+release cycles/s", "lock_cycles_per_s"),
    ("lock failover after SIGKILL, s", "lock_failover_s"),
]


def print_table(result: dict[str, Any]) -> None:
    ours, etcd = result["feitian"], result.get("etcd")
    print(
        f"{result['replicas']} replica(s); {result['value_bytes']} B values, {result['key_bytes']} B keys; "
        f"{result['seconds_per_measurement']} s per measurement, median of {result['rounds']} alternating rounds; "
        f"lock TTL {ours['lock_ttl_s']:g} s"
    )
    print(f"{'metric':<38}{'feitian':>12}{'etcd':>12}{'ratio':>8}")
    for label, key in ROWS:
        theirs = etcd[key] if etcd else "-"
        ratio = result.get("ratios", {}).get(key, "-")
        print(f"{label:<38}{ours[key]:>12}{theirs:>12}{ratio:>8}")
    if "etcd_note" in result:
        print(result["etcd_note"])
    for name, target in result["targets"].items():
        met = {True: "met", False: "NOT met", None: "n/a"}[target["met"]]
        print(f"target {name}: {target['value']} (target {target['target']}) {met}")


# -- the lock holder process (python -m feitian.bench.coord hold BACKEND NAME TTL_MS ENDPOINT...) ----------------


def _hold(argv: list[str]) -> None:
    backend, name, ttl_ms, *endpoints = argv

    def ready() -> None:
        sys.stdout.write("held\n")
        sys.stdout.flush()

    if backend == "nuwa":
        run(nuwa_hold_lock(endpoints, name, int(ttl_ms), ready))
    else:
        from feitian.bench.coord_etcd import etcd_hold_lock

        run(etcd_hold_lock(endpoints[0], name, int(ttl_ms), ready))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "hold":
        _hold(sys.argv[2:])
