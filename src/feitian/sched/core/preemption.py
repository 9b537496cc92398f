"""Preemption (FUXI-4): quota reclaim and urgent higher-priority work.

A waiting unit becomes *urgent* once it waited ``preempt_after_ns`` (and ``preempt_retry_ns`` after a plan that
found nothing). For an urgent unit, :func:`plan` looks for one machine the unit may use (its current locality
level, healthy) where the resources already free plus those of some victims fit one unit of its shape. Victims
are taken in this order, and only the ones on the chosen machine are preempted:

1. **Reclaim**: if the unit's group is within its own quota for it, grants *on loan* of other groups that are
   above their own quota — lowest priority first, newest first (any priority when
   ``reclaim_ignores_priority``; otherwise only strictly lower priorities).
2. **Priority**: grants of strictly lower priority (larger number) — lowest priority first, newest first. Work
   of equal or higher priority is never preempted.

Each victim gets a :class:`Preempt` notice with ``deadline_ns = now + preempt_notice_ns``; the machine reserves
one unit's shape for the preemptor (served before any queue when resources free); at the deadline what was not
returned is revoked. A unit holds at most ``outstanding`` reservations.

Cost is bounded per tick: at most ``max_preemptions_per_tick`` plans, and at most ``max_preempt_scan`` units
and running grants looked at in all (a plan stops when the scan budget is spent). A unit limited to some
machines (locality level machine or rack) only looks at the grants on those machines, and takes the machine
whose most important victim is the least important (then the fewest victims); a unit that may run anywhere
walks the candidates in victim order across the cluster and takes the first machine where they suffice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from feitian.sched.core.records import Effect, Preempt, PreemptReason
from feitian.sched.core.state import LEVEL_ANY, LEVEL_RACK, Held, MachineState, UnitState

if TYPE_CHECKING:
    from feitian.sched.core.allocator import Allocator

__all__ = ["eligible", "maybe_preempt", "plan"]


def eligible(unit: UnitState, machine: MachineState) -> bool:
    """May the unit run on the machine at its current locality level?"""
    if unit.level >= LEVEL_ANY:
        return True
    if machine.name in unit.machines:
        return True
    return unit.level >= LEVEL_RACK and machine.rack in unit.racks


def maybe_preempt(alloc: Allocator, now_ns: int, out: list[Effect]) -> bool:
    """Plan preemptions for urgent units, highest priority first. True if any notice was sent."""
    if not alloc.waiting or not alloc.held or now_ns < alloc.preempt_idle_until_ns:
        return False
    policy = alloc.policy
    plans = alloc.limits.max_preemptions_per_tick
    lowest_granted = max(alloc.by_priority) if alloc.by_priority else -1
    rnd = _Round(alloc)
    acted = False
    considered = False
    for priority in sorted(alloc.waiting):
        if priority >= lowest_granted and not rnd.any_loans:
            break
        for unit in list(alloc.waiting.get(priority, {}).values()):
            if now_ns - unit.waiting_since_ns < policy.preempt_after_ns:
                break  # units wait in start order: the rest waited less
            considered = True
            rnd.budget -= 1
            if rnd.budget <= 0 or plans <= 0:
                return acted
            while unit.preempt_not_before_ns <= now_ns and len(unit.reserved_on) < unit.outstanding:
                if plans <= 0 or rnd.budget <= 0:
                    return acted
                plans -= 1
                found = plan(alloc, unit, rnd)
                if found is None:
                    unit.preempt_not_before_ns = now_ns + policy.preempt_retry_ns
                    break
                machine, victims = found
                if not victims:
                    alloc._mark_dirty(machine)  # it fits already: the next pass grants it
                    break
                deadline = now_ns + policy.preempt_notice_ns
                for held, reason in victims:
                    alloc.notice(held, deadline)
                    out.append(Preempt(held.grant, deadline, reason))
                alloc.reserve(unit, machine)
                acted = True
    if considered and not acted:
        # A whole scan found nothing to do: the next one waits for preempt_retry_ns (new urgent units and new
        # victims are rarely worth a scan every tick; the retry period bounds how late they are seen).
        alloc.preempt_idle_until_ns = now_ns + policy.preempt_retry_ns
    return acted


class _Round:
    """What the plans of one tick share: the scan budget and the cluster's loans in victim order."""

    def __init__(self, alloc: Allocator) -> None:
        self.alloc = alloc
        self.budget = alloc.limits.max_preempt_scan
        quota = alloc.quota
        self.over_own = {g.name for g in quota.groups.values() if g.loan_grants and quota.over_own(g)}
        self.any_loans = bool(self.over_own)
        self._loans: list[Held] | None = None

    def loans(self) -> list[Held]:
        if self._loans is None:
            loans: list[Held] = []
            for name in self.over_own:
                taken = 0
                for held in reversed(self.alloc.quota.groups[name].loan_grants.values()):
                    if held.notice_deadline_ns is None:
                        loans.append(held)
                        taken += 1
                        if taken >= self.budget:
                            break
            loans.sort(key=lambda h: (-h.grant.priority, -h.grant.grant_id))
            self._loans = loans
        return self._loans


Victims = list[tuple[Held, PreemptReason]]


def plan(alloc: Allocator, unit: UnitState, rnd: _Round | None = None) -> tuple[MachineState, Victims] | None:
    """One machine and the victims to preempt there for one unit of ``unit``, or None."""
    rnd = rnd if rnd is not None else _Round(alloc)
    app = unit.app
    quota = alloc.quota
    group = quota.groups[app.group]
    verdict = quota.allows(group, unit.need_map) if group.limit_items else 1
    if verdict == 0:
        return None  # its quota would refuse the grant anyway
    used, capacity = alloc.space.pool_used, alloc.space.pool_capacity
    if any(used[i] + a > capacity[i] for i, a in unit.compiled.pools):
        return None  # preempting machine resources cannot refill a cluster pool it waits for
    reclaim = bool(group.limit_items) and verdict == 1
    lenient = alloc.policy.reclaim_ignores_priority
    priority = app.priority

    def reason_for(held: Held) -> PreemptReason | None:
        if held.notice_deadline_ns is not None:
            return None
        if (
            reclaim
            and held.on_loan
            and held.grant.group != group.name
            and held.grant.group in rnd.over_own
            and (lenient or held.grant.priority > priority)
        ):
            return PreemptReason.RECLAIM
        if held.grant.priority > priority:
            return PreemptReason.PRIORITY
        return None

    if unit.level < LEVEL_ANY:
        return _plan_local(alloc, unit, rnd, reason_for)
    return _plan_anywhere(alloc, unit, rnd, reason_for, reclaim)


def _base(alloc: Allocator, machine: MachineState) -> list[int]:
    """What the machine will have once the grants already under notice are gone, less its reservations."""
    base = list(machine.free)
    reserved = machine.reserved
    if reserved is not None:
        for index, amount in enumerate(reserved):
            base[index] -= amount
    for running in machine.grants.values():
        if running.notice_deadline_ns is not None:
            for index, amount in running.need:
                base[index] += amount
    return base


def _plan_local(
    alloc: Allocator, unit: UnitState, rnd: _Round, reason_for: Callable[[Held], PreemptReason | None]
) -> tuple[MachineState, Victims] | None:
    names = list(unit.machines)
    if unit.level >= LEVEL_RACK:
        for rack in unit.racks:
            names.extend(alloc.racks.get(rack, {}))
    need = unit.compiled.need
    best: tuple[tuple[int, int], MachineState, Victims] | None = None
    for name in dict.fromkeys(names):
        machine = alloc.machines.get(name)
        if machine is None or not machine.healthy:
            continue
        if alloc._fits(machine, need):
            return machine, []
        rnd.budget -= 1 + len(machine.grants)
        options = []
        for held in machine.grants.values():
            reason = reason_for(held)
            if reason is not None:
                options.append((reason is not PreemptReason.RECLAIM, -held.grant.priority, -held.grant.grant_id, held))
        options.sort(key=lambda o: o[:3])
        base = _base(alloc, machine)
        victims: Victims = []
        for not_reclaim, _priority, _grant_id, held in options:
            for index, amount in held.need:
                base[index] += amount
            victims.append((held, PreemptReason.PRIORITY if not_reclaim else PreemptReason.RECLAIM))
            if all(base[i] >= a for i, a in need):
                # the least important "most important victim" wins, then the fewest victims
                score = (-max(h.grant.priority for h, _r in victims), len(victims))
                if best is None or score < best[0]:
                    best = (score, machine, victims)
                break
        if rnd.budget <= 0:
            break
    return (best[1], best[2]) if best is not None else None


def _plan_anywhere(
    alloc: Allocator,
    unit: UnitState,
    rnd: _Round,
    reason_for: Callable[[Held], PreemptReason | None],
    reclaim: bool,
) -> tuple[MachineState, Victims] | None:
    need = unit.compiled.need
    gathered: dict[str, tuple[list[int], Victims]] = {}

    def candidates() -> Iterator[Held]:
        if reclaim:
            yield from rnd.loans()
        for p in sorted(alloc.by_priority, reverse=True):
            if p <= unit.app.priority:
                return
            yield from reversed(alloc.by_priority[p].values())

    for held in candidates():
        rnd.budget -= 1
        if rnd.budget <= 0:
            return None
        reason = reason_for(held)
        if reason is None:
            continue
        machine = held.machine
        if not machine.healthy:
            continue
        acc = gathered.get(machine.name)
        if acc is None:
            if alloc._fits(machine, need):
                return machine, []
            acc = gathered[machine.name] = (_base(alloc, machine), [])
        base, victims = acc
        if any(h is held for h, _ in victims):
            continue
        for index, amount in held.need:
            base[index] += amount
        victims.append((held, reason))
        if all(base[i] >= a for i, a in need):
            return machine, victims
    return None
