"""The allocator's internal records (mutable, ``__slots__``): machines, applications, units, held grants.

They belong to :class:`~feitian.sched.core.allocator.Allocator`; the invariant checker reads them. Units are
ordered for the demand queues by :attr:`_Unit.key`-like tuples built by the allocator; a unit object compares as
never-less so that equal keys in a heap never fall through to comparing objects.
"""

from __future__ import annotations

from feitian.sched.core.records import Grant, Locality
from feitian.sched.core.resources import CompiledShape

__all__ = [
    "LEVEL_ANY",
    "LEVEL_MACHINE",
    "LEVEL_RACK",
    "AppState",
    "Held",
    "MachineState",
    "UnitState",
    "fits",
]

LEVEL_MACHINE = 0  # only the preferred machines
LEVEL_RACK = 1  # their racks (and the preferred racks)
LEVEL_ANY = 2  # any machine


class MachineState:
    __slots__ = (
        "cap_key",
        "capacity",
        "free",
        "grants",
        "healthy",
        "last_heartbeat_ns",
        "name",
        "rack",
        "reservations",
        "reserved",
    )

    def __init__(self, name: str, rack: str, capacity: list[int], now_ns: int) -> None:
        self.name = name
        self.rack = rack
        self.capacity = capacity
        self.free = list(capacity)
        self.healthy = True
        self.grants: dict[int, Held] = {}
        self.last_heartbeat_ns = now_ns
        # Resources promised to preemptors (one unit each, in promise order); ``reserved`` is their sum or None.
        self.reservations: list[UnitState] = []
        self.reserved: list[int] | None = None
        # When its last pass stopped at max_skip_per_pass: the queue key it stopped at (a new pass would most
        # likely stop there again while its free resources stay as they are; it is not in the idle index). None
        # otherwise; a release clears it.
        self.cap_key: tuple[int, int, int, int] | None = None


class AppState:
    __slots__ = (
        "expected_seq",
        "grants",
        "group",
        "name",
        "needs_resync",
        "priority",
        "submit_seq",
        "turn",
        "units",
    )

    def __init__(self, name: str, priority: int, group: str, submit_seq: int) -> None:
        self.name = name
        self.priority = priority
        self.group = group
        self.submit_seq = submit_seq
        self.turn = 0  # fair rounds: grants received at its priority so far (moved up to the round when idle)
        self.units: dict[str, UnitState] = {}
        self.grants: dict[int, Held] = {}
        self.expected_seq = 1  # the seq the next DemandDelta/ReturnGrants must carry (an AM counts from 1)
        self.needs_resync = False


class UnitState:
    """One unit of demand of one application, with its accounting:
    ``requested - cancelled == outstanding + granted`` and ``granted == held + returned + revoked``."""

    __slots__ = (
        "app",
        "cancelled",
        "compiled",
        "epoch",
        "granted",
        "held",
        "level",
        "locality",
        "machines",
        "name",
        "need_map",
        "outstanding",
        "parked",
        "preempt_not_before_ns",
        "racks",
        "requested",
        "reserved_on",
        "returned",
        "revoked",
        "uid",
        "waiting_since_ns",
    )

    def __init__(self, app: AppState, name: str, uid: int, compiled: CompiledShape, locality: Locality) -> None:
        self.app = app
        self.name = name
        self.uid = uid
        self.compiled = compiled
        self.need_map = dict(compiled.need)
        self.locality = locality
        self.machines: tuple[str, ...] = locality.machines
        self.racks: tuple[str, ...] = ()  # filled by the allocator: the racks of the machines + locality.racks
        self.level = LEVEL_ANY
        self.outstanding = 0
        self.epoch = 0  # bumped whenever its queue entries become invalid (stopped waiting, parked)
        self.parked = False
        self.waiting_since_ns = 0
        self.preempt_not_before_ns = 0
        self.reserved_on: list[MachineState] = []  # machines holding a reservation for it (one unit each)
        self.requested = 0
        self.cancelled = 0
        self.granted = 0
        self.returned = 0
        self.revoked = 0
        self.held: dict[int, Held] = {}

    def __lt__(self, other: object) -> bool:
        return False


class Held:
    """A grant in force: the public record plus the allocator's bookkeeping."""

    __slots__ = ("grant", "machine", "need", "notice_deadline_ns", "on_loan", "pools", "unit")

    def __init__(
        self, grant: Grant, unit: UnitState, machine: MachineState, compiled: CompiledShape, on_loan: bool
    ) -> None:
        self.grant = grant
        self.unit = unit
        self.machine = machine
        self.need = compiled.need
        self.pools = compiled.pools
        self.on_loan = on_loan  # counted against the group's loan, not its own quota
        self.notice_deadline_ns: int | None = None  # set once a Preempt notice was sent


def fits(machine: MachineState, need: tuple[tuple[int, int], ...]) -> bool:
    """Does ``need`` fit what is free on the machine, less what it reserved for preemptors?"""
    free, reserved = machine.free, machine.reserved
    if reserved is None:
        for index, amount in need:
            if free[index] < amount:
                return False
    else:
        for index, amount in need:
            if free[index] - reserved[index] < amount:
                return False
    return True
