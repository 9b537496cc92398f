"""The policies of FUXI-4 as the seed states them: priority (smaller = higher; ties by submission time), fair
rounds within a priority, leftovers to the next priority group; locality with delay relaxation; health."""

from __future__ import annotations

from sched_fixtures import CORE, GIB, SECOND_NS, SLOT, Sim, count_by_app, grants

from feitian.sched.core import SchedPolicy, Shape


def test_higher_priority_first_remainder_to_the_next() -> None:
    sim = Sim()
    sim.machine("m1")  # 4 slots
    sim.app("batch", priority=9)
    sim.app("urgent", priority=1)
    sim.want("batch", 10)
    sim.want("urgent", 3)
    got = grants(sim.tick())
    assert count_by_app(got) == {"urgent": 3, "batch": 1}
    assert [g.app for g in got][:3] == ["urgent"] * 3  # decided in priority order


def test_ties_by_submission_time_without_fair_share() -> None:
    sim = Sim(SchedPolicy(fair_share=False))
    sim.machine("m1")
    sim.app("first", priority=5)
    sim.app("second", priority=5)
    sim.want("second", 10)  # asks first, but was submitted second
    sim.want("first", 10)
    assert count_by_app(grants(sim.tick())) == {"first": 4}


def test_fair_rounds_within_one_priority() -> None:
    sim = Sim()
    for i in range(3):
        sim.machine(f"m{i}")  # 12 slots
    sim.app("big", priority=5)
    sim.app("small", priority=5)
    sim.app("mid", priority=5)
    sim.app("low", priority=7)
    sim.want("big", 1000)
    sim.want("small", 2)
    sim.want("mid", 1000)
    sim.want("low", 1000)
    got = grants(sim.tick())
    # Rounds of one grant each: small gets its 2, the other 10 alternate between big and mid; nothing is left
    # for the next priority group.
    assert count_by_app(got) == {"big": 5, "small": 2, "mid": 5}
    # Within a round, the first submitted goes first.
    assert [g.app for g in got[:3]] == ["big", "small", "mid"]


def test_leftovers_go_to_the_next_priority_group() -> None:
    sim = Sim()
    sim.machine("m1", cpu=8 * CORE)
    sim.app("a", priority=1)
    sim.app("b", priority=1)
    sim.app("c", priority=3)
    sim.want("a", 2)
    sim.want("b", 3)
    sim.want("c", 10)
    assert count_by_app(grants(sim.tick())) == {"a": 2, "b": 3, "c": 3}


def test_an_application_joining_late_gets_its_share_not_a_catch_up_burst() -> None:
    sim = Sim()
    sim.machine("m1", cpu=2 * CORE)
    sim.app("old", priority=5)
    sim.app("new", priority=5)
    sim.want("old", 1000)
    first = grants(sim.tick())
    assert count_by_app(first) == {"old": 2}
    sim.want("new", 1000)
    # old returns its grants one by one; the freed slots alternate between the two apps
    order = []
    for g in first:
        sim.give_back("old", g.grant_id)
        order += [x.app for x in grants(sim.tick())]
    held = {g.grant_id: g for g in sim.held("old") + sim.held("new")}
    for _ in range(6):
        gid = min(held)
        app = held.pop(gid).app
        sim.give_back(app, gid)
        for x in grants(sim.tick()):
            held[x.grant_id] = x
            order.append(x.app)
    assert order.count("new") >= 3 and order.count("old") >= 3, order
    assert "old,old,old" not in ",".join(order), order


def test_multi_dimensional_fit() -> None:
    sim = Sim()
    sim.machine("m1", cpu=8 * CORE, memory=4 * GIB)
    sim.app("mem", priority=5)
    sim.want("mem", 10, shape=Shape.of(cpu=CORE, memory=2 * GIB))
    got = grants(sim.tick())
    assert len(got) == 2  # memory, not cpu, is the limit
    free = sim.alloc.machine_free("m1")
    assert free.get("memory") == 0 and free.get("cpu") == 6 * CORE


def test_big_heads_that_do_not_fit_are_skipped_not_blocking() -> None:
    sim = Sim()
    sim.machine("m1", cpu=4 * CORE)
    sim.app("huge", priority=1)
    sim.app("small", priority=5)
    sim.want("huge", 1, shape=Shape.of(cpu=64 * CORE))
    sim.want("small", 2)
    assert count_by_app(grants(sim.tick())) == {"small": 2}
    assert sim.alloc.outstanding("huge", "w") == 1


def test_locality_waits_then_relaxes_to_the_rack_then_anywhere() -> None:
    policy = SchedPolicy(relax_rack_after_ns=3 * SECOND_NS, relax_any_after_ns=6 * SECOND_NS)
    sim = Sim(policy)
    sim.machine("a1", rack="ra", cpu=CORE)
    sim.machine("a2", rack="ra", cpu=CORE)
    sim.machine("b1", rack="rb", cpu=CORE)
    sim.app("filler", priority=1)
    sim.want("filler", 1, machines=["a1"])
    assert [g.machine for g in grants(sim.tick())] == ["a1"]
    sim.app("job", priority=5)
    sim.want("job", 3, machines=["a1"])
    assert grants(sim.tick(SECOND_NS)) == []  # a1 is busy; a2 and b1 are free but not preferred yet
    assert grants(sim.tick(SECOND_NS)) == []
    assert [g.machine for g in grants(sim.tick(SECOND_NS))] == ["a2"]  # 3 s: the rack
    assert grants(sim.tick(2 * SECOND_NS)) == []
    assert [g.machine for g in grants(sim.tick(SECOND_NS))] == ["b1"]  # 6 s: anywhere
    assert sim.alloc.outstanding("job", "w") == 1


def test_preferred_machine_is_used_at_once_when_free() -> None:
    sim = Sim()
    sim.machine("a1", rack="ra")
    sim.machine("b1", rack="rb")
    sim.app("job")
    sim.want("job", 2, machines=["b1"])
    assert {g.machine for g in grants(sim.tick())} == {"b1"}


def test_preferred_racks_without_machines() -> None:
    sim = Sim()
    sim.machine("a1", rack="ra")
    sim.machine("b1", rack="rb")
    sim.app("job")
    sim.want("job", 3, racks=["rb"])
    assert {g.machine for g in grants(sim.tick())} == {"b1"}


def test_unhealthy_machines_get_no_new_grants() -> None:
    sim = Sim()
    sim.machine("m1")
    sim.machine("m2")
    sim.app("job")
    sim.alloc.set_machine_health("m1", False, sim.now)
    sim.want("job", 8)
    got = grants(sim.tick())
    assert {g.machine for g in got} == {"m2"} and len(got) == 4
    sim.alloc.set_machine_health("m1", True, sim.now)
    assert {g.machine for g in grants(sim.tick())} == {"m1"}


def test_returned_grant_is_granted_again_without_asking_again() -> None:
    sim = Sim()
    sim.machine("m1", cpu=CORE)
    sim.app("job")
    sim.want("job", 1000)  # asked once (FUXI-3)
    (first,) = grants(sim.tick())
    assert grants(sim.tick()) == []
    sim.give_back("job", first.grant_id)
    (second,) = grants(sim.tick())
    assert second.grant_id != first.grant_id and second.machine == "m1"
    assert sim.alloc.outstanding("job", "w") == 998


def test_slot_shape_is_what_the_grant_names() -> None:
    sim = Sim()
    sim.machine("m1")
    sim.app("job", priority=3)
    sim.want("job", 1)
    (g,) = grants(sim.tick())
    assert (g.app, g.unit, g.machine, g.shape, g.priority, g.group) == ("job", "w", "m1", SLOT, 3, "default")


def test_next_deadline_names_the_earliest_timer() -> None:
    sim = Sim(SchedPolicy(relax_rack_after_ns=3 * SECOND_NS, heartbeat_timeout_ns=10 * SECOND_NS))
    sim.machine("a1", rack="ra", cpu=CORE)
    assert sim.alloc.next_deadline_ns() == 10 * SECOND_NS  # the heartbeat expiry
    sim.app("filler", priority=1)
    sim.want("filler", 1)
    sim.tick()
    sim.app("job")
    sim.now = SECOND_NS
    sim.want("job", 1, machines=["a1"])
    assert sim.alloc.next_deadline_ns() == 4 * SECOND_NS  # the unit's relaxation to its rack


def test_fair_rounds_hold_below_a_head_that_does_not_fit() -> None:
    sim = Sim()
    sim.machine("m1", cpu=4 * CORE)
    sim.app("huge", priority=1)
    sim.app("a", priority=5)
    sim.app("b", priority=5)
    sim.want("huge", 1, shape=Shape.of(cpu=8 * CORE))  # at the top of the queue, never fits
    sim.want("a", 10)
    sim.want("b", 10)
    got = grants(sim.tick())
    assert [g.app for g in got] == ["a", "b", "a", "b"]
