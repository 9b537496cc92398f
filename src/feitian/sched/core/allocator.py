"""The allocator: FuxiMaster's resource-management core (FUXI-2, FUXI-3, FUXI-4). Pure: no I/O, time as ``now_ns``.

**Driving it.** Inputs are method calls; every call that can have consequences returns the effects it caused
(:class:`SendGrant`, :class:`Preempt`, :class:`Revoke`, :class:`AskResync`). Demand arriving and resources
freeing only *mark* work; :meth:`Allocator.tick` does it — relaxes locality, revokes grants whose preemption
notice ran out, expires silent machines, grants, plans preemptions — so the driver calls ``tick(now_ns)`` after
each batch of inputs and on a timer (the earliest timer it needs is :meth:`Allocator.next_deadline_ns`). A
refused input (a FeitianError) changed nothing.

**Scheduling is machine-driven.** Waiting demand sits in heaps: one per machine (units preferring it), one per
rack (units relaxed to rack level), one for the cluster (units relaxed to anywhere, or with no preference). A
heap orders units by ``(priority, turn, submit order, unit id)``: priority first (smaller = higher), then fair
rounds within a priority — ``turn`` counts the grants an application received, so each grant moves it behind the
other applications of its priority (an application that starts waiting joins the current round) — then first
submitted first. When a machine has free resources (a grant returned, a machine added, new demand that fits it),
it is marked *dirty*; a pass over a dirty machine walks its three heaps once, best-first, granting every unit that
fits in that order, looking at most at ``max_skip_per_pass`` units that do not fit (they stay in place: the
walk does not pop them). Cost per grant: O(log n) heap work plus O(skip log skip), no scan over machines or
applications. A machine left with free resources goes to the *idle index* (idle.py: by the bit lengths of its
free cpu/memory/disk/net, and by rack), which new demand probes instead of scanning every machine (a probe
stops at as many machines as the unit wants; at worst it checks the idle machines of the classes that could
hold the shape). Heap entries are invalidated lazily (an epoch per unit; a stale turn is re-pushed when it
surfaces).

**Quota** (quota.py): a unit whose group is at its limit (with what it may borrow) is parked out of the heaps and
put back when some group's usage drops. Cluster-pool resources work the same way.

**Preemption** (preemption.py): a unit that waited ``preempt_after_ns`` may reclaim its group's lent quota
(borrowed grants first) or preempt strictly lower-priority grants, lowest priority and newest first, on one
machine it may use; victims get a :class:`Preempt` notice, the freed resources are reserved for it, and at the
notice's deadline what was not returned is revoked.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
)
from feitian.sched.core import preemption, protocol
from feitian.sched.core.idle import IdleIndex
from feitian.sched.core.limits import DEFAULT_LIMITS, DEFAULT_POLICY, SchedLimits, SchedPolicy
from feitian.sched.core.quota import QuotaBook, QuotaGroup
from feitian.sched.core.records import (
    AppSpec,
    AskResync,
    DemandDelta,
    DemandSnapshot,
    Effect,
    Grant,
    MachineSpec,
    ReturnGrants,
    Revoke,
    RevokeReason,
    SendGrant,
    UnitSpec,
)
from feitian.sched.core.resources import CompiledShape, ResourceScope, ResourceSpace, Shape, check_name
from feitian.sched.core.state import (
    LEVEL_ANY,
    LEVEL_MACHINE,
    LEVEL_RACK,
    AppState,
    Held,
    MachineState,
    UnitState,
    fits,
)

__all__ = ["Allocator"]

# A demand-queue entry: (priority, turn, submit order, unit id, unit epoch, unit).
Entry = tuple[int, int, int, int, int, UnitState]

_GRANTED, _NO_FIT, _PARKED = 0, 1, 2


class Allocator:
    """FuxiMaster's allocator. See the module docstring for the model; docs/sched.md for the protocol."""

    def __init__(self, limits: SchedLimits = DEFAULT_LIMITS, policy: SchedPolicy = DEFAULT_POLICY) -> None:
        self.limits = limits.validate()
        self.policy = policy.validate()
        self.space = ResourceSpace(limits)
        self.quota = QuotaBook(self.space, limits)
        self.machines: dict[str, MachineState] = {}
        self.racks: dict[str, dict[str, MachineState]] = {}
        self.apps: dict[str, AppState] = {}
        self.held: dict[int, Held] = {}
        self.by_priority: dict[int, dict[int, Held]] = {}  # priority -> grants in grant order (preemption victims)
        self.waiting: dict[int, dict[int, UnitState]] = {}  # priority -> waiting units, oldest wait first
        self.next_grant_id = 1
        self._next_submit = 0
        self._next_uid = 0
        # demand queues
        self._mq: dict[str, list[Entry]] = {}
        self._rq: dict[str, list[Entry]] = {}
        self._cq: list[Entry] = []
        self._vt: dict[int, int] = {}  # per priority: the turn of its latest grant (the current round)
        # timers: (due_ns, unit id, epoch, level, unit), (deadline_ns, grant id), (due_ns, machine name)
        self._relax: list[tuple[int, int, int, int, UnitState]] = []
        self._deadlines: list[tuple[int, int]] = []
        self._heartbeats: list[tuple[int, str]] = []
        # machines to pass over, and machines with room that nothing fitted
        self._dirty: dict[str, MachineState] = {}
        self._idle = IdleIndex()
        # parked units waiting for a cluster pool
        self._pool_blocked: list[tuple[int, int, int, int, UnitState]] = []
        self._quota_released = False
        self._pool_released = False
        self.preempt_idle_until_ns = 0  # no preemption scan before this (the last one found nothing)
        # units whose probe stopped at what they wanted, with the machines it found
        self._reprobe: dict[int, tuple[UnitState, list[MachineState]]] = {}
        # Shapes of the waiting units (id -> [shape, count]) and, per machine resource, the least any of them
        # needs: a machine with less than that in some resource fits nothing waiting, so its pass ends at once.
        self._waiting_shapes: dict[int, tuple[CompiledShape, list[int]]] = {}
        self._min_need: list[int] | None = None
        # Facts about the latest tick for the invariant checker: per machine, the lowest priority (largest number)
        # granted there from the queues (not reservations); machines whose pass stopped at max_skip_per_pass.
        self.last_pass_lowest: dict[str, int] = {}
        self.skip_capped: set[str] = set()
        self.probe_capped = False  # the latest tick stopped probing at max_probe_rounds

    # == configuration ===============================================================================================

    def define_resource(self, name: str, scope: ResourceScope, pool_amount: int = 0) -> None:
        """Define a virtual resource: per machine (machines state their amount) or a cluster pool."""
        self._input()
        self.space.define(name, scope, pool_amount)
        if scope is ResourceScope.MACHINE:
            for machine in self.machines.values():
                machine.capacity.append(0)
                machine.free.append(0)
                if machine.reserved is not None:
                    machine.reserved.append(0)
            self.quota.on_new_dimension()
            self._min_need = None

    def set_pool(self, name: str, amount: int) -> None:
        self._input()
        self.space.set_pool(name, amount)
        self._pool_released = True

    def set_quota(self, group: str, quota: Mapping[str, int]) -> None:
        """Create a quota group or change its limits (resource name -> upper limit; unnamed = unlimited)."""
        self._input()
        self.quota.set_quota(group, quota)
        self._quota_released = True

    # == machines ====================================================================================================

    def add_machine(self, spec: MachineSpec, now_ns: int) -> None:
        """A machine registered (its Tubo's report). Its resources become available at the next tick."""
        self._input()
        check_name("machine", spec.name, self.limits)
        check_name("rack", spec.rack, self.limits)
        if spec.name in self.machines:
            raise AlreadyExistsError(f"add machine {spec.name!r}: already registered", machine=spec.name)
        if len(self.machines) >= self.limits.max_machines:
            raise OverloadedError(f"add machine {spec.name!r}: max_machines {self.limits.max_machines} reached")
        capacity = self.space.compile_capacity(f"machine {spec.name!r} capacity", spec.capacity)
        machine = MachineState(spec.name, spec.rack, capacity, now_ns)
        self.machines[spec.name] = machine
        self.racks.setdefault(spec.rack, {})[spec.name] = machine
        heapq.heappush(self._heartbeats, (now_ns + self.policy.heartbeat_timeout_ns, spec.name))
        self._dirty[spec.name] = machine

    def machine_heartbeat(self, name: str, now_ns: int) -> None:
        self._input()
        self._machine(name).last_heartbeat_ns = now_ns

    def set_machine_health(self, name: str, healthy: bool, now_ns: int) -> None:
        """An unhealthy machine gets no new grants; what runs there keeps running."""
        self._input()
        machine = self._machine(name)
        machine.healthy = healthy
        machine.last_heartbeat_ns = max(machine.last_heartbeat_ns, now_ns)
        if healthy:
            self._mark_dirty(machine)
        else:
            self._unidle(machine)
            self._dirty.pop(name, None)

    def remove_machine(self, name: str, reason: RevokeReason = RevokeReason.MACHINE_REMOVED) -> list[Effect]:
        """The machine is gone (removed, or lost): its grants are revoked and their owners told."""
        self._input()
        machine = self._machine(name)
        out: list[Effect] = []
        for held in list(machine.grants.values()):
            self._revoke(held, reason, out)
        for unit in machine.reservations:
            unit.reserved_on.remove(machine)
        machine.reservations = []
        machine.reserved = None
        self._unidle(machine)
        self._dirty.pop(name, None)
        del self.machines[name]
        rack = self.racks[machine.rack]
        del rack[name]
        if not rack:
            del self.racks[machine.rack]
        return out

    # == applications ===============================================================================================

    def submit_app(self, spec: AppSpec) -> None:
        """A submitted application (hard state). Submission order breaks priority ties."""
        self._input()
        check_name("application", spec.name, self.limits)
        self._check_priority(spec.priority)
        self.quota.group(spec.group)
        if spec.name in self.apps:
            raise AlreadyExistsError(f"submit application {spec.name!r}: already submitted", app=spec.name)
        if len(self.apps) >= self.limits.max_apps:
            raise OverloadedError(f"submit application {spec.name!r}: max_apps {self.limits.max_apps} reached")
        self.apps[spec.name] = AppState(spec.name, spec.priority, spec.group, self._next_submit)
        self._next_submit += 1

    def finish_app(self, name: str) -> list[Effect]:
        """The application ended: its demand is dropped and its remaining grants revoked."""
        self._input()
        app = self._app(name)
        out: list[Effect] = []
        for unit in app.units.values():
            if unit.outstanding:
                unit.cancelled += unit.outstanding
                unit.outstanding = 0
                self._stop_waiting(unit)
        for held in list(app.grants.values()):
            self._revoke(held, RevokeReason.APP_FINISHED, out)
        del self.apps[name]
        return out

    # == the incremental protocol (FUXI-3) ==========================================================================

    def handle(self, msg: DemandDelta | ReturnGrants | DemandSnapshot, now_ns: int) -> list[Effect]:
        """One message of an application master. Returns AskResync when its seq is out of order; the grants the
        change allows come from the next :meth:`tick`. A refused message (an error) consumes no seq number."""
        self._input()
        app = self._app(msg.app)
        if isinstance(msg, DemandSnapshot):
            protocol.apply_snapshot(self, app, msg, now_ns)
            return []
        if app.needs_resync or msg.seq != app.expected_seq:
            app.needs_resync = True
            return [AskResync(app.name, app.expected_seq, msg.seq)]
        if isinstance(msg, DemandDelta):
            protocol.apply_delta(self, app, msg, now_ns)
        else:
            protocol.apply_returns(self, app, msg.grant_ids)
        app.expected_seq += 1
        return []

    def return_grant(self, app_name: str, grant_id: int) -> None:
        """Return one grant outside the sequenced stream (the service's own path, e.g. a process that exited)."""
        self._input()
        protocol.apply_returns(self, self._app(app_name), (grant_id,))

    def adopt_grant(
        self, app_name: str, unit_name: str, machine_name: str, shape: Shape, grant_id: int, now_ns: int
    ) -> Grant:
        """Learn a grant that already exists (a new master rebuilding soft state from Tubo reports after a
        failover): nothing is killed or sent. The unit is declared (no locality) if its master has not
        re-registered yet. A grant that does not fit the machine any more is refused with ConflictError."""
        self._input()
        app = self._app(app_name)
        machine = self._machine(machine_name)
        if isinstance(grant_id, bool) or not isinstance(grant_id, int) or grant_id < 1:
            raise InvalidArgumentError(f"adopt grant {grant_id!r}: a grant id is an integer >= 1")
        if grant_id in self.held:
            raise AlreadyExistsError(f"adopt grant {grant_id}: already held", grant_id=grant_id)
        compiled = self.space.compile_shape(f"adopt grant {grant_id}", shape)
        for index, amount in compiled.need:
            if machine.free[index] < amount:
                raise ConflictError(
                    f"adopt grant {grant_id}: {shape} does not fit what is free on {machine_name!r}",
                    grant_id=grant_id,
                )
        for index, amount in compiled.pools:
            if self.space.pool_used[index] + amount > self.space.pool_capacity[index]:
                raise ConflictError(f"adopt grant {grant_id}: pool {self.space.pool_names[index]!r} is exhausted")
        unit = app.units.get(unit_name)
        if unit is None:
            unit = protocol.declare(self, app, unit_name, UnitSpec(shape))
        group = self.quota.groups[app.group]
        on_loan = self.quota.allows(group, dict(compiled.need)) != 1
        unit.requested += 1
        self.next_grant_id = max(self.next_grant_id, grant_id + 1)
        held = self._grant(unit, machine, on_loan, compiled, grant_id)
        self._quota_released = True  # adoption may put a group over its own quota: a lender may need reclaim
        del now_ns
        return held.grant

    # == time ========================================================================================================

    def tick(self, now_ns: int) -> list[Effect]:
        """Do the work marked since the last tick, and what time made due. Returns the effects."""
        out: list[Effect] = []
        self.last_pass_lowest = {}
        self.skip_capped = set()
        self.probe_capped = False
        self._expire_machines(now_ns, out)
        self._revoke_due(now_ns, out)
        self._relax_due(now_ns)
        self._unpark()
        self._schedule(out)
        if preemption.maybe_preempt(self, now_ns, out):
            self._revoke_due(now_ns, out)
            self._unpark()
            self._schedule(out)
        return out

    def next_deadline_ns(self) -> int | None:
        """The earliest time a tick has time-driven work (relaxation, notice deadline, heartbeat expiry)."""
        times = [h[0][0] for h in (self._relax, self._deadlines, self._heartbeats) if h]
        return min(times) if times else None

    # == reads =======================================================================================================

    def grant(self, grant_id: int) -> Grant | None:
        held = self.held.get(grant_id)
        return held.grant if held is not None else None

    def grants_of(self, app_name: str) -> list[Grant]:
        return [h.grant for h in self._app(app_name).grants.values()]

    def outstanding(self, app_name: str, unit_name: str) -> int:
        unit = self._app(app_name).units.get(unit_name)
        return unit.outstanding if unit is not None else 0

    def machine_free(self, name: str) -> Shape:
        machine = self._machine(name)
        return self.space.shape_of(tuple(enumerate(machine.free)), ())

    def group_usage(self, group: str) -> Shape:
        usage = self.quota.group(group).usage
        return self.space.shape_of(tuple(enumerate(usage)), ())

    def borrowable(self, group: str) -> Shape:
        g = self.quota.group(group)
        return self.space.shape_of(tuple((i, self.quota.borrowable(g, i)) for i in g.limits), ())

    # == changing demand ===========================================================================================

    def _set_outstanding(self, unit: UnitState, value: int, now_ns: int) -> None:
        before = unit.outstanding
        if value > before:
            unit.requested += value - before
        else:
            unit.cancelled += before - value
        unit.outstanding = value
        if before == 0 and value > 0:
            self._start_waiting(unit, now_ns)
        elif before > 0 and value == 0:
            self._stop_waiting(unit)
        elif value > before and not unit.parked:
            self._probe(unit)

    # == waiting =====================================================================================================

    def _key(self, unit: UnitState) -> Entry:
        app = unit.app
        return (app.priority, app.turn, app.submit_seq, unit.uid, unit.epoch, unit)

    def _start_waiting(self, unit: UnitState, now_ns: int) -> None:
        app = unit.app
        unit.epoch += 1
        unit.waiting_since_ns = now_ns
        unit.preempt_not_before_ns = 0
        if unit.machines:
            unit.level = LEVEL_MACHINE
        elif unit.racks:
            unit.level = LEVEL_RACK
        else:
            unit.level = LEVEL_ANY
        if self.policy.fair_share:
            app.turn = max(app.turn, self._vt.get(app.priority, 0))
        self.waiting.setdefault(app.priority, {})[unit.uid] = unit
        shapes = self._waiting_shapes.get(id(unit.compiled))
        if shapes is None:
            self._waiting_shapes[id(unit.compiled)] = (unit.compiled, [1])
            self._min_need = None
        else:
            shapes[1][0] += 1
        if unit.level < LEVEL_RACK:
            heapq.heappush(self._relax, (now_ns + self.policy.relax_rack_after_ns, unit.uid, unit.epoch, 1, unit))
        if unit.level < LEVEL_ANY:
            heapq.heappush(self._relax, (now_ns + self.policy.relax_any_after_ns, unit.uid, unit.epoch, 2, unit))
        self._enqueue(unit, LEVEL_MACHINE, unit.level)
        self._probe(unit)

    def _stop_waiting(self, unit: UnitState) -> None:
        unit.epoch += 1
        unit.parked = False
        waiting = self.waiting.get(unit.app.priority)
        if waiting is not None and waiting.pop(unit.uid, None) is not None:
            if not waiting:
                del self.waiting[unit.app.priority]
            count = self._waiting_shapes[id(unit.compiled)][1]
            count[0] -= 1
            if count[0] == 0:
                del self._waiting_shapes[id(unit.compiled)]
                self._min_need = None
        for machine in unit.reserved_on:
            if unit in machine.reservations:
                machine.reservations.remove(unit)
                self._recompute_reserved(machine)
            self._mark_dirty(machine)
        unit.reserved_on = []

    def _enqueue(self, unit: UnitState, low: int, high: int) -> None:
        entry = self._key(unit)
        if low <= LEVEL_MACHINE <= high:
            for name in unit.machines:
                heapq.heappush(self._mq.setdefault(name, []), entry)
        if low <= LEVEL_RACK <= high:
            for rack in unit.racks:
                heapq.heappush(self._rq.setdefault(rack, []), entry)
        if high >= LEVEL_ANY >= low:
            heapq.heappush(self._cq, entry)

    def _relax_due(self, now_ns: int) -> None:
        relax = self._relax
        while relax and relax[0][0] <= now_ns:
            _, _, epoch, level, unit = heapq.heappop(relax)
            if unit.epoch != epoch or unit.level >= level:
                continue
            old = unit.level
            unit.level = level
            if not unit.parked:
                self._enqueue(unit, old + 1, level)
                self._probe(unit)

    def _park(self, unit: UnitState, heap: list[tuple[int, int, int, int, UnitState]]) -> None:
        unit.parked = True
        unit.epoch += 1
        app = unit.app
        heapq.heappush(heap, (app.priority, app.turn, app.submit_seq, unit.epoch, unit))

    def _unpark(self) -> None:
        if self._quota_released:
            self._quota_released = False
            for group in self.quota.groups.values():
                if group.blocked:
                    self._unpark_group(group)
        if self._pool_released:
            self._pool_released = False
            self._unpark_pool()

    def _unpark_group(self, group: QuotaGroup) -> None:
        extra = [0] * len(group.usage)
        blocked = group.blocked
        while blocked:
            unit = blocked[0][4]
            if unit.epoch != blocked[0][3] or not unit.parked:
                heapq.heappop(blocked)
                continue
            if self.quota.allows(group, unit.need_map, extra) == 0:
                break
            heapq.heappop(blocked)
            for index, amount in unit.compiled.need:
                extra[index] += amount * unit.outstanding
            self._requeue(unit)

    def _unpark_pool(self) -> None:
        blocked = self._pool_blocked
        used = list(self.space.pool_used)
        capacity = self.space.pool_capacity
        while blocked:
            unit = blocked[0][4]
            if unit.epoch != blocked[0][3] or not unit.parked:
                heapq.heappop(blocked)
                continue
            if any(used[i] + a > capacity[i] for i, a in unit.compiled.pools):
                break
            heapq.heappop(blocked)
            for index, amount in unit.compiled.pools:
                used[index] += amount * unit.outstanding
            self._requeue(unit)

    def _requeue(self, unit: UnitState) -> None:
        unit.parked = False
        unit.epoch += 1
        self._enqueue(unit, LEVEL_MACHINE, unit.level)
        self._probe(unit)

    # == finding machines ==========================================================================================

    def _mark_dirty(self, machine: MachineState) -> None:
        # It may stay in the idle index meanwhile (a probe marking it again is harmless); its pass re-files it.
        if machine.healthy and machine.name in self.machines:
            self._dirty[machine.name] = machine

    def _unidle(self, machine: MachineState) -> None:
        self._idle.remove(machine)

    def _set_idle(self, machine: MachineState) -> None:
        self._idle.file(machine, machine.healthy and machine.name in self.machines)

    def _probe(self, unit: UnitState) -> None:
        """Mark dirty the idle machines where the unit could run now (at most as many as it wants). When the
        probe stopped at that many, their passes may give the room to others first: the unit is probed again
        once they are done (``max_probe_rounds``)."""
        found = self._idle.candidates(unit, self.machines)
        for machine in found:
            self._mark_dirty(machine)
        if found and len(found) >= unit.outstanding:
            self._reprobe[unit.uid] = (unit, found)

    _fits = staticmethod(fits)

    # == granting ====================================================================================================

    def _schedule(self, out: list[Effect]) -> None:
        rounds = 0
        while True:
            while self._dirty:
                dirty = self._dirty
                self._dirty = {}
                for machine in dirty.values():
                    self._fill(machine, out)
                    self._set_idle(machine)
            if not self._reprobe:
                break
            if rounds >= self.limits.max_probe_rounds:
                self.probe_capped = True
                break
            rounds += 1
            again = self._reprobe
            self._reprobe = {}
            for unit, probed in again.values():
                # Only when some probed machine's pass ran to the end: it gave the room to others first. A pass
                # cut by max_skip_per_pass would be cut again the same way.
                if unit.outstanding > 0 and not unit.parked and any(m.name not in self.skip_capped for m in probed):
                    self._probe(unit)
        self._reprobe = {}

    def _fill(self, machine: MachineState, out: list[Effect]) -> None:
        """Grant on one machine: reservations first, then the waiting units of its three heaps in policy order.

        The heaps are walked once, best-first, without popping (a small frontier heap over positions of the three
        heap arrays), so a head that does not fit costs O(log skip) and is left in place; a unit granted here goes
        back into the frontier at its new place (its turn moved on) and may get more. At most
        ``max_skip_per_pass`` units that do not fit are looked at; entries made stale (a unit that stopped
        waiting or was parked) are passed through, at most twice as many.
        """
        machine.cap_key = None
        if machine.reservations:
            self._serve_reservations(machine, out)
        heaps = [h for h in (self._mq.get(machine.name), self._rq.get(machine.rack), self._cq) if h]
        if not heaps:
            return
        min_need = self._min_need
        if min_need is None:
            min_need = self._min_need = self._least_needs()
        free, reserved = machine.free, machine.reserved
        for index, least in enumerate(min_need):
            if least and free[index] - (reserved[index] if reserved else 0) < least:
                return  # nothing waiting fits what is free here
        max_skip = self.limits.max_skip_per_pass
        max_stale = 2 * max_skip
        failed: set[int] = set()  # units that did not fit here in this pass (free only shrinks during it)
        failed_shapes: set[int] = set()  # their compiled shapes (interned: equal shapes are one object)
        stale = 0
        heappush, heappop = heapq.heappush, heapq.heappop
        frontier: list[tuple[Entry, int, int]] = []
        for which, heap in enumerate(heaps):
            while heap:  # clean the root: drop stale entries, re-push a stale turn at its place
                entry = heap[0]
                unit = entry[5]
                if entry[4] != unit.epoch:
                    heappop(heap)
                    continue
                turn = unit.app.turn
                if entry[1] != turn:
                    heapq.heapreplace(heap, (entry[0], turn, entry[2], entry[3], entry[4], unit))
                    continue
                frontier.append((entry, which, 0))
                break
        heapq.heapify(frontier)
        while frontier:
            entry, which, position = heappop(frontier)
            unit = entry[5]
            if entry[4] != unit.epoch:
                stale += 1
                if stale > max_stale:
                    return
            elif entry[1] != unit.app.turn:
                # a turn that moved on (fair rounds): visit the unit at its real place, without children
                fixed = (entry[0], unit.app.turn, entry[2], entry[3], entry[4], unit)
                heappush(frontier, (fixed, which, -1))
            elif unit.uid not in failed:
                compiled = unit.compiled
                fits = id(compiled) not in failed_shapes  # free only shrinks during a pass
                reserved = machine.reserved  # a grant may have released a reservation here
                if fits:
                    if reserved is None:
                        for i, a in compiled.need:
                            if free[i] < a:
                                fits = False
                                break
                    else:
                        for i, a in compiled.need:
                            if free[i] - reserved[i] < a:
                                fits = False
                                break
                if fits:
                    if self._try_grant(unit, machine, out) == _GRANTED and unit.epoch == entry[4]:
                        # still waiting: it may get more here, at its place after this grant
                        fixed = (entry[0], unit.app.turn, entry[2], entry[3], entry[4], unit)
                        heappush(frontier, (fixed, which, -1))
                else:
                    failed_shapes.add(id(compiled))
                    failed.add(unit.uid)
                    if len(failed) >= max_skip:
                        self.skip_capped.add(machine.name)
                        machine.cap_key = (entry[0], entry[1], entry[2], entry[3])
                        return
                    for index, least in enumerate(min_need):
                        if least and free[index] - (reserved[index] if reserved else 0) < least:
                            return  # nothing waiting fits what is left here
            if position < 0:
                continue
            heap = heaps[which]
            child = 2 * position + 1
            if child < len(heap):
                heappush(frontier, (heap[child], which, child))
                if child + 1 < len(heap):
                    heappush(frontier, (heap[child + 1], which, child + 1))

    def _least_needs(self) -> list[int]:
        dims = len(self.space.machine_dims)
        least: list[int] | None = None
        for compiled, _count in self._waiting_shapes.values():
            need = [0] * dims
            for index, amount in compiled.need:
                need[index] = amount
            least = need if least is None else [min(a, b) for a, b in zip(least, need, strict=True)]
        return least if least is not None else [0] * dims

    def _try_grant(self, unit: UnitState, machine: MachineState, out: list[Effect], reserved: bool = False) -> int:
        if not self._fits(machine, unit.compiled.need):
            return _NO_FIT
        pools = unit.compiled.pools
        if pools:
            used, capacity = self.space.pool_used, self.space.pool_capacity
            if any(used[i] + a > capacity[i] for i, a in pools):
                self._park(unit, self._pool_blocked)
                return _PARKED
        group = self.quota.groups[unit.app.group]
        verdict = self.quota.allows(group, unit.need_map) if group.limit_items else 1
        if verdict == 0:
            self._park(unit, group.blocked)
            return _PARKED
        held = self._grant(unit, machine, verdict == 2, unit.compiled, None)
        if not reserved:  # a reservation's grant is the preemptor's by right, outside the queues' order
            lowest = self.last_pass_lowest.get(machine.name)
            if lowest is None or held.grant.priority > lowest:
                self.last_pass_lowest[machine.name] = held.grant.priority
        out.append(SendGrant(held.grant))
        return _GRANTED

    def _grant(
        self, unit: UnitState, machine: MachineState, on_loan: bool, compiled: CompiledShape, grant_id: int | None
    ) -> Held:
        app = unit.app
        adopted = grant_id is not None
        if grant_id is None:
            grant_id = self.next_grant_id
            self.next_grant_id += 1
        grant = Grant(grant_id, app.name, unit.name, machine.name, compiled.shape, app.priority, app.group)
        held = Held(grant, unit, machine, compiled, on_loan)
        free = machine.free
        for index, amount in compiled.need:
            free[index] -= amount
        if compiled.pools:
            used = self.space.pool_used
            for index, amount in compiled.pools:
                used[index] += amount
        machine.grants[grant_id] = held
        app.grants[grant_id] = held
        unit.held[grant_id] = held
        self.held[grant_id] = held
        priority = app.priority
        by_priority = self.by_priority.get(priority)
        if by_priority is None:
            by_priority = self.by_priority[priority] = {}
        by_priority[grant_id] = held
        self.quota.add(self.quota.groups[app.group], held)
        unit.granted += 1
        if adopted:
            return held
        if self.policy.fair_share:
            if app.turn > self._vt.get(priority, -1):
                self._vt[priority] = app.turn
            app.turn += 1
        unit.outstanding -= 1
        if unit.outstanding == 0:
            self._stop_waiting(unit)
        return held

    def _serve_reservations(self, machine: MachineState, out: list[Effect]) -> None:
        pending = machine.reservations
        machine.reservations = []
        machine.reserved = None
        kept: list[UnitState] = []
        for unit in pending:
            if machine in unit.reserved_on:
                unit.reserved_on.remove(machine)
            if unit.outstanding <= 0:
                continue
            self._recompute_reserved(machine, kept)
            result = _NO_FIT
            if self._fits(machine, unit.compiled.need):
                result = self._try_grant(unit, machine, out, reserved=True)
            if result == _NO_FIT:
                kept.append(unit)
                unit.reserved_on.append(machine)
        machine.reservations = kept
        self._recompute_reserved(machine)

    def _recompute_reserved(self, machine: MachineState, units: list[UnitState] | None = None) -> None:
        units = machine.reservations if units is None else units
        if not units:
            machine.reserved = None
            return
        reserved = [0] * len(machine.free)
        for unit in units:
            for index, amount in unit.compiled.need:
                reserved[index] += amount
        machine.reserved = reserved

    def reserve(self, unit: UnitState, machine: MachineState) -> None:
        """Promise one unit's shape on ``machine`` to ``unit`` (preemption); served before any queue."""
        machine.reservations.append(unit)
        unit.reserved_on.append(machine)
        self._recompute_reserved(machine)
        self._set_idle(machine)  # filed by what is left besides the reservation: others may still fit there

    # == releasing ====================================================================================================

    def _release(self, held: Held) -> None:
        gid = held.grant.grant_id
        machine, unit = held.machine, held.unit
        app = unit.app
        free = machine.free
        for index, amount in held.need:
            free[index] += amount
        if held.pools:
            used = self.space.pool_used
            for index, amount in held.pools:
                used[index] -= amount
            self._pool_released = True
        machine.cap_key = None  # more room: a pass may reach further
        del machine.grants[gid]
        del app.grants[gid]
        del unit.held[gid]
        del self.held[gid]
        by_priority = self.by_priority[held.grant.priority]
        del by_priority[gid]
        if not by_priority:
            del self.by_priority[held.grant.priority]
        group = self.quota.groups[app.group]
        self.quota.remove(group, held)
        if len(self.quota.groups) > 1 or group.blocked:
            self._quota_released = True
        self._mark_dirty(machine)

    def _revoke(self, held: Held, reason: RevokeReason, out: list[Effect]) -> None:
        held.unit.revoked += 1
        self._release(held)
        out.append(Revoke(held.grant, reason))

    def _revoke_due(self, now_ns: int, out: list[Effect]) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now_ns:
            deadline, gid = heapq.heappop(deadlines)
            held = self.held.get(gid)
            if held is not None and held.notice_deadline_ns == deadline:
                self._revoke(held, RevokeReason.PREEMPTED, out)

    def notice(self, held: Held, deadline_ns: int) -> None:
        held.notice_deadline_ns = deadline_ns
        heapq.heappush(self._deadlines, (deadline_ns, held.grant.grant_id))

    def _expire_machines(self, now_ns: int, out: list[Effect]) -> None:
        timeout = self.policy.heartbeat_timeout_ns
        beats = self._heartbeats
        while beats and beats[0][0] <= now_ns:
            _, name = heapq.heappop(beats)
            machine = self.machines.get(name)
            if machine is None:
                continue
            due = machine.last_heartbeat_ns + timeout
            if due > now_ns:
                heapq.heappush(beats, (due, name))
            else:
                out.extend(self.remove_machine(name, RevokeReason.MACHINE_LOST))

    def _input(self) -> None:
        # The facts about the latest tick only hold until the next input.
        if self.last_pass_lowest:
            self.last_pass_lowest = {}
        if self.skip_capped:
            self.skip_capped = set()
        self.probe_capped = False

    # == lookups =====================================================================================================

    def _app(self, name: str) -> AppState:
        app = self.apps.get(name)
        if app is None:
            raise NotFoundError(f"application {name!r} is not submitted", app=name)
        return app

    def _machine(self, name: str) -> MachineState:
        machine = self.machines.get(name)
        if machine is None:
            raise NotFoundError(f"machine {name!r} is not registered", machine=name)
        return machine

    def _check_priority(self, priority: object) -> None:
        low, high = self.limits.min_priority, self.limits.max_priority
        if isinstance(priority, bool) or not isinstance(priority, int) or not low <= priority <= high:
            raise InvalidArgumentError(
                f"priority {priority!r} is outside [{low}, {high}]",
                hint="smaller numbers are higher priorities",
            )
