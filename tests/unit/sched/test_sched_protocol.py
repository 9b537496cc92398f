"""The incremental protocol (FUXI-3): deltas with sequence numbers, resync on a gap or duplicate, full
snapshots; returning grants; adopting grants after a master failover; virtual resources."""

from __future__ import annotations

import pytest
from sched_fixtures import CORE, SLOT, Sim, grants

from feitian.errors import ConflictError, NotFoundError, PermissionDeniedError
from feitian.sched.core import (
    AskResync,
    DemandDelta,
    DemandSnapshot,
    ResourceScope,
    ReturnGrants,
    Shape,
    UnitDemand,
    UnitSpec,
)


def one_machine(slots: int = 4) -> Sim:
    sim = Sim()
    sim.machine("m1", cpu=slots * CORE)
    sim.app("job")
    return sim


def test_deltas_add_and_cancel_outstanding_demand() -> None:
    sim = one_machine(slots=0 + 1)
    sim.want("job", 1000)
    sim.want("job", -200)
    assert sim.alloc.outstanding("job", "w") == 800
    assert len(grants(sim.tick())) == 1
    sim.want("job", -5000)  # cancels what is outstanding, never grants already sent
    assert sim.alloc.outstanding("job", "w") == 0 and len(sim.held("job")) == 1
    unit = sim.alloc.apps["job"].units["w"]
    assert (unit.requested, unit.cancelled, unit.granted) == (1000, 999, 1)


def test_a_gap_asks_for_resync_and_refuses_deltas_until_a_snapshot() -> None:
    sim = one_machine()
    sim.want("job", 10)
    lost = sim.next_seq("job")  # this message never arrives
    out = sim.alloc.handle(DemandDelta("job", lost + 1, "w", 5), sim.now)
    assert out == [AskResync("job", expected_seq=lost, got_seq=lost + 1)]
    out = sim.alloc.handle(DemandDelta("job", lost + 2, "w", 5), sim.now)
    assert isinstance(out[0], AskResync)  # refused until the snapshot
    assert sim.alloc.outstanding("job", "w") == 10
    snap = DemandSnapshot("job", lost + 3, (UnitDemand("w", UnitSpec(SLOT), 42),), held=(), last_grant_seen=0)
    assert sim.alloc.handle(snap, sim.now) == []
    sim.checked()
    assert sim.alloc.outstanding("job", "w") == 42
    assert sim.alloc.handle(DemandDelta("job", lost + 4, "w", 1), sim.now) == []
    assert sim.alloc.outstanding("job", "w") == 43


def test_a_duplicate_asks_for_resync_and_is_not_applied_twice() -> None:
    sim = one_machine()
    sim.want("job", 10)
    out = sim.alloc.handle(DemandDelta("job", 1, "w", 10), sim.now)
    assert out == [AskResync("job", expected_seq=2, got_seq=1)]
    assert sim.alloc.outstanding("job", "w") == 10


def test_snapshot_returns_seen_grants_it_does_not_hold_and_keeps_those_in_flight() -> None:
    sim = one_machine(slots=4)
    sim.want("job", 3)
    first = grants(sim.tick())
    assert len(first) == 3
    kept, dropped, in_flight = (g.grant_id for g in first)
    snap = DemandSnapshot(
        "job", sim.next_seq("job"), (UnitDemand("w", UnitSpec(SLOT), 0),), held=(kept,), last_grant_seen=dropped
    )
    sim.alloc.handle(snap, sim.now)
    sim.checked()
    assert {g.grant_id for g in sim.held("job")} == {kept, in_flight}


def test_an_old_snapshot_delivered_late_is_ignored() -> None:
    sim = one_machine()
    sim.want("job", 5)
    sim.want("job", 5)
    stale = DemandSnapshot("job", 1, (UnitDemand("w", UnitSpec(SLOT), 0),), held=(), last_grant_seen=0)
    assert sim.alloc.handle(stale, sim.now) == []
    assert sim.alloc.outstanding("job", "w") == 10


def test_snapshot_drops_demand_of_units_it_does_not_list() -> None:
    sim = one_machine(slots=0 + 1)
    sim.want("job", 5, unit="a")
    sim.want("job", 5, unit="b", shape=Shape.of(cpu=CORE))
    snap = DemandSnapshot("job", sim.next_seq("job"), (UnitDemand("a", UnitSpec(SLOT), 2),), (), 0)
    sim.alloc.handle(snap, sim.now)
    sim.checked()
    assert (sim.alloc.outstanding("job", "a"), sim.alloc.outstanding("job", "b")) == (2, 0)


def test_returning_grants_frees_them_once() -> None:
    sim = one_machine(slots=2)
    sim.want("job", 2)
    a, b = (g.grant_id for g in grants(sim.tick()))
    sim.give_back("job", a, a)
    sim.give_back("job", a)  # already returned: nothing changes
    assert [g.grant_id for g in sim.held("job")] == [b]
    assert sim.alloc.apps["job"].units["w"].returned == 1


def test_a_grant_that_is_not_yours_is_refused() -> None:
    sim = one_machine(slots=2)
    sim.app("other")
    sim.want("job", 1)
    (g,) = grants(sim.tick())
    with pytest.raises(PermissionDeniedError, match="belongs to application 'job'"):
        sim.alloc.handle(ReturnGrants("other", 1, (g.grant_id,)), sim.now)
    with pytest.raises(NotFoundError, match="was ever issued"):
        sim.alloc.handle(ReturnGrants("other", 1, (999,)), sim.now)
    # a refused message consumes no seq number: the corrected one goes with the same seq
    assert sim.alloc.handle(ReturnGrants("other", 1, ()), sim.now) == []
    assert len(sim.held("job")) == 1


def test_adopt_grant_rebuilds_soft_state_without_sending_or_killing() -> None:
    old = one_machine(slots=4)
    old.want("job", 10)
    held = grants(old.tick())
    new = Sim()
    new.machine("m1", cpu=4 * CORE)
    new.app("job")
    for g in held:
        new.alloc.adopt_grant(g.app, g.unit, g.machine, g.shape, g.grant_id, new.now)
        new.checked()
    assert {g.grant_id for g in new.held("job")} == {g.grant_id for g in held}
    assert new.alloc.machine_free("m1").get("cpu") == 0
    assert new.alloc.next_grant_id > max(g.grant_id for g in held)
    # the application master re-registers with its remaining demand; grants continue with fresh ids
    snap = DemandSnapshot(
        "job", 1, (UnitDemand("w", UnitSpec(SLOT), 6),), held=tuple(g.grant_id for g in held), last_grant_seen=4
    )
    new.alloc.handle(snap, new.now)
    assert grants(new.tick()) == []
    with pytest.raises(ConflictError, match="does not fit"):
        new.alloc.adopt_grant("job", "w", "m1", SLOT, 99, new.now)
    with pytest.raises(ConflictError, match="another spec"):
        new.alloc.handle(DemandDelta("job", 2, "w", 1, UnitSpec(Shape.of(cpu=7))), new.now)
    new.seq["job"] = 1
    new.want("job", 1, shape=None)
    new.give_back("job", held[0].grant_id)
    (g,) = grants(new.tick())
    assert g.grant_id > max(x.grant_id for x in held)


def test_per_machine_virtual_resources() -> None:
    sim = Sim()
    sim.alloc.define_resource("gpu", ResourceScope.MACHINE)
    sim.machine("plain")
    sim.machine("gpu1", gpu=2)
    sim.app("train")
    sim.want("train", 5, shape=Shape.of(cpu=CORE, gpu=1))
    got = grants(sim.tick())
    assert [g.machine for g in got] == ["gpu1", "gpu1"]
    assert sim.alloc.machine_free("gpu1").get("gpu") == 0


def test_cluster_pool_limits_grants_across_machines_and_refills() -> None:
    sim = Sim()
    sim.alloc.define_resource("licence", ResourceScope.CLUSTER, pool_amount=3)
    sim.machine("m1")
    sim.machine("m2")
    sim.app("tool")
    sim.app("plain", priority=9)
    sim.want("tool", 10, shape=Shape.of(cpu=CORE, licence=1))
    sim.want("plain", 10)
    got = grants(sim.tick())
    assert sum(1 for g in got if g.app == "tool") == 3
    assert sum(1 for g in got if g.app == "plain") == 5  # the parked tool units do not block others
    tool = [g for g in got if g.app == "tool"]
    sim.give_back("tool", tool[0].grant_id)
    again = grants(sim.tick())
    assert [g.app for g in again] == ["tool"]
    sim.alloc.set_pool("licence", 5)
    sim.checked()
    plain = [g for g in sim.held("plain")]
    sim.give_back("plain", plain[0].grant_id, plain[1].grant_id)
    assert [g.app for g in grants(sim.tick())] == ["tool", "tool"]
