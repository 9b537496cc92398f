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
returned is revoked. A unit holds at most ``outstanding`` reservations; at most ``max_preemptions_per_tick``
urgent units are considered per tick and at most ``max_preempt_scan`` running grants per plan.
"""

from __future__ import annotations

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
    if not alloc.waiting or not alloc.held:
        return False
    policy = alloc.policy
    budget = alloc.limits.max_preemptions_per_tick
    lowest_granted = max(alloc.by_priority) if alloc.by_priority else -1
    any_loans = any(g.loan_grants for g in alloc.quota.groups.values())
    acted = False
    for priority in sorted(alloc.waiting):
        if priority >= lowest_granted and not any_loans:
            break
        for unit in list(alloc.waiting.get(priority, {}).values()):
            if now_ns - unit.waiting_since_ns < policy.preempt_after_ns:
                break  # units wait in start order: the rest waited less
            while unit.preempt_not_before_ns <= now_ns and len(unit.reserved_on) < unit.outstanding:
                if budget == 0:
                    return acted
                budget -= 1
                found = plan(alloc, unit)
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
    return acted


def plan(alloc: Allocator, unit: UnitState) -> tuple[MachineState, list[tuple[Held, PreemptReason]]] | None:
    """One machine and the victims to preempt there for one unit of ``unit``, or None."""
    app = unit.app
    quota = alloc.quota
    group = quota.groups[app.group]
    verdict = quota.allows(group, unit.need_map) if group.limit_items else 1
    if verdict == 0:
        return None  # its quota would refuse the grant anyway
    used, capacity = alloc.space.pool_used, alloc.space.pool_capacity
    if any(used[i] + a > capacity[i] for i, a in unit.compiled.pools):
        return None  # preempting machine resources cannot refill a cluster pool it waits for
    need = unit.compiled.need
    scan = alloc.limits.max_preempt_scan
    candidates: list[tuple[Held, PreemptReason]] = []
    if group.limit_items and verdict == 1:
        loans: list[Held] = []
        for other in quota.groups.values():
            if other is group or not other.loan_grants or not quota.over_own(other):
                continue
            for held in reversed(other.loan_grants.values()):
                if held.notice_deadline_ns is None and (
                    alloc.policy.reclaim_ignores_priority or held.grant.priority > app.priority
                ):
                    loans.append(held)
                    if len(loans) >= scan:
                        break
        loans.sort(key=lambda h: (-h.grant.priority, -h.grant.grant_id))
        candidates.extend((h, PreemptReason.RECLAIM) for h in loans[:scan])
    for priority in sorted(alloc.by_priority, reverse=True):
        if priority <= app.priority or len(candidates) >= scan:
            break
        for held in reversed(alloc.by_priority[priority].values()):
            if held.notice_deadline_ns is None:
                candidates.append((held, PreemptReason.PRIORITY))
                if len(candidates) >= scan:
                    break
    gathered: dict[str, tuple[list[int], list[tuple[Held, PreemptReason]]]] = {}
    seen: set[int] = set()
    for held, reason in candidates:
        gid = held.grant.grant_id
        if gid in seen:
            continue
        seen.add(gid)
        machine = held.machine
        if not machine.healthy or not eligible(unit, machine):
            continue
        acc = gathered.get(machine.name)
        if acc is None:
            if alloc._fits(machine, need):
                return machine, []
            # Grants on this machine already under notice will free resources that its reservations count on.
            noticed = [0] * len(machine.free)
            for running in machine.grants.values():
                if running.notice_deadline_ns is not None:
                    for index, amount in running.need:
                        noticed[index] += amount
            acc = gathered[machine.name] = (noticed, [])
        extra, victims = acc
        for index, amount in held.need:
            extra[index] += amount
        victims.append((held, reason))
        free, reserved = machine.free, machine.reserved
        if all(free[i] - (reserved[i] if reserved is not None else 0) + extra[i] >= amount for i, amount in need):
            return machine, victims
    return None
