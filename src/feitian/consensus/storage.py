"""The log storage the core reads from, and an in-memory implementation (etcd's ``Storage``/``MemoryStorage``).

**Who writes, who reads.** The core only *reads* storage (:class:`Storage`). The driver *writes* it, from each
:class:`~feitian.consensus.rawnode.Ready`, in this order, before sending that Ready's messages:

1. ``ready.snapshot`` (if any): replace everything with it (:meth:`MemoryStorage.apply_snapshot`);
2. ``ready.entries``: append them; an entry at an index that already exists replaces it and every later one;
3. ``ready.hard_state`` (if any): record it.

Then ``advance(ready)``. The application compacts the log when it likes: save a snapshot of its state machine
at an *applied* index (:meth:`MemoryStorage.create_snapshot`, with ``RawNode.conf_state`` taken right after
``advance``) and drop the entries up to some index at or below it (:meth:`MemoryStorage.compact`).

**The read interface** (what a disk-backed storage must implement, all synchronous and cheap enough to call
while stepping — keep an in-memory index of the on-disk log):

* ``initial_state()`` -> ``(HardState, ConfState)``: persisted hard state; the ConfState of the latest snapshot.
* ``first_index()``: index of the first entry still available (``snapshot.meta.index + 1``).
* ``last_index()``: index of the last entry (``snapshot.meta.index`` when the log is empty).
* ``term(i)``: term of entry ``i``, for ``first_index() - 1 <= i <= last_index()`` (``first_index() - 1`` is
  the snapshot's index and term). Below: :class:`LogCompactedError`; above: :class:`LogUnavailableError`.
* ``entries(lo, hi, max_size_bytes)``: entries ``[lo, hi)``, stopping once their total size
  (:func:`entry_size_bytes`) would exceed ``max_size_bytes`` — but always at least one entry. ``lo`` below
  ``first_index()``: :class:`LogCompactedError`; ``hi`` above ``last_index() + 1``: :class:`LogUnavailableError`.
* ``snapshot()``: the latest snapshot (sent to followers that fell behind the compacted log; read once at
  startup too: the applied index starts at its index).
"""

from __future__ import annotations

from typing import Protocol

from feitian.consensus.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from feitian.errors import ConflictError, InvalidArgumentError
from feitian.errors import LogCompactedError as LogCompactedError  # defined in feitian.errors, re-exported here
from feitian.errors import LogUnavailableError as LogUnavailableError

# Size charged per entry on top of its data, roughly its encoded header.
ENTRY_OVERHEAD_BYTES = 16


def entry_size_bytes(entry: Entry) -> int:
    return len(entry.data) + ENTRY_OVERHEAD_BYTES


def limit_size(entries: list[Entry], max_size_bytes: int) -> list[Entry]:
    """The longest prefix within ``max_size_bytes``, but at least one entry."""
    if not entries:
        return entries
    size = entry_size_bytes(entries[0])
    for i in range(1, len(entries)):
        size += entry_size_bytes(entries[i])
        if size > max_size_bytes:
            return entries[:i]
    return entries


class Storage(Protocol):
    """What the consensus core reads. See the module docstring for the contract of each method."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int: ...

    def entries(self, lo: int, hi: int, max_size_bytes: int) -> list[Entry]: ...

    def snapshot(self) -> Snapshot: ...


def bootstrap(voters: tuple[int, ...], learners: tuple[int, ...] = ()) -> tuple[Snapshot, HardState]:
    """The initial durable state of each founding replica of a new cluster.

    A snapshot at index 1, term 1 carrying the first membership, and the matching hard state. Persist both
    (``apply_snapshot`` then ``set_hard_state``) on every founding replica before creating its RawNode.
    Replicas added later start from empty storage: the leader sends them a snapshot or the log.
    """
    if not voters:
        raise InvalidArgumentError("bootstrap: a cluster needs at least one voter")
    conf = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
    return Snapshot(meta=SnapshotMeta(index=1, term=1, conf=conf)), HardState(term=1, vote=0, commit=1)


class MemoryStorage:
    """A :class:`Storage` kept in memory, plus the write methods a driver calls.

    Used by tests and the simulator as the replica's "disk": whatever was written here survives a simulated
    crash. ``_entries[0]`` is a dummy entry holding the snapshot's index and term.
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot(meta=SnapshotMeta(index=0, term=0, conf=ConfState()))
        self._entries: list[Entry] = [Entry(term=0, index=0)]

    # -- read interface -------------------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.meta.conf

    def first_index(self) -> int:
        return self._entries[0].index + 1

    def last_index(self) -> int:
        return self._entries[0].index + len(self._entries) - 1

    def term(self, index: int) -> int:
        offset = self._entries[0].index
        if index < offset:
            raise LogCompactedError(f"term of entry {index}: compacted (snapshot at {offset})")
        if index - offset >= len(self._entries):
            raise LogUnavailableError(f"term of entry {index}: beyond last index {self.last_index()}")
        return self._entries[index - offset].term

    def entries(self, lo: int, hi: int, max_size_bytes: int) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise LogCompactedError(f"entries [{lo}, {hi}): compacted (snapshot at {offset})")
        if hi > self.last_index() + 1:
            raise LogUnavailableError(f"entries [{lo}, {hi}): beyond last index {self.last_index()}")
        return limit_size(self._entries[lo - offset : hi - offset], max_size_bytes)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    # -- write interface (the driver) ----------------------------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (from ``Ready.snapshot`` or :func:`bootstrap`)."""
        if snapshot.meta.index < self._snapshot.meta.index:
            raise ConflictError(
                f"apply snapshot {snapshot.meta.index}: older than snapshot {self._snapshot.meta.index}"
            )
        self._snapshot = snapshot
        self._entries = [Entry(term=snapshot.meta.term, index=snapshot.meta.index)]

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """Append ``entries`` (from ``Ready.entries``), replacing any existing entry at or after the first."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return  # all compacted already
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._entries[0].index
        if offset > len(self._entries):
            raise InvalidArgumentError(
                f"append entries from {entries[0].index}: gap after last index {self.last_index()}"
            )
        del self._entries[offset:]
        self._entries.extend(entries)

    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> Snapshot:
        """Record the application's snapshot at ``index`` (<= applied); does not drop entries (see compact)."""
        if index <= self._snapshot.meta.index:
            raise ConflictError(f"create snapshot {index}: not newer than snapshot {self._snapshot.meta.index}")
        if index > self.last_index():
            raise InvalidArgumentError(f"create snapshot {index}: beyond last index {self.last_index()}")
        term = self._entries[index - self._entries[0].index].term
        self._snapshot = Snapshot(meta=SnapshotMeta(index=index, term=term, conf=conf), data=data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop the entries before ``index``, which becomes the dummy entry (a snapshot must cover it)."""
        offset = self._entries[0].index
        if index <= offset:
            return
        if index > self.last_index():
            raise InvalidArgumentError(f"compact to {index}: beyond last index {self.last_index()}")
        if index > self._snapshot.meta.index:
            raise InvalidArgumentError(f"compact to {index}: beyond snapshot {self._snapshot.meta.index}")
        self._entries = self._entries[index - offset :]
