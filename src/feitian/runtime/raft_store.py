"""Durable storage of one Raft replica: a write-ahead log of entries and hard states, plus snapshot files.

Layout of the store directory::

    wal/   segments of the write-ahead log (feitian.runtime.wal), records of four kinds:
             1 ENTRY       msgpack of consensus.types.Entry
             2 HARD_STATE  msgpack of consensus.types.HardState
             3 SNAPSHOT    msgpack of consensus.types.SnapshotMeta: the log is replaced by this snapshot
             4 COMPACTION  msgpack of consensus.types.SnapshotMeta: entries up to it are now in this snapshot
    snap/  snap-<term:016x>-<index:016x>.snap (feitian.runtime.raft_store_snapshots)

The driver calls :meth:`RaftStore.save` with what a Ready asks to persist, then :meth:`RaftStore.sync` before
sending messages. ``save`` writes the snapshot file (if any) durably at once, then buffers a SNAPSHOT marker,
the entries and the hard state, in that order: a crash can only lose a suffix of that, and a hard state
survives only with the entries its commit index refers to. The application compacts with
:meth:`RaftStore.compact` and a snapshot of its state machine at an applied index.

Replay (on :meth:`open`) applies the records in order with the rules the live store uses (:class:`_Log`):

* ENTRY at index i: entries >= i are dropped and the entry appended (etcd semantics: a conflicting suffix is
  replaced); entries at or below the snapshot index are ignored.
* HARD_STATE: the latest one wins.
* SNAPSHOT (index i): the log is emptied and now starts after i (a snapshot received from the leader, which
  replaces everything, as in etcd's ``MemoryStorage.apply_snapshot``).
* COMPACTION (index i): the log now starts after i; entries after i are kept (``compact`` checked that the
  log held entry i with the snapshot's term). A COMPACTION at or below the current snapshot changes nothing.

Each WAL segment is labelled "last index + 1" when it is cut and opens with a preamble that repeats the
current snapshot (as a COMPACTION) and HARD_STATE, so once a snapshot at index i is durable every segment
wholly below i + 1 is deleted (:meth:`WAL.release_before`), and so are older snapshot files. Replay of what
remains may start with entries above the snapshot of the first preamble; the final snapshot marker must cover
that hole, or loading fails with DataCorruptionError. The snapshot loaded is the one the last marker names: a
newer file whose marker never became durable is an orphan of a crash and is deleted.

Not thread-safe: one driver owns a store. From asyncio, run ``save``/``sync`` on a worker thread.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from feitian.consensus import Entry, HardState, Snapshot, SnapshotMeta
from feitian.errors import DataCorruptionError, FeitianError, InvalidArgumentError, UnavailableError
from feitian.runtime.files import ensure_dir, remove_durably, translating
from feitian.runtime.raft_store_snapshots import list_snapshots, read_snapshot, snapshot_name, write_snapshot
from feitian.runtime.wal import DEFAULT_SEGMENT_SIZE_BYTES, WAL, Preallocate, Recovered
from feitian.runtime.wal_format import Record

__all__ = ["KIND_COMPACTION", "KIND_ENTRY", "KIND_HARD_STATE", "KIND_SNAPSHOT", "RaftState", "RaftStore"]

_log = logging.getLogger(__name__)

KIND_ENTRY = 1
KIND_HARD_STATE = 2
KIND_SNAPSHOT = 3
KIND_COMPACTION = 4

_ENCODER = msgspec.msgpack.Encoder()
_ENTRY_DECODER = msgspec.msgpack.Decoder(Entry)
_HARD_STATE_DECODER = msgspec.msgpack.Decoder(HardState)
_META_DECODER = msgspec.msgpack.Decoder(SnapshotMeta)
_EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True)
class RaftState:
    """What :meth:`RaftStore.load` returns: the durable state of the replica."""

    hard_state: HardState
    snapshot: Snapshot | None
    entries: list[Entry]  # contiguous, starting just after the snapshot (or at 1)


@dataclass
class _Log:
    """The replay state machine, used both when replaying records and when saving new ones."""

    hard_state: HardState = _EMPTY_HARD_STATE
    base: SnapshotMeta | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def base_index(self) -> int:
        return self.base.index if self.base is not None else 0

    @property
    def first_index(self) -> int:
        return self.entries[0].index if self.entries else self.base_index + 1

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.base_index

    @property
    def hole(self) -> bool:
        """True if entries are missing between the snapshot and the first entry held."""
        return self.first_index != self.base_index + 1

    def term(self, index: int) -> int | None:
        if self.base is not None and index == self.base.index:
            return self.base.term
        if self.first_index <= index <= self.last_index:
            return self.entries[index - self.first_index].term
        return None

    def append(self, entry: Entry) -> None:
        if entry.index <= self.base_index:
            return  # covered by the snapshot
        if self.first_index <= entry.index <= self.last_index + 1:
            del self.entries[entry.index - self.first_index :]
            self.entries.append(entry)
        else:  # the records before this one went with released segments: a hole the snapshot must cover
            self.entries = [entry]

    def restore(self, meta: SnapshotMeta) -> None:
        """A snapshot from the leader: it replaces the whole log."""
        self.entries = []
        self.base = meta

    def compact(self, meta: SnapshotMeta) -> None:
        """A local snapshot: entries up to it are dropped, later ones kept.

        No term check here: the live store checked that the log holds the snapshot's entry, and on replay
        the entry may have gone with a released segment (the log then starts just after the snapshot).
        """
        if meta.index <= self.base_index:
            return  # a preamble repeating the current snapshot
        self.entries = self.entries[max(0, meta.index - self.first_index + 1) :]
        self.base = meta


class RaftStore:
    """Disk-backed Raft storage in one directory. Create with :meth:`open`; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._snap_dir = directory / "snap"
        self._log = _Log()
        self._wal: WAL | None = None
        self._failed: FeitianError | None = None
        self._compacted_index = 0

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES,
        preallocate: Preallocate = Preallocate.FALLOCATE,
    ) -> RaftStore:
        """Open (creating if needed) the store in ``directory`` and replay it.

        Raises DataCorruptionError (naming the file and offset) if anything durable is damaged.
        """
        root = ensure_dir(directory)
        store = cls(root)
        ensure_dir(store._snap_dir)
        wal, records = WAL.open(
            root / "wal",
            segment_size_bytes=segment_size_bytes,
            preallocate=preallocate,
            segment_start=store._segment_start,
        )
        try:
            store._replay(records)
            store._remove_stale_snapshots(keep_orphans=False)
        except BaseException:
            wal.close()
            raise
        store._wal = wal
        store._compacted_index = store._log.base_index
        return store

    def _replay(self, records: list[Recovered]) -> None:
        log = self._log
        for record in records:
            try:
                if record.kind == KIND_ENTRY:
                    log.append(_ENTRY_DECODER.decode(record.data))
                elif record.kind == KIND_HARD_STATE:
                    log.hard_state = _HARD_STATE_DECODER.decode(record.data)
                elif record.kind == KIND_SNAPSHOT:
                    log.restore(_META_DECODER.decode(record.data))
                elif record.kind == KIND_COMPACTION:
                    log.compact(_META_DECODER.decode(record.data))
                else:
                    raise _corrupt(record, f"unknown record kind {record.kind} (written by a newer version?)")
            except msgspec.DecodeError as exc:
                raise _corrupt(record, f"undecodable record of kind {record.kind}: {exc}") from exc
        where = f"raft store open {self.directory}"
        if log.hole:
            raise DataCorruptionError(
                f"{where}: entries {log.base_index + 1}..{log.first_index - 1} are missing from the log",
                path=str(self.directory / "wal"),
            )
        if log.hard_state.commit > log.last_index:
            raise DataCorruptionError(
                f"{where}: hard state commit {log.hard_state.commit} is past the last entry {log.last_index}",
                path=str(self.directory / "wal"),
            )
        if log.base is not None:
            path = self._snap_dir / snapshot_name(log.base.term, log.base.index)
            if not path.exists():
                what = f"snapshot file {path} named by the log is missing"
                raise DataCorruptionError(f"{where}: {what}", path=str(path))

    # -- reading -------------------------------------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._log.hard_state

    @property
    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._log.base

    @property
    def first_index(self) -> int:
        """Index of the first entry held (snapshot index + 1)."""
        return self._log.first_index

    @property
    def last_index(self) -> int:
        """Index of the last entry held, or the snapshot index if none is."""
        return self._log.last_index

    def load(self) -> RaftState:
        """The saved state (unsynced saves included): hard state, snapshot (read and verified from its file)
        and the entries after it."""
        self._check_usable()
        base = self._log.base
        snapshot = None
        if base is not None:
            snapshot = read_snapshot(self._snap_dir / snapshot_name(base.term, base.index))
        return RaftState(self._log.hard_state, snapshot, list(self._log.entries))

    # -- writing -------------------------------------------------------------------------------------------

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist what a Ready asks for; durable after the next :meth:`sync`.

        ``snapshot`` (from the leader) replaces the whole log; its file is written and fsynced before this
        returns. ``entries`` must be contiguous, may overwrite a suffix of the log (an entry at index i
        replaces every entry >= i) but not a committed entry, and must not leave a gap; entries at or below
        the snapshot are ignored. Raises InvalidArgumentError for a Ready that breaks these rules.
        """
        wal = self._check_usable()
        log = self._log
        meta = snapshot.meta if snapshot is not None else None
        if meta is not None and meta.index <= log.base_index:
            if meta != log.base:
                raise InvalidArgumentError(
                    f"raft store save: snapshot index={meta.index} term={meta.term} is not newer than the "
                    f"current snapshot index={log.base_index}"
                )
            meta = None  # the current snapshot again
        base_index = meta.index if meta is not None else log.base_index
        new = [e for e in entries if e.index > base_index]
        _validate_entries(new, base_index if meta is not None else log.last_index, log.hard_state.commit)
        records: list[Record] = []
        if meta is not None and snapshot is not None:
            write_snapshot(self._snap_dir, snapshot)
            records.append(Record(KIND_SNAPSHOT, _ENCODER.encode(meta)))
        records.extend(Record(KIND_ENTRY, _ENCODER.encode(e)) for e in new)
        if hard_state is not None:
            records.append(Record(KIND_HARD_STATE, _ENCODER.encode(hard_state)))
        wal.append(records)
        if meta is not None:
            log.restore(meta)
        for entry in new:
            log.append(entry)
        if hard_state is not None:
            log.hard_state = hard_state

    def compact(self, snapshot: Snapshot) -> None:
        """Replace the entries up to ``snapshot.meta.index`` (an applied index held in the log) by
        ``snapshot``: write its file, sync, then delete the log segments and snapshot files it makes
        unnecessary. Entries after the snapshot are kept."""
        wal = self._check_usable()
        meta = snapshot.meta
        if meta.index <= self._log.base_index:
            return
        self._check_compactable(meta)
        write_snapshot(self._snap_dir, snapshot)
        self._record_compaction(wal, meta)

    @property
    def snapshot_dir(self) -> Path:
        """Where snapshot files live. Another thread or process may write one there (``write_snapshot``) while
        this store goes on; :meth:`compact_to_written` then makes it the store's snapshot."""
        return self._snap_dir

    def snapshot_path(self, meta: SnapshotMeta) -> Path:
        return self._snap_dir / snapshot_name(meta.term, meta.index)

    def compact_to_written(self, meta: SnapshotMeta) -> None:
        """As :meth:`compact`, for a snapshot whose file is already written durably (and was read back and
        checked by the caller): only the log is compacted."""
        wal = self._check_usable()
        if meta.index <= self._log.base_index:
            return
        if not self.snapshot_path(meta).is_file():
            raise InvalidArgumentError(f"raft store compact: no snapshot file {self.snapshot_path(meta)}")
        self._check_compactable(meta)
        self._record_compaction(wal, meta)

    def _check_compactable(self, meta: SnapshotMeta) -> None:
        if self._log.term(meta.index) != meta.term:
            raise InvalidArgumentError(
                f"raft store compact: the log does not hold entry {meta.index} with term {meta.term} "
                f"(it holds {self._log.first_index}..{self._log.last_index})"
            )
        if meta.index > self._log.hard_state.commit:
            raise InvalidArgumentError(
                f"raft store compact: snapshot index {meta.index} is past the commit index "
                f"{self._log.hard_state.commit}"
            )

    def _record_compaction(self, wal: WAL, meta: SnapshotMeta) -> None:
        wal.append([Record(KIND_COMPACTION, _ENCODER.encode(meta))])
        self._log.compact(meta)
        self.sync()

    def sync(self) -> None:
        """Make every save durable (one fdatasync), then drop log segments and snapshot files a durable
        snapshot has made unnecessary. After a failed sync the store must be closed and reopened."""
        wal = self._check_usable()
        try:
            wal.sync()
        except FeitianError as exc:
            # The saves that were dropped are still in memory: only a reopen brings memory and disk together.
            self._failed = exc
            raise
        if self._log.base_index > self._compacted_index:
            self._compact()

    def _compact(self) -> None:
        base_index = self._log.base_index
        wal = self._check_usable()
        try:
            released = wal.release_before(base_index + 1)
            self._remove_stale_snapshots(keep_orphans=True)
        except FeitianError as exc:  # nothing is lost by keeping old files; try again after the next sync
            _log.warning("raft store %s: compaction to %d failed: %s", self.directory, base_index, exc)
            return
        _log.debug("raft store %s: compacted to %d, released %d", self.directory, base_index, released)
        self._compacted_index = base_index

    def _remove_stale_snapshots(self, *, keep_orphans: bool) -> None:
        """Delete snapshot files older than the current snapshot, and newer ones unless ``keep_orphans``."""
        base = self._log.base
        current = (base.term, base.index) if base is not None else None
        stale = [
            f.path
            for f in list_snapshots(self._snap_dir)
            if (f.term, f.index) != current and (not keep_orphans or base is None or f.index < base.index)
        ]
        with translating("list", self._snap_dir):
            stale += [self._snap_dir / n for n in os.listdir(self._snap_dir) if n.endswith(".tmp")]
        if stale:
            remove_durably(stale)

    def _segment_start(self) -> tuple[int, list[Record]]:
        """The WAL's cut hook: label a new segment "last index + 1" and open it with the current state."""
        preamble = []
        if self._log.base is not None:
            preamble.append(Record(KIND_COMPACTION, _ENCODER.encode(self._log.base)))
        if self._log.hard_state != _EMPTY_HARD_STATE:
            preamble.append(Record(KIND_HARD_STATE, _ENCODER.encode(self._log.hard_state)))
        return self._log.last_index + 1, preamble

    def close(self) -> None:
        """Sync what was saved (unless an earlier sync failed) and close the files."""
        wal, self._wal = self._wal, None
        if wal is not None:
            wal.close()

    def _check_usable(self) -> WAL:
        if self._wal is None:
            raise UnavailableError(f"raft store {self.directory}: closed")
        if self._failed is not None:
            raise UnavailableError(
                f"raft store {self.directory}: unusable after a failed sync: {self._failed.message}",
                hint="close and reopen the store to continue from what is durable",
                **self._failed.fields,
            )
        return self._wal


def _validate_entries(entries: Sequence[Entry], last_index: int, commit: int) -> None:
    if not entries:
        return
    where = "raft store save"
    first = entries[0].index
    if first > last_index + 1:
        raise InvalidArgumentError(f"{where}: entry {first} leaves a gap after the last entry {last_index}")
    if first <= commit:
        what = f"entry {first} would overwrite committed entries (commit {commit})"
        raise InvalidArgumentError(f"{where}: {what}")
    for before, after in itertools.pairwise(entries):
        if after.index != before.index + 1:
            raise InvalidArgumentError(f"{where}: entries not contiguous ({before.index} then {after.index})")


def _corrupt(record: Recovered, what: str) -> DataCorruptionError:
    return DataCorruptionError(
        f"raft store replay {record.path} at offset {record.offset}: {what}",
        path=record.path,
        offset=record.offset,
    )
