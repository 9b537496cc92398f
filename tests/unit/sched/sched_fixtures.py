"""A small driver for the allocator in tests: numbered messages per application, a clock, and the invariant
checker after every step."""

from __future__ import annotations

from collections.abc import Sequence

from feitian.sched.core import (
    Allocator,
    AppSpec,
    DemandDelta,
    Effect,
    Grant,
    Locality,
    MachineSpec,
    Preempt,
    ReturnGrants,
    Revoke,
    SchedLimits,
    SchedPolicy,
    SendGrant,
    Shape,
    UnitSpec,
    check,
)

SECOND_NS = 1_000_000_000
CORE = 1000  # millicores
GIB = 1 << 30
SLOT = Shape.of(cpu=CORE, memory=GIB)


class Sim:
    def __init__(self, policy: SchedPolicy | None = None, limits: SchedLimits | None = None) -> None:
        self.alloc = Allocator(limits or SchedLimits(), policy or SchedPolicy())
        self.now = 0
        self.seq: dict[str, int] = {}

    def machine(self, name: str, rack: str = "r0", cpu: int = 4 * CORE, memory: int = 16 * GIB, **extra: int) -> None:
        self.alloc.add_machine(MachineSpec(name, rack, {"cpu": cpu, "memory": memory, **extra}), self.now)
        self.checked()

    def app(self, name: str, priority: int = 5, group: str = "default") -> None:
        self.alloc.submit_app(AppSpec(name, priority, group))
        self.seq[name] = 0

    def next_seq(self, app: str) -> int:
        self.seq[app] += 1
        return self.seq[app]

    def want(
        self,
        app: str,
        delta: int,
        unit: str = "w",
        shape: Shape | None = SLOT,
        machines: Sequence[str] = (),
        racks: Sequence[str] = (),
    ) -> list[Effect]:
        known = unit in self.alloc.apps[app].units
        spec = None if known or shape is None else UnitSpec(shape, Locality(tuple(machines), tuple(racks)))
        out = self.alloc.handle(DemandDelta(app, self.next_seq(app), unit, delta, spec), self.now)
        self.checked()
        return out

    def give_back(self, app: str, *grant_ids: int) -> list[Effect]:
        out = self.alloc.handle(ReturnGrants(app, self.next_seq(app), tuple(grant_ids)), self.now)
        self.checked()
        return out

    def tick(self, advance_ns: int = 0) -> list[Effect]:
        self.now += advance_ns
        out = self.alloc.tick(self.now)
        self.checked()
        return out

    def checked(self) -> None:
        problems = check(self.alloc)
        assert problems == [], problems

    def held(self, app: str) -> list[Grant]:
        return self.alloc.grants_of(app)


def grants(effects: Sequence[Effect]) -> list[Grant]:
    return [e.grant for e in effects if isinstance(e, SendGrant)]


def notices(effects: Sequence[Effect]) -> list[Preempt]:
    return [e for e in effects if isinstance(e, Preempt)]


def revokes(effects: Sequence[Effect]) -> list[Revoke]:
    return [e for e in effects if isinstance(e, Revoke)]


def count_by_app(items: Sequence[Grant]) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in items:
        out[g.app] = out.get(g.app, 0) + 1
    return out
