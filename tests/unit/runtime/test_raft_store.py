"""RaftStore on real files: replay rules, snapshots, compaction, validation, failures."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from wal_test_support import crash_image, segments

from feitian.consensus.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from feitian.errors import DataCorruptionError, InvalidArgumentError, UnavailableError
from feitian.runtime.raft_store import RaftStore
from feitian.runtime.wal import Preallocate

CONF = ConfState(voters=(1, 2, 3))


def ents(lo: int, hi: int, term: int, tag: bytes = b"") -> list[Entry]:
    return [Entry(term, i, data=b"%s%d" % (tag, i)) for i in range(lo, hi + 1)]


def snap(index: int, term: int, data: bytes = b"state") -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, CONF), data)


def reopen(store: RaftStore, **options: object) -> RaftStore:
    store.close()
    return RaftStore.open(store.directory, **options)  # type: ignore[arg-type]


def test_empty_store(tmp_path: Path) -> None:
    store = RaftStore.open(tmp_path)
    state = store.load()
    assert state.hard_state == HardState() and state.snapshot is None and state.entries == []
    assert (store.first_index, store.last_index) == (1, 0)
    store.close()


def test_entries_and_hard_state_round_trip(tmp_path: Path) -> None:
    store = RaftStore.open(tmp_path)
    store.save(HardState(1, 1, 0), ents(1, 5, 1))
    store.save(HardState(1, 1, 3), ents(6, 7, 1))
    store.sync()
    store = reopen(store)
    state = store.load()
    assert state.hard_state == HardState(1, 1, 3)
    assert state.entries == ents(1, 7, 1)
    store.close()


def test_a_conflicting_entry_replaces_the_suffix(tmp_path: Path) -> None:
    store = RaftStore.open(tmp_path)
    store.save(HardState(1, 0, 2), ents(1, 6, 1))
    store.save(HardState(2, 0, 2), ents(4, 5, 2, b"new"))  # entry 4 replaces 4, 5, 6
    store.sync()
    expected = ents(1, 3, 1) + ents(4, 5, 2, b"new")
    assert store.load().entries == expected
    store = reopen(store)
    assert store.load().entries == expected and store.last_index == 5
    store.close()


def test_a_received_snapshot_replaces_the_log(tmp_path: Path) -> None:
    store = RaftStore.open(tmp_path)
    store.save(HardState(1, 0, 2), ents(1, 6, 1))
    store.save(HardState(3, 0, 10), ents(11, 12, 3), snap(10, 3, b"leader state"))
    store.sync()
    store = reopen(store)
    state = store.load()
    assert state.snapshot == snap(10, 3, b"leader state")
    assert state.entries == ents(11, 12, 3) and state.hard_state.commit == 10
    assert (store.first_index, store.last_index) == (11, 12)
    store.close()


def test_compaction_releases_segments_and_old_snapshots(tmp_path: Path) -> None:
    store = RaftStore.open(tmp_path, segment_size_bytes=4096)
    for i in range(1, 201):
        store.save(HardState(1, 1, i - 1), [Entry(1, i, data=b"e" * 100)])
        store.sync()
    before = len(segments(tmp_path / "wal"))
    store.compact(snap(100, 1, b"at 100"))
    assert len(list((tmp_path / "snap").iterdir())) == 1
    store.compact(snap(150, 1, b"at 150"))
    after = segments(tmp_path / "wal")
    assert len(after) < before / 2
    assert [p.name for p in (tmp_path / "snap").iterdir()] == ["snap-0000000000000001-0000000000000096.snap"]
    store = reopen(store, segment_size_bytes=4096)
    state = store.load()
    assert state.snapshot == snap(150, 1, b"at 150")
    assert [e.index for e in state.entries] == list(range(151, 201))
    assert state.hard_state == HardState(1, 1, 199)
    store.close()


def test_state_written_once_survives_the_release_of_its_segment(tmp_path: Path) -> None:
    # The hard state and the snapshot are written once, in a segment compaction later deletes: each new
    # segment's preamble must carry them.
    store = RaftStore.open(tmp_path, segment_size_bytes=4096)
    store.save(HardState(1, 0, 10), [], snap(10, 1, b"first"))
    # One batch of > 4096 bytes: the hard state ends the first segment, the next save cuts a new one.
    store.save(HardState(5, 2, 50), [Entry(1, i, data=b"e" * 200) for i in range(11, 51)])
    for i in range(51, 151):
        store.save(None, [Entry(5, i, data=b"e" * 200)])
    store.sync()
    first_segment = segments(tmp_path / "wal")[0]
    store.compact(snap(50, 1, b"second"))
    assert not first_segment.exists()
    store = reopen(store, segment_size_bytes=4096)
    state = store.load()
    assert state.hard_state == HardState(5, 2, 50)
    assert state.snapshot == snap(50, 1, b"second")
    assert [e.index for e in state.entries] == list(range(51, 151))
    store.close()


def test_an_orphan_snapshot_of_a_crash_is_ignored_and_removed(tmp_path: Path) -> None:
    store = RaftStore.open(tmp_path)
    store.save(HardState(1, 0, 5), ents(1, 9, 1))
    store.compact(snap(5, 1))
    store.save(None, [], snap(20, 2))  # the file is written now, the marker only buffered
    image = crash_image(tmp_path, tmp_path.parent / "crash")
    store.close()
    recovered = RaftStore.open(image)
    state = recovered.load()
    assert state.snapshot == snap(5, 1) and state.entries == ents(6, 9, 1)
    assert [p.name for p in (image / "snap").iterdir()] == ["snap-0000000000000001-0000000000000005.snap"]
    recovered.close()


def test_a_missing_or_damaged_snapshot_refuses_to_start(tmp_path: Path) -> None:
    store = RaftStore.open(tmp_path)
    store.save(HardState(1, 0, 5), ents(1, 9, 1))
    store.compact(snap(5, 1))
    store.close()
    (path,) = (tmp_path / "snap").iterdir()
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    store = RaftStore.open(tmp_path)
    with pytest.raises(DataCorruptionError, match="checksum") as caught:
        store.load()
    assert caught.value.fields["path"] == str(path)
    store.close()
    path.unlink()
    with pytest.raises(DataCorruptionError, match="missing"):
        RaftStore.open(tmp_path)


def test_save_rejects_what_raft_never_asks_for(tmp_path: Path) -> None:
    store = RaftStore.open(tmp_path)
    store.save(HardState(1, 0, 3), ents(1, 5, 1))
    with pytest.raises(InvalidArgumentError, match="gap"):
        store.save(None, ents(7, 8, 1))
    with pytest.raises(InvalidArgumentError, match="committed"):
        store.save(None, ents(3, 4, 2))
    with pytest.raises(InvalidArgumentError, match="contiguous"):
        store.save(None, [Entry(1, 6), Entry(1, 8)])
    store.compact(snap(3, 1))
    with pytest.raises(InvalidArgumentError, match="not newer"):
        store.save(None, [], snap(2, 1))
    with pytest.raises(InvalidArgumentError, match="does not hold"):
        store.compact(snap(5, 7))
    with pytest.raises(InvalidArgumentError, match="commit"):
        store.compact(snap(5, 1))
    store.save(None, ents(1, 6, 1))  # entries covered by the snapshot are skipped, as etcd's storage does
    assert store.load().entries == ents(4, 6, 1)
    store.close()


def test_a_failed_sync_requires_a_reopen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RaftStore.open(tmp_path, preallocate=Preallocate.NONE)
    store.save(HardState(1, 0, 0), ents(1, 2, 1))
    store.sync()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    store.save(HardState(1, 0, 2), ents(3, 4, 1))
    with pytest.raises(UnavailableError, match="disk full"):
        store.sync()
    monkeypatch.undo()
    with pytest.raises(UnavailableError, match="unusable after a failed sync") as caught:
        store.save(None, ents(5, 5, 1))
    assert "reopen" in (caught.value.hint or "")
    store = reopen(store)
    state = store.load()
    assert state.entries == ents(1, 2, 1) and state.hard_state == HardState(1, 0, 0)
    store.save(HardState(1, 0, 2), ents(3, 3, 1))
    store.sync()
    store.close()
