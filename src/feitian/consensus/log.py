"""The replica's view of its log: stable storage plus the unstable tail not yet persisted (paper §5.3).

:class:`RaftLog` stitches the :class:`~feitian.consensus.storage.Storage` (what the driver has persisted) and
:class:`Unstable` (entries and at most one snapshot handed out in a Ready, not yet acknowledged by
``advance``). ``committed`` and ``applied`` are the two cursors: ``applied <= committed <= last_index()``.
"""

from __future__ import annotations

from feitian.consensus.storage import LogCompactedError, LogUnavailableError, Storage, limit_size
from feitian.consensus.types import Entry, Snapshot
from feitian.errors import InternalError

NO_LIMIT = 2**63 - 1


class Unstable:
    """Entries from ``offset`` on (and maybe an incoming snapshot) that the driver has not yet persisted."""

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.meta.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == index:
                return self.snapshot.meta.term
            return None
        last = self.maybe_last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``(index, term)`` are persisted; ignored if the tail was replaced meanwhile."""
        if self.maybe_term(index) == term and index >= self.offset:
            del self.entries[: index + 1 - self.offset]
            self.offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.meta.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: list[Entry]) -> None:
        after = entries[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif after <= self.offset:
            # Replaces part of the persisted log: the driver will overwrite it from `after` on.
            self.offset = after
            self.entries = list(entries)
        else:
            self.entries = self.entries[: after - self.offset] + list(entries)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    def __init__(self, storage: Storage, *, max_committed_size_per_ready_bytes: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything up to the snapshot is committed and applied (the state machine restarts from it), even
        # when the storage kept a tail of entries before it.
        start = max(first - 1, storage.snapshot().meta.index)
        self.committed = start
        self.applied = start
        self._max_committed_size = max_committed_size_per_ready_bytes

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})"
        )

    # -- indexes and terms ----------------------------------------------------------------------------------

    def first_index(self) -> int:
        index = self.unstable.maybe_first_index()
        return index if index is not None else self.storage.first_index()

    def last_index(self) -> int:
        index = self.unstable.maybe_last_index()
        return index if index is not None else self.storage.last_index()

    def term(self, index: int) -> int | None:
        """The term of entry ``index``; None if it is compacted or beyond the end."""
        term = self.unstable.maybe_term(index)
        if term is not None:
            return term
        if index < self.first_index() - 1 or index > self.last_index():
            return None
        try:
            return self.storage.term(index)
        except (LogCompactedError, LogUnavailableError):
            return None

    def last_term(self) -> int:
        term = self.term(self.last_index())
        if term is None:
            raise InternalError(f"log: no term for last index {self.last_index()}")
        return term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate's log ending at (last_index, last_term) is at least as up to date (§5.4.1)."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # -- appending ------------------------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> int:
        if not entries:
            return self.last_index()
        if entries[0].index - 1 < self.committed:
            raise InternalError(f"log: append at {entries[0].index} would overwrite committed {self.committed}")
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    def maybe_append(self, prev_index: int, prev_term: int, committed: int, entries: tuple[Entry, ...]) -> int | None:
        """Follower side of AppendEntries (§5.3): the index of the last new entry, or None on mismatch."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise InternalError(f"log: entry {conflict} conflicts with committed entry {self.committed}")
            self.append(list(entries[conflict - prev_index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first entry whose term differs from ours (or that we lack); 0 if all are present."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest ``(i, term(i))`` with ``i <= index`` and ``term(i) <= term`` (fast backtracking hint).

        An unknown term (compacted) counts as a possible match and is returned with term 0.
        """
        while index > 0:
            our = self.term(index)
            if our is None:
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    # -- commit and apply -----------------------------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise InternalError(f"log: commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if that entry is of ``term`` (a leader commits only its own term, §5.4.2)."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise InternalError(f"log: applied {index} outside [{self.applied}, {self.committed}]")
        self.applied = index

    def has_next_committed_entries(self) -> bool:
        if self.has_pending_snapshot():
            return False
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def next_committed_entries(self) -> list[Entry]:
        if self.has_pending_snapshot():
            return []
        lo = max(self.applied + 1, self.first_index())
        if self.committed + 1 <= lo:
            return []
        entries = self.slice(lo, self.committed + 1, self._max_committed_size)
        if entries is None:
            raise InternalError(f"log: committed entries from {lo} are compacted")
        return entries

    def committed_entries_after(self, index: int) -> list[Entry]:
        """Committed entries after ``index`` (at most the per-Ready size), for applying ahead of ``applied``."""
        lo = max(index + 1, self.first_index())
        if self.has_pending_snapshot() or self.committed + 1 <= lo:
            return []
        return self.slice(lo, self.committed + 1, self._max_committed_size) or []

    # -- snapshots ------------------------------------------------------------------------------------------

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)

    # -- reading --------------------------------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        return list(self.unstable.entries)

    def entries_from(self, index: int, max_size_bytes: int) -> list[Entry] | None:
        """Entries from ``index`` to the end, size-limited; None if ``index`` is compacted."""
        if index > self.last_index():
            return []
        return self.slice(index, self.last_index() + 1, max_size_bytes)

    def slice(self, lo: int, hi: int, max_size_bytes: int) -> list[Entry] | None:
        """Entries ``[lo, hi)``, size-limited (at least one); None if ``lo`` is compacted."""
        if lo > hi:
            raise InternalError(f"log: invalid slice [{lo}, {hi})")
        if lo < self.first_index():
            return None
        if hi > self.last_index() + 1:
            raise InternalError(f"log: slice [{lo}, {hi}) beyond last index {self.last_index()}")
        if lo == hi:
            return []
        entries: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            stop = min(hi, offset)
            try:
                stored = self.storage.entries(lo, stop, max_size_bytes)
            except LogCompactedError:
                return None
            except LogUnavailableError as exc:
                raise InternalError(f"log: storage lacks entries [{lo}, {stop}): {exc}") from exc
            if len(stored) < stop - lo:
                return stored  # size limit reached
            entries = stored
        if hi > offset:
            entries = entries + self.unstable.slice(max(lo, offset), hi)
        return limit_size(entries, max_size_bytes)
