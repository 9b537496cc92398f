"""A really full disk: the WAL and the Raft store on a small tmpfs, filled up, then given space again.

Each test mounts its own 2 MiB tmpfs (we run as root; where mounting is not permitted the test is skipped
with the reason) and always unmounts it. Expectations: a clear error that says the disk is full and names the
path; nothing acknowledged is lost; nothing unacknowledged appears; writes succeed again once space is freed.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from feitian.consensus.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from feitian.errors import FeitianError, UnavailableError
from feitian.runtime.files import is_disk_full
from feitian.runtime.raft_store import RaftStore
from feitian.runtime.wal import WAL, Preallocate
from feitian.runtime.wal_async import GroupCommitWAL
from feitian.runtime.wal_format import Record

FS_SIZE = "2m"
SEGMENT_SIZE = 256 * 1024
MAX_APPENDS = 100_000  # a bound on the fill loops; a 2 MiB disk fills long before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
        print(reason)
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def ballast(disk: Path, size: int = 256 * 1024) -> Path:
    """A file taking ``size`` bytes, deleted later to give space back."""
    path = disk / "ballast"
    path.write_bytes(b"\x01" * size)
    return path


def assert_disk_full(exc: BaseException, disk: Path) -> None:
    assert isinstance(exc, UnavailableError) and is_disk_full(exc), repr(exc)
    assert "disk full" in exc.message and str(disk) in exc.message
    assert exc.retryable


@pytest.mark.parametrize("preallocate", [Preallocate.NONE, Preallocate.FALLOCATE, Preallocate.ZERO_FILL])
def test_wal_fills_the_disk_then_recovers(small_disk: Path, preallocate: Preallocate) -> None:
    spare = ballast(small_disk)
    wal, _ = WAL.open(small_disk / "wal", segment_size_bytes=SEGMENT_SIZE, preallocate=preallocate)
    acknowledged: list[bytes] = []
    error: FeitianError | None = None
    for i in range(MAX_APPENDS):
        payload = b"%08d" % i * 128  # 1 KiB
        wal.append([Record(1, payload)])
        try:
            wal.sync()
        except FeitianError as exc:
            error = exc
            break
        acknowledged.append(payload)
    assert error is not None, "the disk never filled"
    assert_disk_full(error, small_disk)
    assert wal.usable and len(acknowledged) > 100
    # Still full: refused again, cleanly.
    wal.append([Record(1, b"still full" * 300)])
    with pytest.raises(UnavailableError, match="disk full"):
        wal.sync()
    spare.unlink()
    for i in range(50):
        wal.append([Record(2, b"after %d" % i)])
        wal.sync()
        acknowledged.append(b"after %d" % i)
    wal.close()
    wal, recovered = WAL.open(small_disk / "wal", segment_size_bytes=SEGMENT_SIZE, preallocate=preallocate)
    assert [r.data for r in recovered] == acknowledged
    assert wal.recovery.truncated == ()
    wal.close()


async def test_group_commit_on_a_full_disk(small_disk: Path) -> None:
    spare = ballast(small_disk)
    wal, _ = WAL.open(small_disk / "wal", segment_size_bytes=SEGMENT_SIZE, preallocate=Preallocate.NONE)
    front = GroupCommitWAL(wal)
    acknowledged: set[bytes] = set()
    failures: list[BaseException] = []

    async def appender(a: int) -> None:
        for i in range(MAX_APPENDS):
            payload = b"%02d-%06d" % (a, i) * 50
            try:
                await front.append([Record(1, payload)])
            except FeitianError as exc:
                failures.append(exc)
                return
            acknowledged.add(payload)

    await asyncio.gather(*(appender(a) for a in range(16)))
    assert len(failures) == 16
    for exc in failures:
        assert_disk_full(exc, small_disk)
    spare.unlink()
    await asyncio.gather(*(front.append([Record(2, b"after-%d" % a)]) for a in range(16)))
    acknowledged |= {b"after-%d" % a for a in range(16)}
    await front.aclose()
    wal, recovered = WAL.open(small_disk / "wal")
    assert sorted(r.data for r in recovered) == sorted(acknowledged)
    wal.close()


def test_raft_store_fills_the_disk_then_reopens(small_disk: Path) -> None:
    spare = ballast(small_disk)
    directory = small_disk / "store"
    store = RaftStore.open(directory, segment_size_bytes=SEGMENT_SIZE)
    durable: list[Entry] = []
    error: FeitianError | None = None
    for i in range(1, MAX_APPENDS):
        entry = Entry(1, i, data=b"%08d" % i * 128)
        store.save(HardState(1, 1, i - 1), [entry])
        try:
            store.sync()
        except FeitianError as exc:
            error = exc
            break
        durable.append(entry)
    assert error is not None, "the disk never filled"
    assert_disk_full(error, small_disk)
    with pytest.raises(UnavailableError, match="unusable after a failed sync"):
        store.save(None, [Entry(1, len(durable) + 2)])
    store.close()
    spare.unlink()
    store = RaftStore.open(directory, segment_size_bytes=SEGMENT_SIZE)
    state = store.load()
    assert state.entries == durable
    assert state.hard_state == HardState(1, 1, len(durable) - 1)
    # A snapshot too big for the disk fails cleanly and leaves no temporary file behind.
    huge = Snapshot(SnapshotMeta(len(durable), 1, ConfState((1,))), b"s" * (4 << 20))
    store.save(HardState(1, 1, len(durable)), [])
    store.sync()
    with pytest.raises(UnavailableError, match="disk full") as caught:
        store.compact(huge)
    assert_disk_full(caught.value, small_disk)
    assert list((directory / "snap").iterdir()) == []
    # Compaction with a snapshot that fits frees the log and the store goes on.
    store.compact(Snapshot(huge.meta, b"small state"))
    next_index = len(durable) + 1
    store.save(HardState(1, 1, next_index - 1), [Entry(1, next_index, data=b"after")])
    store.sync()
    store.close()
    store = RaftStore.open(directory, segment_size_bytes=SEGMENT_SIZE)
    state = store.load()
    assert state.snapshot == Snapshot(huge.meta, b"small state")
    assert state.entries == [Entry(1, next_index, data=b"after")]
    store.close()
