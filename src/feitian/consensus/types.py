"""Data types shared by the consensus core, its durable storage and its driver.

These are the contract between ``feitian.consensus`` (pure), ``feitian.runtime`` (the write-ahead log and
snapshot files) and the asyncio driver. Fields may be added with defaults; existing fields keep their meaning.
"""

from __future__ import annotations

import enum

import msgspec


class EntryKind(enum.IntEnum):
    NORMAL = 0  # application data
    CONF_CHANGE = 1  # membership change; data is an encoded ConfChange
    NOOP = 2  # the empty entry a new leader appends to commit entries of earlier terms


class Entry(msgspec.Struct, frozen=True, array_like=True):
    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


class HardState(msgspec.Struct, frozen=True, array_like=True):
    """What a replica must persist before it sends any message that depends on it."""

    term: int = 0
    vote: int = 0  # 0 = voted for nobody this term; replica ids are >= 1
    commit: int = 0


class ConfState(msgspec.Struct, frozen=True, array_like=True):
    """Membership. ``voters_outgoing`` is non-empty only during a joint-consensus transition."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    voters_outgoing: tuple[int, ...] = ()


class SnapshotMeta(msgspec.Struct, frozen=True, array_like=True):
    index: int
    term: int
    conf: ConfState


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    meta: SnapshotMeta
    data: bytes = b""
