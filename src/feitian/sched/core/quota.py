"""Quota groups with upper limits and lending (FUXI-4).

Every application belongs to one group. A group's *quota* is an upper limit per resource (a resource it does
not name is unlimited for it). Its grants never exceed its quota, except on loan: the unused quota of the other
groups (``idle_h = max(0, quota_h - usage_h)``) is lent to the groups that want more, each group ``h``'s idle
quota divided among the other groups in proportion to their quotas. So group ``g`` may go above its own quota
``Q_g`` (in resource ``r``) by at most

    borrowable_g = Q_g * sum over h != g of idle_h / (total_quota - Q_h)

(over the groups that limit ``r``). Summed over all groups this is exactly the total idle quota. A grant that
takes its group above its own quota is marked *on loan*; the invariant is ``usage - loan <= quota`` per resource.
When a lender later wants its quota back, loans are reclaimed by preemption (the preemption module), borrowed
grants first.

The group ``default`` always exists and is unlimited unless given a quota.
"""

from __future__ import annotations

from collections.abc import Mapping

from feitian.errors import InvalidArgumentError, NotFoundError
from feitian.sched.core.limits import SchedLimits
from feitian.sched.core.resources import ResourceSpace, check_name
from feitian.sched.core.state import Held, UnitState

__all__ = ["DEFAULT_GROUP", "QuotaBook", "QuotaGroup"]

DEFAULT_GROUP = "default"


class QuotaGroup:
    __slots__ = ("blocked", "grants", "limit_items", "limits", "loan", "loan_grants", "name", "usage")

    def __init__(self, name: str, dims: int) -> None:
        self.name = name
        self.limits: dict[int, int] = {}  # dimension index -> upper limit
        self.limit_items: tuple[tuple[int, int], ...] = ()
        self.usage = [0] * dims  # sum of the shapes of its grants
        self.loan = [0] * dims  # the part of usage on loan
        self.grants: dict[int, Held] = {}
        self.loan_grants: dict[int, Held] = {}
        # Units that did not fit under the group's limit (with loans): parked out of the demand queues until the
        # group's usage drops or other groups' idle quota grows. Heap of (priority, turn, submit, uid, unit).
        self.blocked: list[tuple[int, int, int, int, UnitState]] = []


class QuotaBook:
    def __init__(self, space: ResourceSpace, limits: SchedLimits) -> None:
        self.space = space
        self.limits = limits
        self.groups: dict[str, QuotaGroup] = {DEFAULT_GROUP: QuotaGroup(DEFAULT_GROUP, len(space.machine_dims))}

    def group(self, name: str) -> QuotaGroup:
        group = self.groups.get(name)
        if group is None:
            raise NotFoundError(
                f"quota group {name!r} does not exist",
                hint="known groups: " + ", ".join(sorted(self.groups)),
                group=name,
            )
        return group

    def on_new_dimension(self) -> None:
        for group in self.groups.values():
            group.usage.append(0)
            group.loan.append(0)

    def set_quota(self, name: str, quota: Mapping[str, int]) -> list[Held]:
        """Create a group or change its quota. Returns the grants that lowering the quota put on loan (a quota
        lowered below the group's use revokes nothing: the excess becomes a loan that can be reclaimed)."""
        check_name("quota group", name, self.limits)
        limits: dict[int, int] = {}
        for resource, amount in quota.items():
            index = self.space.machine_index.get(resource)
            if index is None:
                raise InvalidArgumentError(
                    f"quota of group {name!r}: {resource!r} is not a machine resource",
                    hint="quotas limit: " + ", ".join(self.space.machine_dims),
                )
            # a quota is cluster-wide: bounded by the per-machine bound times max_machines
            self.space._check_amount(
                f"quota of group {name!r}", resource, amount, allow_zero=True, scale=self.limits.max_machines
            )
            limits[index] = amount
        group = self.groups.get(name)
        if group is None:
            if len(self.groups) >= self.limits.max_quota_groups:
                raise InvalidArgumentError(
                    f"create quota group {name!r}: max_quota_groups {self.limits.max_quota_groups} reached"
                )
            group = self.groups[name] = QuotaGroup(name, len(self.space.machine_dims))
        group.limits = limits
        group.limit_items = tuple(sorted(limits.items()))
        moved: list[Held] = []
        for held in reversed(list(group.grants.values())):
            if self.within_own(group):
                break
            if not held.on_loan:
                self.mark_loan(group, held)
                moved.append(held)
        return moved

    # -- checks -------------------------------------------------------------------------------------------------

    def allows(self, group: QuotaGroup, need_map: dict[int, int], extra: list[int] | None = None) -> int:
        """0: over the limit even with loans; 1: within its own quota; 2: only on loan."""
        result = 1
        usage = group.usage
        for index, limit in group.limit_items:
            amount = need_map.get(index)
            if not amount:
                continue
            after = usage[index] + amount + (extra[index] if extra is not None else 0)
            if after > limit:
                if after - limit > self.borrowable(group, index):
                    return 0
                result = 2
        return result

    def within_own(self, group: QuotaGroup) -> bool:
        return all(group.usage[i] - group.loan[i] <= limit for i, limit in group.limit_items)

    def over_own(self, group: QuotaGroup) -> bool:
        return any(group.usage[i] > limit for i, limit in group.limit_items)

    def borrowable(self, group: QuotaGroup, index: int) -> int:
        own = group.limits.get(index)
        if own is None or own == 0:
            return 0
        total = 0
        members = [g for g in self.groups.values() if index in g.limits]
        for g in members:
            total += g.limits[index]
        share = 0.0
        for g in members:
            if g is group:
                continue
            idle = g.limits[index] - g.usage[index]
            rest = total - g.limits[index]
            if idle > 0 and rest > 0:
                share += idle / rest
        return int(own * share + 1e-9)

    # -- bookkeeping ----------------------------------------------------------------------------------------------

    def add(self, group: QuotaGroup, held: Held) -> None:
        usage = group.usage
        for index, amount in held.need:
            usage[index] += amount
        group.grants[held.grant.grant_id] = held
        if held.on_loan:
            held.on_loan = False
            self.mark_loan(group, held)

    def remove(self, group: QuotaGroup, held: Held) -> None:
        usage = group.usage
        for index, amount in held.need:
            usage[index] -= amount
        del group.grants[held.grant.grant_id]
        if held.on_loan:
            loan = group.loan
            for index, amount in held.need:
                loan[index] -= amount
            del group.loan_grants[held.grant.grant_id]

    def mark_loan(self, group: QuotaGroup, held: Held) -> None:
        held.on_loan = True
        loan = group.loan
        for index, amount in held.need:
            loan[index] += amount
        group.loan_grants[held.grant.grant_id] = held
