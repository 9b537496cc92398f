"""``python -m feitian.runtime.wal bench``: durable-append figures of this disk, printed as one JSON line.

* ``raw_4k_fdatasync_ops_s``: 4 KiB ``write`` + ``fdatasync`` on a plain growing file, no WAL: the peer figure
  every durable log on this disk is bounded by (one fsync per operation).
* ``wal_4k_append_sync``: the same through :class:`WAL` (one 4 KiB record, ``append`` + ``sync``) for each
  preallocation mode, and the ratio to the raw figure, run side by side.
* ``group_commit``: 64 asyncio tasks appending 100-byte records through :class:`GroupCommitWAL`, for each
  preallocation mode: records/s, records per fsync, and the ratio to the raw fsync rate.

Figures go to stdout; nothing else is printed there. The machine is noisy: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from feitian.runtime.wal import WAL, Preallocate
from feitian.runtime.wal_async import GroupCommitWAL
from feitian.runtime.wal_format import Record

__all__ = ["main"]


def bench_raw(directory: Path, seconds: float) -> float:
    """4 KiB write + fdatasync per operation on a plain file; operations per second."""
    path = directory / "raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    block = os.urandom(4096)
    ops = 0
    try:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            os.write(fd, block)
            os.fdatasync(fd)
            ops += 1
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return ops / elapsed


def bench_wal_single(directory: Path, seconds: float, preallocate: Preallocate) -> float:
    """One 4 KiB record per append + sync; operations per second."""
    wal, _ = WAL.open(directory / f"single-{preallocate.value}", preallocate=preallocate)
    record = [Record(1, os.urandom(4096 - 24))]  # 4 KiB on disk with the record header
    ops = 0
    try:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            wal.append(record)
            wal.sync()
            ops += 1
        elapsed = time.perf_counter() - start
    finally:
        wal.close()
    return ops / elapsed


async def _group_commit(
    directory: Path,
    seconds: float,
    appenders: int,
    preallocate: Preallocate,
) -> dict[str, Any]:
    wal, _ = WAL.open(directory / f"group-{preallocate.value}", preallocate=preallocate)
    front = GroupCommitWAL(wal)
    payload = [Record(1, os.urandom(100))]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    latencies: list[float] = []

    async def appender() -> int:
        done = 0
        while loop.time() < deadline:
            began = loop.time()
            await front.append(payload)
            latencies.append(loop.time() - began)
            done += 1
        return done

    before = (wal.stats.fsyncs, wal.stats.syncs)
    start = loop.time()
    counts = await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = loop.time() - start
    fsyncs, syncs = wal.stats.fsyncs - before[0], wal.stats.syncs - before[1]
    await front.aclose()
    records = sum(counts)
    latencies.sort()
    return {
        "preallocate": preallocate.value,
        "appenders": appenders,
        "records_s": round(records / elapsed),
        "records_per_fsync": round(records / max(fsyncs, 1), 1),
        "rounds": syncs,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m feitian.runtime.wal bench")
    parser.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temp dir)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--appenders", type=int, default=64)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="feitian-wal-bench-", dir=args.dir) as tmp:
        directory = Path(tmp)
        raw = bench_raw(directory, args.seconds)
        singles = [
            {"preallocate": mode.value, "ops_s": round(bench_wal_single(directory, args.seconds, mode))}
            for mode in (Preallocate.FALLOCATE, Preallocate.ZERO_FILL, Preallocate.NONE)
        ]
        groups = [
            asyncio.run(_group_commit(directory, args.seconds, args.appenders, mode))
            for mode in (Preallocate.FALLOCATE, Preallocate.ZERO_FILL, Preallocate.NONE)
        ]
    for single in singles:
        single["ratio_to_raw"] = round(single["ops_s"] / raw, 2)
    for group in groups:
        group["ratio_to_raw_fsync"] = round(group["records_s"] / raw, 2)
    result = {
        "raw_4k_fdatasync_ops_s": round(raw),
        "wal_4k_append_sync": singles,
        "group_commit_100b": groups,
    }
    print(json.dumps(result))
    return 0
