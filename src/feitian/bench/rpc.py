"""``feitian bench rpc``: Kuafu against hand-rolled RPC peers, in one run.

Every row is measured the same way (:func:`measure_calls`), with one client process (this one) and one server
process, all on 127.0.0.1:

* lat100: 100-byte request echoed back, one call in flight -> p50 / p99 latency in microseconds
* thr100: 100-byte request echoed back, 64 calls in flight on one connection -> calls per second
* up1m:   1 MiB request payload -> 8-byte reply, 8 calls in flight -> request MB/s

feitian's rows call ``echo.bytes`` of an echo node (the same work as ``kuafu.Echo``, with a declared rule):
``feitian`` and ``feitian_proxy`` in an insecure cluster, ``feitian_secure`` in a secured one (mutual TLS, and a
capability check before every call), all in the same run. The peers' rows (``asyncio_msgpack``,
``uvloop_msgpack``) come from ``feitian.bench.peers.msgpack_echo``, shipped with feitian; a peer that cannot run
here (msgpack or uvloop missing) is reported as skipped, with what to install.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from feitian.deploy import EchoBytes, LocalCluster, default_spec
from feitian.rpc import Client, ClientConfig, Health
from feitian.runtime.eventloop import run

SMALL = b"x" * 100
LAT_MAX_CALLS = 20_000


ClientFactory = Callable[[], Awaitable[Client]]


def plain_client(proxy_path: str | None = None) -> ClientFactory:
    async def make() -> Client:
        return Client(ClientConfig(name="bench", proxy_path=proxy_path))

    return make


def cluster_client(lc: LocalCluster) -> ClientFactory:
    """The cluster's admin identity (mutual TLS, its capabilities) for a secured cluster."""

    async def make() -> Client:
        return await lc.client(ClientConfig(name="bench"))

    return make


Call = Callable[[bytes, bytes | None], Awaitable[Any]]  # (message data, payload) -> the reply


async def measure_calls(call: Call, seconds: float) -> dict[str, Any]:
    """lat100, thr100 and up1m of ``call``, each for ``seconds`` (lat100 also at most ``LAT_MAX_CALLS``)."""
    big = os.urandom(1 << 20)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < min(0.5, seconds / 4):  # warm up
        await call(SMALL, None)
    lats: list[float] = []
    t0 = time.perf_counter()
    while len(lats) < LAT_MAX_CALLS and time.perf_counter() - t0 < seconds:
        a = time.perf_counter()
        await call(SMALL, None)
        lats.append(time.perf_counter() - a)
    lats.sort()

    async def windowed(window: int, payload: bytes | None, data: bytes) -> tuple[int, float]:
        count = 0
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() - start < seconds:
                await call(data, payload)
                count += 1

        await asyncio.gather(*(worker() for _ in range(window)))
        return count, time.perf_counter() - start

    n_thr, dt_thr = await windowed(64, None, SMALL)
    n_up, dt_up = await windowed(8, big, b"")
    return {
        "lat100_p50_us": round(lats[len(lats) // 2] * 1e6, 1),
        "lat100_p99_us": round(lats[int(len(lats) * 0.99)] * 1e6, 1),
        "thr100_calls_per_s": round(n_thr / dt_thr),
        "up1m_MBps": round(n_up * len(big) / dt_up / 1e6, 1),
    }


async def measure(address: str, seconds: float, make_client: ClientFactory) -> dict[str, Any]:
    """feitian's figures: ``echo.bytes`` of the echo node at ``address``."""
    async with await make_client() as client:
        await client.call(address, Health(), timeout=10)

        async def call(data: bytes, payload: bytes | None) -> Any:
            return await client.call(address, EchoBytes(data), payload=payload)

        return await measure_calls(call, seconds)


def run_peers(seconds: float) -> dict[str, Any]:
    """Each peer's figures, or ``{"skipped": why}`` for a peer that cannot run here (said on stderr too)."""
    from feitian.bench.peers import msgpack_echo

    peers: dict[str, Any] = {}
    for name, loop in msgpack_echo.PEERS.items():
        missing = msgpack_echo.missing_requirement(loop)
        if missing:
            peers[name] = {"skipped": missing}
            sys.stderr.write(f"note: peer {name} skipped: {missing}\n")
            continue
        try:
            peers[name] = msgpack_echo.run_peer(loop, seconds, measure_calls)
        except (RuntimeError, OSError, ConnectionError) as exc:
            peers[name] = {"error": str(exc)}
    return peers


def secure_ratios(insecure: dict[str, Any], secure: dict[str, Any]) -> dict[str, float]:
    """Secured over unsecured figures (the ZK target: thr100 >= 0.8, up1m >= 0.6)."""
    return {
        "secure_thr100_vs_insecure": round(secure["thr100_calls_per_s"] / insecure["thr100_calls_per_s"], 2),
        "secure_up1m_vs_insecure": round(secure["up1m_MBps"] / insecure["up1m_MBps"], 2),
        "secure_lat100_p50_vs_insecure": round(secure["lat100_p50_us"] / insecure["lat100_p50_us"], 2),
    }


def _ratios(result: dict[str, Any]) -> dict[str, Any]:
    ft, px = result["feitian"], result["feitian_proxy"]
    peers = result.get("peers", {})
    out: dict[str, Any] = {"proxy_thr100_vs_direct": round(px["thr100_calls_per_s"] / ft["thr100_calls_per_s"], 2)}
    out.update(secure_ratios(ft, result["feitian_secure"]))
    am, um = peers.get("asyncio_msgpack", {}), peers.get("uvloop_msgpack", {})
    if "thr100_calls_per_s" in am:
        out["thr100_vs_asyncio_msgpack"] = round(ft["thr100_calls_per_s"] / am["thr100_calls_per_s"], 2)
        out["lat100_p50_vs_asyncio_msgpack"] = round(ft["lat100_p50_us"] / am["lat100_p50_us"], 2)
    if "thr100_calls_per_s" in um:
        out["thr100_vs_uvloop_msgpack"] = round(ft["thr100_calls_per_s"] / um["thr100_calls_per_s"], 2)
        out["up1m_vs_uvloop_msgpack"] = round(ft["up1m_MBps"] / um["up1m_MBps"], 2)
    return out


def run_rpc_bench(seconds: float = 3.0, with_peers: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="feitian-bench-rpc-") as tmp:
        lc = LocalCluster(os.path.join(tmp, "insecure"))
        secure_lc = LocalCluster(os.path.join(tmp, "secure"))
        try:
            state = lc.up(default_spec(echo=1, proxy=True, kv=0, dfs_masters=0, chunkservers=0, coord=0), secure=False)
            secure_state = secure_lc.up(default_spec(echo=1, proxy=False, kv=0, dfs_masters=0, chunkservers=0, coord=0))
            procs = {p.role: p for p in state.processes}
            address = procs["echo"].addresses[0]
            proxy_path = procs["rpc-proxy"].extra["socket"]
            secure_address = next(p.addresses[0] for p in secure_state.processes if p.role == "echo")
            result: dict[str, Any] = {
                "feitian": run(measure(address, seconds, plain_client())),
                "feitian_secure": run(measure(secure_address, seconds, cluster_client(secure_lc))),
                "feitian_proxy": run(measure(address, seconds, plain_client(proxy_path))),
            }
        finally:
            for cluster in (lc, secure_lc):
                if os.path.exists(cluster.state_path):
                    cluster.down()
    if with_peers:
        result["peers"] = run_peers(seconds)
    result["ratios"] = _ratios(result)
    result["seconds_per_measurement"] = seconds
    return result


def print_table(result: dict[str, Any]) -> None:
    rows = [(name, result[name]) for name in ("feitian", "feitian_secure", "feitian_proxy")]
    rows += [(name, fig) for name, fig in result.get("peers", {}).items() if isinstance(fig, dict)]
    print(f"{'':18}{'lat100 p50 us':>14}{'p99 us':>10}{'thr100 calls/s':>16}{'up1m MB/s':>11}")
    for name, fig in rows:
        if "error" in fig or "skipped" in fig:
            print(f"{name:18}" + (f"error: {fig['error']}" if "error" in fig else f"skipped: {fig['skipped']}"))
            continue
        print(
            f"{name:18}{fig['lat100_p50_us']:>14}{fig['lat100_p99_us']:>10}{fig['thr100_calls_per_s']:>16}"
            f"{fig['up1m_MBps']:>11}"
        )
    for key, value in result["ratios"].items():
        print(f"  {key}: {value}")
