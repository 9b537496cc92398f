"""Property: the Raft store recovers exactly what was synced, checked against an independent model.

Random sequences of Raft-like saves (appends that may overwrite an uncommitted suffix, hard states whose
commit only grows, snapshots received from a leader), local compactions, syncs, clean reopens and crashes.
A crash tears the sync in flight: the WAL writes the buffered records, the store is copied as a crash would
leave it (compaction of that sync never ran) with the last segment cut at a random point after what was
durable before, and the recovered state must be the model after some prefix of the torn sync's records.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wal_test_support import crash_image, cut, segments

from feitian.consensus.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from feitian.runtime.raft_store import RaftStore
from feitian.runtime.wal import Preallocate
from feitian.runtime.wal_format import SEGMENT_HEADER_SIZE

SEGMENT_SIZE = 4096
EXAMPLES = int(os.environ.get("FEITIAN_PROPERTY_EXAMPLES", "100"))
OPS = st.sampled_from(
    ["append"] * 5 + ["hard_state"] * 3 + ["sync"] * 3 + ["compact"] * 2 + ["snapshot", "crash", "reopen"]
)


@dataclass
class Model:
    """The Raft store's contract, written plainly: a dict of entries above a snapshot."""

    hard_state: HardState = field(default_factory=HardState)
    base: Snapshot | None = None
    entries: dict[int, Entry] = field(default_factory=dict)

    @property
    def base_index(self) -> int:
        return self.base.meta.index if self.base is not None else 0

    @property
    def last_index(self) -> int:
        return max(self.entries, default=self.base_index)

    def apply(self, op: tuple[str, object]) -> None:
        kind, value = op
        if kind == "entry":
            assert isinstance(value, Entry)
            if value.index > self.base_index:
                self.entries = {i: e for i, e in self.entries.items() if i < value.index}
                self.entries[value.index] = value
        elif kind == "hard_state":
            assert isinstance(value, HardState)
            self.hard_state = value
        elif kind == "restore":
            assert isinstance(value, Snapshot)
            self.base, self.entries = value, {}
        else:
            assert isinstance(value, Snapshot)
            self.base = value
            self.entries = {i: e for i, e in self.entries.items() if i > value.meta.index}

    def state(self) -> tuple[HardState, Snapshot | None, list[Entry]]:
        return self.hard_state, self.base, [self.entries[i] for i in sorted(self.entries)]

    def copy(self) -> Model:
        return replace(self, entries=dict(self.entries))


def payload(step: int, size: int) -> bytes:
    return (b"%d|" % step * size)[:size]


def loaded(store: RaftStore) -> tuple[HardState, Snapshot | None, list[Entry]]:
    state = store.load()
    return state.hard_state, state.snapshot, state.entries


def open_store(directory: Path, preallocate: Preallocate) -> RaftStore:
    return RaftStore.open(directory, segment_size_bytes=SEGMENT_SIZE, preallocate=preallocate)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_synced_state_survives_any_crash(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        directory = root / "store-0"
        preallocate = data.draw(st.sampled_from(Preallocate), label="preallocate")
        store = open_store(directory, preallocate)
        synced, unsynced = Model(), Model()  # the model at the last sync, and with every save since
        since_sync: list[tuple[str, object]] = []  # the records of the saves since the last sync
        term = 1

        def save(hard_state: HardState | None, entries: list[Entry], snapshot: Snapshot | None = None) -> None:
            store.save(hard_state, entries, snapshot)
            ops: list[tuple[str, object]] = [("restore", snapshot)] if snapshot is not None else []
            ops += [("entry", e) for e in entries] + ([("hard_state", hard_state)] if hard_state else [])
            for op in ops:
                unsynced.apply(op)
            since_sync.extend(ops)

        for step, op in enumerate(data.draw(st.lists(OPS, min_size=20, max_size=80), label="ops")):
            commit = unsynced.hard_state.commit
            if op == "append":
                lowest = max(commit, unsynced.base_index) + 1
                start = data.draw(st.integers(lowest, unsynced.last_index + 1), label="append at")
                term += data.draw(st.integers(0, 1), label="new term")
                sizes = data.draw(st.lists(st.integers(0, 1000), min_size=1, max_size=6), label="sizes")
                save(None, [Entry(term, start + k, data=payload(step, n)) for k, n in enumerate(sizes)])
            elif op == "hard_state":
                last_index = unsynced.last_index
                new_commit = data.draw(st.just(last_index) | st.integers(commit, last_index), label="commit")
                save(HardState(term, data.draw(st.integers(0, 3), label="vote"), new_commit), [])
            elif op == "snapshot":  # from the leader: beyond our commit index, replaces the log
                index = data.draw(st.integers(max(commit, unsynced.base_index) + 1, unsynced.last_index + 5))
                term += 1
                snapshot = Snapshot(SnapshotMeta(index, term, ConfState((1, 2, 3))), payload(step, 50))
                save(HardState(term, 0, index), [], snapshot)
            elif op == "compact" and commit > unsynced.base_index:
                index = data.draw(st.integers(unsynced.base_index + 1, commit), label="compact at")
                snapshot = Snapshot(SnapshotMeta(index, unsynced.entries[index].term, ConfState((1,))), b"app")
                store.compact(snapshot)  # syncs
                unsynced.apply(("compact", snapshot))
                synced, since_sync = unsynced.copy(), []
            elif op == "sync":
                store.sync()
                synced, since_sync = unsynced.copy(), []
            elif op == "reopen":
                store.close()
                store = open_store(directory, preallocate)
                synced, since_sync = unsynced.copy(), []
                assert loaded(store) == synced.state()
            elif op == "crash":
                wal_dir = directory / "wal"
                before = {p.name: p.stat().st_size for p in segments(wal_dir)}
                tail = store._wal.durable_tail() if store._wal is not None else None
                if tail is not None:
                    before[tail[0].name] = tail[1]
                if store._wal is not None:
                    store._wal.sync()  # the WAL writes; the store's compaction after a sync never runs
                image = crash_image(directory, root / f"crash-{step}")
                store.close()
                files = segments(image / "wal")
                if not files:  # nothing was ever saved
                    directory, store = image, open_store(image, preallocate)
                    continue
                keep = data.draw(st.integers(max(len(before) - 1, 0), len(files) - 1), label="last kept")
                for extra in files[keep + 1 :]:
                    extra.unlink()
                last = files[keep]
                low = before.get(last.name, SEGMENT_HEADER_SIZE)
                at = data.draw(st.integers(low, last.stat().st_size), label="cut at")
                cut(last, at, data.draw(st.sampled_from([b"", bytes(300), payload(step, 40)]), label="tail"))
                directory = image
                store = open_store(directory, preallocate)
                candidates = [synced.copy()]
                for record in since_sync:
                    candidates.append(candidates[-1].copy())
                    candidates[-1].apply(record)
                state = loaded(store)
                assert state in [c.state() for c in candidates]
                synced = next(c for c in candidates if c.state() == state)
                unsynced, since_sync = synced.copy(), []
                term = max([term, state[0].term] + [e.term for e in state[2]])
            assert loaded(store) == unsynced.state()
        store.close()
        store = open_store(directory, preallocate)
        assert loaded(store) == unsynced.state()
        store.close()
