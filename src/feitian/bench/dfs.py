"""``feitian bench dfs``: Pangu on real processes, and the physical limits of the same disk in the same run.

* **Disk**: sequential write of ``size`` bytes in 4 MiB pieces with an ``fdatasync`` after each (the durable
  write rate, which bounds a replica), and ``pread`` of the same file from the page cache.
* **Throughput**: one client writes a ``size`` file with 3 replicas on 3 chunk servers (one per rack) and
  reads it back (into a reused buffer, 64 MiB per read); then the same with 1 replica.
* **Metadata**: create + close of empty files, ``--creates`` of them, 256 in flight, on 3 master replicas
  (every create and close is a Raft entry fsynced on a majority).
* **Re-replication**: a fourth chunk server joins, a ``size`` file is written with 3 replicas, and a chunk
  server holding a replica of every chunk (the only one on its rack) is killed with SIGKILL: the time until
  the master declares it dead (the heartbeat timeout, 3 s here) and then until every chunk has 3 good replicas
  again, with the copy rate (the repair throttle is 200 MiB/s by default).

The cluster runs without security (as the other benchmarks): bulk data over mutual TLS costs AES-GCM on both
ends (docs/security.md, README "Security").
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from feitian.base.units import MiB
from feitian.dfs import DfsClient, DfsClientConfig
from feitian.runtime.eventloop import run
from feitian.testing.dfs import DfsCluster
from feitian.testing.waiting import wait_for_condition

PIECE = 4 * MiB
BLOCK = 8 * MiB  # what the client hands to write() at a time
HEARTBEAT_TIMEOUT_S = 3.0
TARGETS = {
    "write_r3_vs_disk_third": 0.7,
    "write_r1_vs_disk": 0.7,
    "read_MBps": 1000,
    "creates_per_s": 2000,
    "rereplication_MBps": 100,
}


def disk_limits(directory: Path, size: int) -> dict[str, float]:
    """Sequential write + fdatasync per 4 MiB, then page-cache reads of the same file (MB/s)."""
    path = directory / "disk-probe.bin"
    piece = os.urandom(PIECE)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
    try:
        started = time.perf_counter()
        for offset in range(0, size, PIECE):
            os.pwrite(fd, piece, offset)
            os.fdatasync(fd)
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(2):
            for offset in range(0, size, PIECE):
                os.pread(fd, PIECE, offset)
        read_s = time.perf_counter() - started
    finally:
        os.close(fd)
        path.unlink()
    return {"write_fdatasync_MBps": size / write_s / 1e6, "page_cache_read_MBps": 2 * size / read_s / 1e6}


async def _write(dfs: DfsClient, path: str, size: int, replication: int) -> float:
    block = os.urandom(BLOCK)
    started = time.perf_counter()
    writer = await dfs.create(path, replication=replication, overwrite=True)
    written = 0
    while written < size:
        n = min(BLOCK, size - written)
        await writer.write(block if n == BLOCK else block[:n])
        written += n
    await writer.close()
    return size / (time.perf_counter() - started) / 1e6


async def _read(dfs: DfsClient, path: str, size: int) -> float:
    reader = await dfs.open_read(path)
    buffer = bytearray(64 * MiB)
    started = time.perf_counter()
    position = 0
    while position < size:
        position += await reader.read_into(position, buffer)
    return size / (time.perf_counter() - started) / 1e6


async def _creates(dfs: DfsClient, count: int, in_flight: int = 256) -> float:
    await dfs.mkdir("/bench/meta")
    limit = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with limit:
            writer = await dfs.create(f"/bench/meta/f{i:07d}")
            await writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - started)


async def _rereplication(cluster: DfsCluster, dfs: DfsClient, size: int) -> dict[str, float]:
    await asyncio.to_thread(cluster.add_chunkserver, "chunkserver-4", "r1")
    await cluster.wait_servers(4)
    await _write(dfs, "/bench/repair", size, 3)
    await dfs.wait_healthy(120)
    servers = {s.server_id: s for s in await dfs.servers()}
    victim = "chunkserver-2"  # alone on rack r2: it holds a replica of every chunk
    held = servers[victim].used_bytes
    killed = time.perf_counter()
    await asyncio.to_thread(cluster.kill, victim)

    async def declared_dead() -> bool:
        return victim in (await dfs.fsck()).dead_servers

    await wait_for_condition(declared_dead, 60, f"{victim} declared dead")
    detected = time.perf_counter()
    await dfs.wait_healthy(600, poll_s=0.05)
    restored = time.perf_counter()
    return {
        "victim_held_MiB": held / MiB,
        "detection_s": detected - killed,
        "repair_s": restored - detected,
        "rereplication_MBps": held / (restored - detected) / 1e6,
    }


async def _measure(cluster: DfsCluster, size: int, creates: int) -> dict[str, Any]:
    dfs = await cluster.client(DfsClientConfig(timeout_s=120.0, io_timeout_s=120.0, read_window=4))
    out: dict[str, Any] = {}
    try:
        out["write_r3_MBps"] = await _write(dfs, "/bench/r3", size, 3)
        out["read_r3_MBps"] = await _read(dfs, "/bench/r3", size)
        out["write_r1_MBps"] = await _write(dfs, "/bench/r1", size, 1)
        out["read_r1_MBps"] = await _read(dfs, "/bench/r1", size)
        out["creates_per_s"] = await _creates(dfs, creates)
        await dfs.delete("/bench", recursive=True)
        await dfs.wait_healthy(120)
        out.update(await _rereplication(cluster, dfs, size))
    finally:
        await dfs.rpc.close()
    return out


def run_dfs_bench(size_mib: int = 1024, creates: int = 5000, directory: str | None = None) -> dict[str, Any]:
    size = size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="feitian-bench-dfs-", dir=directory) as tmp:
        disk = disk_limits(Path(tmp), min(size, 1024 * MiB))
        cluster = DfsCluster(
            Path(tmp) / "cluster",
            masters=3,
            chunkservers=3,
            chunk_size_bytes=64 * MiB,
            heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
            chunkserver_options={"scrub_interval_s": 0},
        )
        try:
            cluster.start()
            figures = run(_measure(cluster, size, creates))
        finally:
            stuck = cluster.stop()
        if stuck:
            figures["would_not_stop"] = [r.pid for r in stuck]
    figures.update(disk)
    durable = disk["write_fdatasync_MBps"]
    figures["write_r3_vs_disk_third"] = figures["write_r3_MBps"] / (durable / 3)
    figures["write_r1_vs_disk"] = figures["write_r1_MBps"] / durable
    figures["read_MBps"] = min(figures["read_r3_MBps"], figures["read_r1_MBps"])
    figures["size_MiB"] = size_mib
    figures["creates"] = creates
    figures["targets"] = TARGETS
    figures["met"] = {name: figures[name] >= target for name, target in TARGETS.items()}
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def print_report(f: dict[str, Any]) -> None:
    met = f["met"]

    def mark(name: str) -> str:
        return "met" if met[name] else "NOT met"

    print(f"file size {f['size_MiB']} MiB, 64 MiB chunks, 3 masters, chunk servers one per rack (r1, r2, r3)")
    print(f"disk: write + fdatasync {f['write_fdatasync_MBps']:.0f} MB/s, page-cache read "
          f"{f['page_cache_read_MBps']:.0f} MB/s")  # fmt: skip
    print(f"write, 3 replicas: {f['write_r3_MBps']:.0f} MB/s = {f['write_r3_vs_disk_third']:.2f}x (disk / 3)  "
          f"[target 0.7x: {mark('write_r3_vs_disk_third')}]")  # fmt: skip
    print(f"write, 1 replica:  {f['write_r1_MBps']:.0f} MB/s = {f['write_r1_vs_disk']:.2f}x disk  "
          f"[target 0.7x: {mark('write_r1_vs_disk')}]")  # fmt: skip
    print(f"read: {f['read_r3_MBps']:.0f} MB/s (3 replicas), {f['read_r1_MBps']:.0f} MB/s (1 replica)  "
          f"[target 1000 MB/s: {mark('read_MBps')}]")  # fmt: skip
    print(f"metadata: {f['creates_per_s']:.0f} creates + closes of empty files per second  "
          f"[target 2000: {mark('creates_per_s')}]")  # fmt: skip
    print(f"re-replication: {f['victim_held_MiB']:.0f} MiB on the killed server; dead after "
          f"{f['detection_s']:.1f} s (heartbeat timeout {HEARTBEAT_TIMEOUT_S:.0f} s), 3 replicas again "
          f"{f['repair_s']:.1f} s later = {f['rereplication_MBps']:.0f} MB/s  "
          f"[target 100 MB/s: {mark('rereplication_MBps')}]")  # fmt: skip
