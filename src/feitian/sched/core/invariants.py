"""Invariants of the allocator, checked by tests (and the simulator) after every step: :func:`check` returns the
problems found (empty when all hold). A problem is a bug.

1. Capacity: on every machine, for every resource, free + the shapes of its grants == capacity, and free >= 0
   (nothing granted beyond a machine's capacity); cluster pools likewise.
2. No grant held twice: every grant is in exactly one machine, application, unit, group and priority index, and
   they agree with the grant record.
3. Quota: a group's usage and loan are the sums of its grants and on-loan grants; ``usage - loan <= quota`` for
   every limited resource (a group is never above its limit except on loan).
4. Demand is never lost: per unit, ``requested - cancelled == outstanding + granted`` and
   ``granted == held + returned + revoked``; a unit is in the waiting index exactly when it has outstanding
   demand; reservations agree between machines and units.
5. Priorities respected (after :meth:`Allocator.tick`): on every machine that received grants from the queues
   in that tick, no waiting, unparked unit of a strictly higher priority than the lowest granted there may use
   the machine (locality level), is allowed by its quota and pools, and fits what is free there now. (During
   the pass the free resources only shrank, so such a unit would have fitted when the lower-priority grant was
   made.) Grants that serve a preemptor's reservation are exempt: those resources were freed for it.
6. No grant was made on an unhealthy machine in the last tick.

:func:`check_work_conserving` is a stronger property that holds only when no bound cut the work short: after a
tick in which no machine's pass stopped at ``max_skip_per_pass`` and probing did not stop at
``max_probe_rounds``, no waiting, unparked unit fits a healthy machine it may use (quota and pools allowing).
The property test runs it with the skip bound out of the way.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from feitian.sched.core.preemption import eligible

if TYPE_CHECKING:
    from feitian.sched.core.allocator import Allocator
    from feitian.sched.core.state import MachineState, UnitState

__all__ = ["check", "check_work_conserving"]


def check(alloc: Allocator) -> list[str]:
    problems: list[str] = []
    _capacity(alloc, problems)
    _indexes(alloc, problems)
    _quota(alloc, problems)
    _demand(alloc, problems)
    _priorities(alloc, problems)
    return problems


def _capacity(alloc: Allocator, problems: list[str]) -> None:
    dims = alloc.space.machine_dims
    for machine in alloc.machines.values():
        used = [0] * len(dims)
        for held in machine.grants.values():
            for index, amount in held.need:
                used[index] += amount
        for index, name in enumerate(dims):
            if machine.free[index] < 0:
                problems.append(f"machine {machine.name}: {name} over capacity by {-machine.free[index]}")
            if machine.free[index] + used[index] != machine.capacity[index]:
                problems.append(
                    f"machine {machine.name}: {name} free {machine.free[index]} + granted {used[index]} "
                    f"!= capacity {machine.capacity[index]}"
                )
    pools = [0] * len(alloc.space.pool_names)
    for held in alloc.held.values():
        for index, amount in held.pools:
            pools[index] += amount
    if pools != alloc.space.pool_used:
        problems.append(f"pool usage {alloc.space.pool_used} != sum of grants {pools}")


def _indexes(alloc: Allocator, problems: list[str]) -> None:
    held_ids = set(alloc.held)
    views = {
        "machines": [g for m in alloc.machines.values() for g in m.grants],
        "applications": [g for a in alloc.apps.values() for g in a.grants],
        "units": [g for a in alloc.apps.values() for u in a.units.values() for g in u.held],
        "groups": [g for q in alloc.quota.groups.values() for g in q.grants],
        "priorities": [g for p in alloc.by_priority.values() for g in p],
    }
    for name, ids in views.items():
        counts = Counter(ids)
        twice = [g for g, n in counts.items() if n > 1]
        if twice:
            problems.append(f"grants held twice in the {name} index: {twice[:10]}")
        if set(counts) != held_ids:
            problems.append(f"the {name} index disagrees with the grant table: {sorted(set(counts) ^ held_ids)[:10]}")
    for gid, held in alloc.held.items():
        grant = held.grant
        if grant.grant_id != gid or gid >= alloc.next_grant_id:
            problems.append(f"grant {gid}: id mismatch or not below next_grant_id {alloc.next_grant_id}")
        if held.machine.name != grant.machine or alloc.machines.get(grant.machine) is not held.machine:
            problems.append(f"grant {gid}: on machine {grant.machine!r}, which does not list it")
        if held.unit.app.name != grant.app or alloc.apps.get(grant.app) is not held.unit.app:
            problems.append(f"grant {gid}: of application {grant.app!r}, which is not submitted")


def _quota(alloc: Allocator, problems: list[str]) -> None:
    dims = alloc.space.machine_dims
    for group in alloc.quota.groups.values():
        usage = [0] * len(dims)
        loan = [0] * len(dims)
        for held in group.grants.values():
            for index, amount in held.need:
                usage[index] += amount
                if held.on_loan:
                    loan[index] += amount
        if usage != group.usage or loan != group.loan:
            problems.append(f"group {group.name}: usage/loan {group.usage}/{group.loan} != sums {usage}/{loan}")
        if set(group.loan_grants) != {g for g, h in group.grants.items() if h.on_loan}:
            problems.append(f"group {group.name}: the loan index disagrees with the grants")
        for index, limit in group.limit_items:
            own = group.usage[index] - group.loan[index]
            if own > limit:
                problems.append(f"group {group.name}: {dims[index]} {own} not on loan is above its quota {limit}")


def _demand(alloc: Allocator, problems: list[str]) -> None:
    waiting = {uid for units in alloc.waiting.values() for uid in units}
    reserved: Counter[tuple[int, str]] = Counter()
    for machine in alloc.machines.values():
        for unit in machine.reservations:
            reserved[(unit.uid, machine.name)] += 1
    for app in alloc.apps.values():
        for unit in app.units.values():
            where = f"unit {unit.name} of {app.name}"
            if unit.outstanding < 0:
                problems.append(f"{where}: outstanding {unit.outstanding} < 0")
            if unit.requested - unit.cancelled != unit.outstanding + unit.granted:
                problems.append(
                    f"{where}: requested {unit.requested} - cancelled {unit.cancelled} != outstanding "
                    f"{unit.outstanding} + granted {unit.granted}"
                )
            if unit.granted != len(unit.held) + unit.returned + unit.revoked:
                problems.append(
                    f"{where}: granted {unit.granted} != held {len(unit.held)} + returned {unit.returned} + "
                    f"revoked {unit.revoked}"
                )
            if (unit.outstanding > 0) != (unit.uid in waiting):
                problems.append(f"{where}: outstanding {unit.outstanding} but waiting index says {unit.uid in waiting}")
            for machine in unit.reserved_on:
                key = (unit.uid, machine.name)
                if reserved[key] <= 0:
                    problems.append(f"{where}: reserved on {machine.name}, which does not list it")
                reserved[key] -= 1
    leftover = [k for k, n in reserved.items() if n > 0]
    if leftover:
        problems.append(f"machines hold reservations their units do not know: {leftover[:10]}")


def _priorities(alloc: Allocator, problems: list[str]) -> None:
    for name, lowest in alloc.last_pass_lowest.items():
        machine = alloc.machines.get(name)
        if machine is None:
            continue
        if not machine.healthy:
            problems.append(f"machine {name}: granted while unhealthy")
        for priority, units in alloc.waiting.items():
            if priority >= lowest:
                continue
            for unit in units.values():
                if not _could_take(alloc, unit, machine):
                    continue
                problems.append(
                    f"machine {name}: priority {lowest} was granted while unit {unit.name} of {unit.app.name} "
                    f"(priority {priority}) waits and fits"
                )


def check_work_conserving(alloc: Allocator) -> list[str]:
    """After a tick: waiting units that fit a machine they may use and were left waiting (see the module
    docstring); empty when a bound was hit in that tick (the property is then not promised)."""
    if alloc.skip_capped or alloc.probe_capped:
        return []
    problems: list[str] = []
    for machine in alloc.machines.values():
        if not machine.healthy:
            continue
        for units in alloc.waiting.values():
            for unit in units.values():
                if not _could_take(alloc, unit, machine):
                    continue
                problems.append(f"unit {unit.name} of {unit.app.name} waits but fits machine {machine.name}")
    return problems


def _could_take(alloc: Allocator, unit: UnitState, machine: MachineState) -> bool:
    """Whether waiting ``unit`` could be granted on ``machine`` now: not parked, allowed there, fitting its free
    resources, within its quota group's limit and the cluster pools."""
    if unit.parked or not eligible(unit, machine) or not alloc._fits(machine, unit.compiled.need):
        return False
    group = alloc.quota.groups[unit.app.group]
    if group.limit_items and alloc.quota.allows(group, unit.need_map) == 0:
        return False
    space = alloc.space
    return not any(space.pool_used[i] + a > space.pool_capacity[i] for i, a in unit.compiled.pools)
