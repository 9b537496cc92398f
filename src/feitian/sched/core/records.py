"""Typed records of the scheduling core: what goes in (specs and the incremental protocol's messages) and what
comes out (effects for the FuxiMaster service to carry out).

Inputs from an application master carry a per-application sequence number ``seq`` (FUXI-3):
:class:`DemandDelta` (declare a unit on first use, then change its outstanding count), :class:`ReturnGrants`,
and :class:`DemandSnapshot` (the full state, answering :class:`AskResync`). Effects: :class:`SendGrant`,
:class:`Preempt` (a notice: return this grant before ``deadline_ns``), :class:`Revoke` (the grant is gone; the
service kills its processes) and :class:`AskResync`.
"""

from __future__ import annotations

import enum

import msgspec

from feitian.sched.core.resources import Shape

__all__ = [
    "AppSpec",
    "AskResync",
    "DemandDelta",
    "DemandSnapshot",
    "Effect",
    "Grant",
    "Locality",
    "MachineSpec",
    "Preempt",
    "PreemptReason",
    "ReturnGrants",
    "Revoke",
    "RevokeReason",
    "SendGrant",
    "UnitDemand",
    "UnitSpec",
]


class Locality(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a unit would like to run: the listed machines, then (after a wait) their racks and the listed racks,
    then (after another wait) anywhere. Both empty: anywhere at once."""

    machines: tuple[str, ...] = ()
    racks: tuple[str, ...] = ()


class UnitSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one unit of demand is: a shape and a locality preference (its priority is its application's)."""

    shape: Shape
    locality: Locality = Locality()


class MachineSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A machine as its Tubo reports it: name, rack, capacity over per-machine resources."""

    name: str
    rack: str
    capacity: dict[str, int]


class AppSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A submitted application (hard state): its priority (smaller = higher) and quota group."""

    name: str
    priority: int
    group: str = "default"


# -- the incremental protocol (application master -> FuxiMaster) ----------------------------------------------------


class DemandDelta(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """Change the outstanding count of one unit by ``delta`` ("+1000", "-200"). ``spec`` declares the unit the
    first time it is named and must be equal (or None) afterwards. A negative delta cancels at most what is
    still outstanding (grants already sent are returned with :class:`ReturnGrants`)."""

    app: str
    seq: int
    unit: str
    delta: int
    spec: UnitSpec | None = None


class ReturnGrants(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    app: str
    seq: int
    grant_ids: tuple[int, ...]


class UnitDemand(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    unit: str
    spec: UnitSpec
    outstanding: int


class DemandSnapshot(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """The application master's full state: its units with their outstanding counts, and the grants it holds.

    Accepted when ``seq`` is at least the next expected one (the stream restarts after it). Units not listed have
    no outstanding demand any more. A grant of this application with an id up to ``last_grant_seen`` that is not
    in ``held`` counts as returned; later grants were possibly still in flight and are kept.
    """

    app: str
    seq: int
    units: tuple[UnitDemand, ...]
    held: tuple[int, ...]
    last_grant_seen: int


# -- records and effects --------------------------------------------------------------------------------------------


class Grant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The right to use ``shape`` on ``machine`` for one unit of an application; the only way to run anything."""

    grant_id: int
    app: str
    unit: str
    machine: str
    shape: Shape
    priority: int
    group: str


class PreemptReason(enum.Enum):
    PRIORITY = "priority"  # urgent work of a higher priority needs the resources
    RECLAIM = "reclaim"  # the grant was on loan and the lending group needs its quota back


class RevokeReason(enum.Enum):
    PREEMPTED = "preempted"  # the notice's deadline passed
    MACHINE_LOST = "machine_lost"  # no heartbeat within heartbeat_timeout_ns
    MACHINE_REMOVED = "machine_removed"
    APP_FINISHED = "app_finished"


class SendGrant(msgspec.Struct, frozen=True, tag=True):
    grant: Grant


class Preempt(msgspec.Struct, frozen=True, tag=True):
    """Notice to the grant's application: return it before ``deadline_ns`` or it is revoked then (the service
    sends SIGTERM to its processes, and SIGKILL after their grace period)."""

    grant: Grant
    deadline_ns: int
    reason: PreemptReason


class Revoke(msgspec.Struct, frozen=True, tag=True):
    """The grant is gone and its resources free; the owner is told, the service kills what still runs on it."""

    grant: Grant
    reason: RevokeReason


class AskResync(msgspec.Struct, frozen=True, tag=True):
    """A DemandDelta or ReturnGrants arrived out of sequence (a gap: a message was lost; or a duplicate): the
    application master must send a :class:`DemandSnapshot`. Until it does, its other messages are refused."""

    app: str
    expected_seq: int
    got_seq: int


Effect = SendGrant | Preempt | Revoke | AskResync
