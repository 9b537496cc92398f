"""Change events, selectors, and the bounded history a watcher resumes from (NUWA-5).

Every tree-changing command takes the next revision and yields one :class:`Event` per node it changed, all with
that revision, so revisions are dense: each revision in ``1..current`` has at least one event. A watcher that
has seen everything up to revision ``r`` asks ``events_since(r, selector)`` and gets either every matching
event after ``r`` (whole revisions, in order) or :class:`Compacted` when events after ``r`` are no longer kept:
it then reloads the current state (reads return their revision ``R``) and resumes from ``R``.
"""

from __future__ import annotations

import enum

import msgspec

from feitian.coord.core.paths import is_directory, parent_of
from feitian.errors import InvalidArgumentError

__all__ = [
    "EVENT_OVERHEAD_BYTES",
    "Compacted",
    "Event",
    "EventBatch",
    "EventHistory",
    "EventKind",
    "Selector",
    "SelectorKind",
]

EVENT_OVERHEAD_BYTES = 64  # what an event costs in the history besides its path


class EventKind(enum.StrEnum):
    CREATED = "created"
    CHANGED = "changed"  # a file's value was set
    DELETED = "deleted"  # deleted by a client, or with its session (ephemeral)


class Event(msgspec.Struct, frozen=True, array_like=True, gc=False):
    revision: int
    kind: EventKind
    path: str

    @property
    def parent(self) -> str:
        """The directory the node is in: what a children watch of that directory matches."""
        return parent_of(self.path)


class SelectorKind(enum.StrEnum):
    NODE = "node"  # events of exactly this path
    CHILDREN = "children"  # the directory itself and its direct entries
    SUBTREE = "subtree"  # the directory and everything below it


class Selector(msgspec.Struct, frozen=True):
    kind: SelectorKind
    path: str

    @classmethod
    def node(cls, path: str) -> Selector:
        return cls(SelectorKind.NODE, path)

    @classmethod
    def children(cls, path: str) -> Selector:
        return cls(SelectorKind.CHILDREN, path)

    @classmethod
    def subtree(cls, path: str) -> Selector:
        return cls(SelectorKind.SUBTREE, path)

    def check(self) -> None:
        """Raise InvalidArgumentError unless the selector is usable (paths are validated by the caller)."""
        if self.kind is not SelectorKind.NODE and not is_directory(self.path):
            raise InvalidArgumentError(
                f"watch {self.kind} {self.path}: a {self.kind} selector needs a directory path (ending with '/')"
            )

    def matches(self, event: Event) -> bool:
        if self.kind is SelectorKind.NODE:
            return event.path == self.path
        if self.kind is SelectorKind.CHILDREN:
            return event.path == self.path or (event.path != "/" and event.parent == self.path)
        return event.path.startswith(self.path)


class EventBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Matching events with revisions in ``(since, through_revision]``. ``more``: revisions after
    ``through_revision`` exist — ask again from there."""

    events: tuple[Event, ...]
    through_revision: int
    more: bool = False


class Compacted(msgspec.Struct, frozen=True, kw_only=True):
    """Events after ``since`` are gone (kept only after ``compacted_through``): reload the state, resume from the
    revision the reads return."""

    since: int
    compacted_through: int
    current_revision: int


class EventHistory:
    """The last events, bounded by ``max_events`` and ``max_bytes`` (whole revisions are dropped, oldest first;
    the newest revision is always kept). Deterministic: it is derived from applied commands only."""

    def __init__(self, max_events: int, max_bytes: int, revision: int = 0) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._groups: list[tuple[Event, ...]] = []  # revision first_revision + i at index head + i
        self._head = 0
        self._first_revision = revision + 1
        self._revision = revision
        self._events = 0
        self._bytes = 0

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_through(self) -> int:
        """Events of revisions up to this one are no longer kept."""
        return self._first_revision - 1

    def __len__(self) -> int:
        return self._events

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def append(self, revision: int, events: tuple[Event, ...]) -> None:
        if revision != self._revision + 1 or not events:
            raise InvalidArgumentError(f"event history: revision {revision} after {self._revision}, or no events")
        self._groups.append(events)
        self._revision = revision
        self._events += len(events)
        self._bytes += _size(events)
        while (self._events > self.max_events or self._bytes > self.max_bytes) and len(self._groups) - self._head > 1:
            dropped = self._groups[self._head]
            self._head += 1
            self._first_revision += 1
            self._events -= len(dropped)
            self._bytes -= _size(dropped)
        if self._head > 1024 and self._head * 2 > len(self._groups):
            del self._groups[: self._head]
            self._head = 0

    def events_since(
        self, since: int, selector: Selector | None = None, *, limit: int = 10_000
    ) -> EventBatch | Compacted:
        """Events matching ``selector`` (all if None) with revision > ``since``, whole revisions at a time, until at
        least ``limit`` events are collected. ``since`` beyond the current revision (a replica behind its
        watcher) gives an empty batch through ``since``."""
        if since < 0 or limit < 1:
            raise InvalidArgumentError(f"watch: since must be >= 0 and limit >= 1, got {since} and {limit}")
        if since < self.compacted_through:
            return Compacted(since=since, compacted_through=self.compacted_through, current_revision=self._revision)
        if since >= self._revision:
            return EventBatch(events=(), through_revision=since)
        out: list[Event] = []
        start = self._head + since + 1 - self._first_revision
        through = since
        for index in range(start, len(self._groups)):
            group = self._groups[index]
            through = group[0].revision
            out.extend(group if selector is None else (e for e in group if selector.matches(e)))
            if len(out) >= limit:
                break
        return EventBatch(events=tuple(out), through_revision=through, more=through < self._revision)

    def export(self) -> tuple[int, list[tuple[Event, ...]]]:
        """(compacted_through, groups): what a snapshot stores."""
        return self.compacted_through, self._groups[self._head :]

    @classmethod
    def restore(
        cls, max_events: int, max_bytes: int, compacted_through: int, groups: list[tuple[Event, ...]]
    ) -> EventHistory:
        history = cls(max_events, max_bytes, compacted_through)
        for group in groups:
            revision = group[0].revision if group else -1
            if any(e.revision != revision for e in group):
                raise InvalidArgumentError(f"event history: a group mixes revisions ({revision}...)")
            history.append(revision, group)
        return history


def _size(events: tuple[Event, ...]) -> int:
    return sum(len(e.path) + EVENT_OVERHEAD_BYTES for e in events)
