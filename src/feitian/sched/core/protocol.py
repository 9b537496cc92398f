"""The incremental protocol's inputs (FUXI-3), checked and applied: declaring units, deltas, returns and full
snapshots of an application master. Functions over the :class:`~feitian.sched.core.allocator.Allocator`; the
sequence numbers themselves are checked by :meth:`Allocator.handle`. Every check runs before anything changes,
so a refused message changed nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from feitian.errors import ConflictError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from feitian.sched.core.records import DemandDelta, DemandSnapshot, Locality, UnitSpec
from feitian.sched.core.resources import CompiledShape, check_name
from feitian.sched.core.state import AppState, UnitState

if TYPE_CHECKING:
    from feitian.sched.core.allocator import Allocator

__all__ = ["apply_delta", "apply_returns", "apply_snapshot", "check_count", "declare"]


def declare(alloc: Allocator, app: AppState, name: str, spec: UnitSpec) -> UnitState:
    check_name("unit", name, alloc.limits)
    if len(app.units) >= alloc.limits.max_units_per_app:
        raise InvalidArgumentError(
            f"application {app.name!r}: max_units_per_app {alloc.limits.max_units_per_app} reached"
        )
    compiled, locality = compile_spec(alloc, f"unit {name!r} of {app.name!r}", spec)
    unit = UnitState(app, name, alloc._next_uid, compiled, locality)
    alloc._next_uid += 1
    racks = [alloc.machines[m].rack for m in locality.machines if m in alloc.machines]
    unit.racks = tuple(dict.fromkeys([*racks, *locality.racks]))
    app.units[name] = unit
    return unit


def compile_spec(alloc: Allocator, what: str, spec: UnitSpec) -> tuple[CompiledShape, Locality]:
    if not isinstance(spec, UnitSpec):
        raise InvalidArgumentError(f"{what}: spec must be a UnitSpec")
    compiled = alloc.space.compile_shape(what, spec.shape)
    locality = spec.locality
    if len(locality.machines) > alloc.limits.max_locality_machines:
        raise InvalidArgumentError(
            f"{what}: {len(locality.machines)} preferred machines, above max_locality_machines "
            f"{alloc.limits.max_locality_machines}"
        )
    if len(locality.racks) > alloc.limits.max_locality_racks:
        raise InvalidArgumentError(
            f"{what}: {len(locality.racks)} preferred racks, above max_locality_racks {alloc.limits.max_locality_racks}"
        )
    for m in locality.machines:
        check_name("machine", m, alloc.limits)
    for r in locality.racks:
        check_name("rack", r, alloc.limits)
    return compiled, locality


def check_unit_ref(alloc: Allocator, app: AppState, name: str, spec: UnitSpec | None) -> UnitState | None:
    unit = app.units.get(name)
    if unit is None:
        if spec is None:
            raise NotFoundError(
                f"application {app.name!r}: unit {name!r} was never declared",
                hint="the first DemandDelta naming a unit carries its spec (shape and locality)",
                unit=name,
            )
        check_name("unit", name, alloc.limits)
        compile_spec(alloc, f"unit {name!r} of {app.name!r}", spec)
        if len(app.units) >= alloc.limits.max_units_per_app:
            raise InvalidArgumentError(
                f"application {app.name!r}: max_units_per_app {alloc.limits.max_units_per_app} reached"
            )
    elif spec is not None and (spec.shape != unit.compiled.shape or spec.locality != unit.locality):
        raise ConflictError(
            f"application {app.name!r}: unit {name!r} was declared with another spec",
            hint="declare a new unit name for a different shape or locality",
            unit=name,
        )
    return unit


def check_count(what: str, value: object, low: int, high: int, bound: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{what} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgumentError(f"{what} = {value} is outside [{low}, {high}] ({bound})")
    return value


def apply_delta(alloc: Allocator, app: AppState, msg: DemandDelta, now_ns: int) -> None:
    bound = alloc.limits.max_delta
    delta = check_count(f"unit {msg.unit!r}: delta", msg.delta, -bound, bound, "max_delta")
    unit = check_unit_ref(alloc, app, msg.unit, msg.spec)
    if delta > 0:
        have = unit.outstanding if unit is not None else 0
        check_count(f"unit {msg.unit!r}: outstanding", have + delta, 0, alloc.limits.max_outstanding, "max_outstanding")
    if unit is None:
        assert msg.spec is not None
        unit = declare(alloc, app, msg.unit, msg.spec)
    alloc._set_outstanding(
        unit, unit.outstanding + delta if delta > 0 else unit.outstanding - min(-delta, unit.outstanding), now_ns
    )


def apply_returns(alloc: Allocator, app: AppState, grant_ids: Sequence[int]) -> None:
    for gid in grant_ids:
        if isinstance(gid, bool) or not isinstance(gid, int) or gid < 1 or gid >= alloc.next_grant_id:
            raise NotFoundError(f"return grant {gid!r}: no such grant was ever issued", grant_id=gid)
        held = alloc.held.get(gid)
        if held is not None and held.unit.app is not app:
            raise PermissionDeniedError(
                f"return grant {gid}: it belongs to application {held.grant.app!r}, not {app.name!r}",
                grant_id=gid,
            )
    for gid in grant_ids:
        held = alloc.held.get(gid)
        if held is not None:  # absent: already returned or revoked; returning it again changes nothing
            held.unit.returned += 1
            alloc._release(held)


def apply_snapshot(alloc: Allocator, app: AppState, msg: DemandSnapshot, now_ns: int) -> None:
    if msg.seq < app.expected_seq:
        return  # an old snapshot delivered late: the stream has moved past it
    if len(msg.units) > alloc.limits.max_snapshot_units or len(msg.held) > alloc.limits.max_snapshot_held:
        raise InvalidArgumentError(
            f"snapshot of {app.name!r}: above max_snapshot_units {alloc.limits.max_snapshot_units} or "
            f"max_snapshot_held {alloc.limits.max_snapshot_held}"
        )
    names = [u.unit for u in msg.units]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"snapshot of {app.name!r}: a unit is listed twice")
    new = 0
    for u in msg.units:
        if check_unit_ref(alloc, app, u.unit, u.spec) is None:
            new += 1
        check_count(f"unit {u.unit!r}: outstanding", u.outstanding, 0, alloc.limits.max_outstanding, "max_outstanding")
    if len(app.units) + new > alloc.limits.max_units_per_app:
        raise InvalidArgumentError(
            f"snapshot of {app.name!r}: max_units_per_app {alloc.limits.max_units_per_app} reached"
        )
    check_count("last_grant_seen", msg.last_grant_seen, 0, 1 << 62, "a grant id")
    held_ids = set(msg.held)
    listed = {}
    for u in msg.units:
        unit = app.units.get(u.unit) or declare(alloc, app, u.unit, u.spec)
        listed[u.unit] = unit
        alloc._set_outstanding(unit, u.outstanding, now_ns)
    for name, unit in app.units.items():
        if name not in listed and unit.outstanding:
            alloc._set_outstanding(unit, 0, now_ns)
    for gid, held in list(app.grants.items()):
        if gid <= msg.last_grant_seen and gid not in held_ids:
            held.unit.returned += 1
            alloc._release(held)
    app.expected_seq = msg.seq + 1
    app.needs_resync = False
