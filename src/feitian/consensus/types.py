"""Data types shared by the consensus core, its durable storage and its driver.

These are the contract between ``feitian.consensus`` (pure), ``feitian.runtime`` (the write-ahead log and
snapshot files) and the asyncio driver. Fields may be added with defaults; existing fields keep their meaning.
"""

from __future__ import annotations

import enum

import msgspec

from feitian.errors import DataCorruptionError


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
    """Membership. ``voters_outgoing`` is non-empty only during a joint-consensus transition.

    ``learners_next`` holds voters being demoted to learners in a joint configuration: they still vote in the
    outgoing half and become learners when the joint configuration is left. ``auto_leave`` says the leader
    leaves the joint configuration on its own once it is applied (see :class:`ConfChangeTransition`).
    """

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    voters_outgoing: tuple[int, ...] = ()
    learners_next: tuple[int, ...] = ()
    auto_leave: bool = False


class SnapshotMeta(msgspec.Struct, frozen=True, array_like=True):
    index: int
    term: int
    conf: ConfState


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    meta: SnapshotMeta
    data: bytes = b""


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0  # add a voter, or promote a learner
    ADD_LEARNER = 1  # add a learner, or demote a voter
    REMOVE = 2  # remove a voter or a learner


class ConfChangeTransition(enum.IntEnum):
    """How a :class:`ConfChange` is carried out (Ongaro's thesis §4.3, joint consensus).

    AUTO: a change of at most one voter is applied directly ("simple"); anything else goes through a joint
    configuration that the leader leaves on its own. JOINT_IMPLICIT: always joint, left automatically.
    JOINT_EXPLICIT: always joint; the application leaves it by proposing an empty ``ConfChange()``.
    """

    AUTO = 0
    JOINT_IMPLICIT = 1
    JOINT_EXPLICIT = 2


class ConfChangeSingle(msgspec.Struct, frozen=True, array_like=True):
    type: ConfChangeType
    node_id: int


class ConfChange(msgspec.Struct, frozen=True, array_like=True):
    """A membership change, the payload of a ``CONF_CHANGE`` entry. ``ConfChange()`` leaves a joint config."""

    changes: tuple[ConfChangeSingle, ...] = ()
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    context: bytes = b""  # opaque to the core (for example the address of an added replica)

    def leaves_joint(self) -> bool:
        return not self.changes and self.transition == ConfChangeTransition.AUTO

    def enters_joint(self) -> tuple[bool, bool]:
        """``(enters_joint, auto_leave)``."""
        joint = self.transition != ConfChangeTransition.AUTO or len(self.changes) > 1
        auto_leave = self.transition in (ConfChangeTransition.AUTO, ConfChangeTransition.JOINT_IMPLICIT)
        return joint, auto_leave

    def encode(self) -> bytes:
        return msgspec.msgpack.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        try:
            return msgspec.msgpack.decode(data, type=cls)
        except msgspec.DecodeError as exc:
            raise DataCorruptionError(f"decode conf change: {exc}") from exc
