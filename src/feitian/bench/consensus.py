"""``feitian bench consensus``: the replicated log on real processes with fsync on.

N replica processes of the key-value store (``feitian node run kv``) on 127.0.0.1, data on this disk. One client
process (this one) sends 100-byte writes to the leader with 1, 16 and 64 in flight and reports committed
proposals per second, commit latency p50/p99 (write sent -> acknowledged after commit and apply), and entries per
fsync on the leader and followers. In the same run it measures the disk's raw 4 KiB append + fdatasync rate — the
ceiling of a log without group commit.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from feitian.examples import KvClient, Stats
from feitian.replica import ReplicaStats
from feitian.rpc import Client, ClientConfig
from feitian.runtime.eventloop import run
from feitian.runtime.wal_bench import bench_raw
from feitian.testing.replicas import KvReplicas

VALUE = b"v" * 100


async def _stats(client: Client, rs: KvReplicas) -> dict[int, ReplicaStats]:
    out = {}
    for i, address in rs.addresses.items():
        out[i] = await client.call(address, Stats(), timeout=5)
    return out


async def _window(kv: KvClient, window: int, seconds: float) -> tuple[int, list[float]]:
    """``window`` writers for ``seconds``: (writes acknowledged, their latencies)."""
    lats: list[float] = []
    start = time.perf_counter()
    counts = [0] * window

    async def writer(w: int) -> None:
        n = 0
        while time.perf_counter() - start < seconds:
            a = time.perf_counter()
            await kv.put(f"bench-{window}-{w}-{n % 1000}", VALUE)
            lats.append(time.perf_counter() - a)
            n += 1
        counts[w] = n

    await asyncio.gather(*(writer(w) for w in range(window)))
    return sum(counts), lats


async def _measure(rs: KvReplicas, seconds: float, windows: list[int]) -> dict[str, Any]:
    async with Client(ClientConfig(name="bench-consensus", connect_timeout_s=2)) as client:
        kv = KvClient(client, list(rs.addresses.values()), timeout_s=30)
        await kv.put("warm-up", VALUE)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < min(1.0, seconds / 3):
            await kv.put("warm-up", VALUE)
        leader = kv.leader
        results: dict[str, Any] = {}
        for window in windows:
            before = await _stats(client, rs)
            start = time.perf_counter()
            counter, lats = await _window(kv, window, seconds)
            elapsed = time.perf_counter() - start
            after = await _stats(client, rs)
            lats.sort()
            per_fsync = {}
            for i in rs.ids:
                fsyncs = after[i].fsyncs - before[i].fsyncs
                entries = after[i].entries_persisted - before[i].entries_persisted
                role = "leader" if after[i].role == "leader" else f"follower-{i}"
                per_fsync[role] = round(entries / fsyncs, 2) if fsyncs else None
            results[f"inflight_{window}"] = {
                "proposals_per_s": round(counter / elapsed),
                "commit_p50_ms": round(lats[len(lats) // 2] * 1000, 3),
                "commit_p99_ms": round(lats[int(len(lats) * 0.99)] * 1000, 3),
                "entries_per_fsync": per_fsync,
            }
        results["leader"] = leader
    return results


def run_consensus_bench(seconds: float = 5.0, replicas: int = 3, directory: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="feitian-bench-consensus-", dir=directory) as tmp:
        raw = bench_raw(Path(tmp), min(3.0, seconds))
        rs = KvReplicas(Path(tmp) / "replicas", replicas)
        try:
            rs.start_all()
            figures = run(_measure(rs, seconds, [1, 16, 64]))
        finally:
            stuck = rs.stop()
        if stuck:
            figures["would_not_stop"] = [r.pid for r in stuck]
    figures["raw_4k_fdatasync_ops_per_s"] = round(raw)
    figures["replicas"] = replicas
    figures["value_bytes"] = len(VALUE)
    figures["seconds_per_measurement"] = seconds
    top = figures["inflight_64"]["proposals_per_s"]
    figures["inflight_64_vs_raw_fsync"] = round(top / raw, 2) if raw else None
    return figures


def print_table(figures: dict[str, Any]) -> None:
    print(f"replicas: {figures['replicas']}, value {figures['value_bytes']} B, fsync on")
    print(f"raw 4 KiB append + fdatasync on this disk: {figures['raw_4k_fdatasync_ops_per_s']} ops/s")
    print(f"{'in flight':>10}{'proposals/s':>14}{'p50 ms':>10}{'p99 ms':>10}  entries per fsync")
    for window in (1, 16, 64):
        f = figures[f"inflight_{window}"]
        print(
            f"{window:>10}{f['proposals_per_s']:>14}{f['commit_p50_ms']:>10}{f['commit_p99_ms']:>10}  "
            f"{f['entries_per_fsync']}"
        )
    print(f"64 in flight vs the raw fsync rate: {figures['inflight_64_vs_raw_fsync']}x")
