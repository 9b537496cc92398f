"""GroupCommitWAL: concurrent asyncio appenders share fsyncs, and fsync never runs on the event loop."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from feitian.errors import UnavailableError
from feitian.runtime.wal import WAL
from feitian.runtime.wal_async import GroupCommitWAL
from feitian.runtime.wal_format import Record

DEADLINE_S = 10.0


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


async def test_concurrent_appenders_share_fsyncs(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size_bytes=64 * 1024)
    front = GroupCommitWAL(wal)
    appenders, each = 64, 20

    async def appender(a: int) -> list[int]:
        return [await front.append([Record(1, b"%02d:%03d" % (a, i))]) for i in range(each)]

    seqs = await asyncio.gather(*(appender(a) for a in range(appenders)))
    total = appenders * each
    assert wal.stats.records == total
    assert wal.stats.fsyncs < total / 4, wal.stats  # 64 appenders share each round's fdatasync
    assert all(seq <= wal.durable_seq for run in seqs for seq in run)
    await front.aclose()
    wal, recovered = WAL.open(tmp_path)
    got = [r.data for r in recovered]
    assert sorted(got) == sorted(b"%02d:%03d" % (a, i) for a in range(appenders) for i in range(each))
    for a in range(appenders):  # each appender's records are in its order
        mine = [d for d in got if d.startswith(b"%02d:" % a)]
        assert mine == sorted(mine)
    wal.close()


async def test_fsync_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = WAL.open(tmp_path)
    front = GroupCommitWAL(wal)
    entered, release = threading.Event(), threading.Event()
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        entered.set()
        release.wait(DEADLINE_S)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    first = asyncio.create_task(front.append([Record(1, b"first")]))
    await wait_for(entered.is_set, "the first fsync to start")
    # The fsync is blocked in the writer thread; the loop still runs and more appends queue up.
    later = [asyncio.create_task(front.append([Record(1, b"later-%d" % i)])) for i in range(10)]
    await wait_for(lambda: wal.stats.batches == 11, "the later appends to be buffered")
    assert not first.done()
    release.set()
    assert await first == 1
    assert sorted(await asyncio.gather(*later)) == list(range(2, 12))
    assert wal.stats.syncs == 2  # the ten later appends shared one round
    await front.aclose()


async def test_a_full_disk_fails_its_round_and_later_appends_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = WAL.open(tmp_path)
    front = GroupCommitWAL(wal)
    await front.append([Record(1, b"before")])
    real_fdatasync = os.fdatasync
    failures = [1]

    def full_once(fd: int) -> None:
        if failures:
            failures.pop()
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", full_once)
    results = await asyncio.gather(*(front.append([Record(1, b"x%d" % i)]) for i in range(8)), return_exceptions=True)
    assert all(isinstance(r, UnavailableError) and r.fields["reason"] == "disk_full" for r in results), results
    assert await front.append([Record(1, b"after")]) > 0
    await front.aclose()
    wal, recovered = WAL.open(tmp_path)
    assert [r.data for r in recovered] == [b"before", b"after"]
    wal.close()


async def test_a_cancelled_appender_does_not_disturb_the_others(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    front = GroupCommitWAL(wal)
    tasks = [asyncio.create_task(front.append([Record(1, b"%d" % i)])) for i in range(5)]
    await asyncio.sleep(0)  # let them buffer (a yield, not a timed wait)
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [d for i, d in enumerate(done) if i != 2] == [1, 2, 4, 5]
    await front.aclose()
    wal, recovered = WAL.open(tmp_path)
    assert len(recovered) == 5  # cancelling stops the wait, not the write
    wal.close()


async def test_backpressure_bounds_buffered_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = WAL.open(tmp_path)
    front = GroupCommitWAL(wal, max_pending_bytes=4096)
    buffered: list[int] = []
    real_append = wal.append

    def spy(records: list[Record]) -> int:
        seq = real_append(records)
        buffered.append(wal.pending_bytes)
        return seq

    monkeypatch.setattr(wal, "append", spy)
    await asyncio.gather(*(front.append([Record(1, bytes(1000))]) for _ in range(50)))
    assert len(buffered) == 50
    assert max(buffered) <= 4096 + 1100  # without the bound all 50 KB would be buffered at once
    await front.aclose()
