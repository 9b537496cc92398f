"""Quota groups with lending and reclaim; preemption order, the never-higher rule, notices and revocation."""

from __future__ import annotations

import pytest
from sched_fixtures import CORE, GIB, SECOND_NS, Sim, count_by_app, grants, notices, revokes

from feitian.sched.core import PreemptReason, RevokeReason, SchedPolicy, Shape

CPU = Shape.of(cpu=CORE)
FAST = SchedPolicy(
    preempt_after_ns=SECOND_NS,
    preempt_notice_ns=5 * SECOND_NS,
    preempt_retry_ns=SECOND_NS,
    heartbeat_timeout_ns=3600 * SECOND_NS,
)


def quota_sim(policy: SchedPolicy = FAST, cores: int = 8) -> Sim:
    sim = Sim(policy)
    sim.machine("m1", cpu=cores * CORE, memory=64 * GIB)
    sim.alloc.set_quota("A", {"cpu": 2 * CORE})
    sim.alloc.set_quota("B", {"cpu": 1 * CORE})
    sim.alloc.set_quota("C", {"cpu": 1 * CORE})
    return sim


def test_a_group_never_exceeds_its_quota_plus_what_it_may_borrow() -> None:
    sim = quota_sim()
    sim.app("a", group="A")
    sim.want("a", 100, shape=CPU)
    # B's idle 1 core is lent to A and C in proportion 2:1 (A gets 2/3), C's likewise: A may borrow 1.333 cores.
    assert sim.alloc.borrowable("A").get("cpu") == 1333
    assert len(grants(sim.tick())) == 3  # 2 own + 1 on loan, the cluster still has 5 cores free
    assert sim.alloc.group_usage("A").get("cpu") == 3 * CORE
    assert sum(1 for h in sim.alloc.quota.groups["A"].grants.values() if h.on_loan) == 1


def test_lending_follows_the_other_groups_use() -> None:
    sim = quota_sim()
    sim.app("b", group="B")
    sim.want("b", 1, shape=CPU)
    assert len(grants(sim.tick())) == 1  # B uses its whole quota: nothing of B's to lend
    sim.app("a", group="A")
    sim.want("a", 100, shape=CPU)
    assert len(grants(sim.tick())) == 2  # A may borrow only C's idle share: 2/3 core, less than a unit
    assert sim.alloc.borrowable("A").get("cpu") == 666


def test_unlimited_default_group_is_not_limited() -> None:
    sim = quota_sim()
    sim.app("free")
    sim.want("free", 100, shape=CPU)
    assert len(grants(sim.tick())) == 8


def test_quota_blocked_units_come_back_when_usage_drops() -> None:
    sim = quota_sim()
    sim.app("a", group="A")
    sim.want("a", 100, shape=CPU)
    held = grants(sim.tick())
    assert len(held) == 3 and grants(sim.tick(SECOND_NS)) == []
    sim.give_back("a", held[0].grant_id)
    assert len(grants(sim.tick())) == 1


def test_reclaim_preempts_borrowed_grants_first() -> None:
    sim = quota_sim(cores=3)
    sim.app("a", group="A", priority=1)  # a higher priority than the owner: reclaim still applies
    sim.want("a", 100, shape=CPU)
    held = grants(sim.tick())
    assert len(held) == 3  # the cluster is full, one of them on loan
    loaned = [gid for gid, h in sim.alloc.quota.groups["A"].loan_grants.items()]
    sim.app("b", group="B", priority=5)
    sim.want("b", 1, shape=CPU)  # within B's own quota
    assert notices(sim.tick()) == []  # not urgent yet
    out = sim.tick(SECOND_NS)
    (notice,) = notices(out)
    assert notice.reason is PreemptReason.RECLAIM and notice.grant.grant_id in loaned
    assert notice.deadline_ns == sim.now + 5 * SECOND_NS
    assert notices(sim.tick(SECOND_NS)) == []  # one notice per unit needed, not one per tick
    out = sim.tick(4 * SECOND_NS)  # the deadline: revoked, and the freed core goes to b
    assert [r.grant.grant_id for r in revokes(out)] == [notice.grant.grant_id]
    assert revokes(out)[0].reason is RevokeReason.PREEMPTED
    assert count_by_app(grants(out)) == {"b": 1}


def test_reclaim_can_obey_the_priority_rule() -> None:
    sim = quota_sim(SchedPolicy(preempt_after_ns=0, reclaim_ignores_priority=False), cores=3)
    sim.app("a", group="A", priority=1)
    sim.want("a", 100, shape=CPU)
    assert len(grants(sim.tick())) == 3
    sim.app("b", group="B", priority=5)
    sim.want("b", 1, shape=CPU)
    assert notices(sim.tick(SECOND_NS)) == []


def preemption_sim() -> Sim:
    sim = Sim(FAST)
    sim.machine("m1", cpu=2 * CORE)
    sim.machine("m2", cpu=2 * CORE)
    sim.machine("m3", cpu=2 * CORE)
    for name, priority in (("p1", 1), ("p5", 5), ("p9", 9)):
        sim.app(name, priority=priority)
        sim.want(name, 2, shape=CPU)
        sim.tick()
    return sim


def test_preemption_takes_the_lowest_priority_first_and_never_higher() -> None:
    sim = preemption_sim()
    sim.app("urgent", priority=3)
    sim.want("urgent", 10, shape=CPU)
    out = sim.tick(SECOND_NS)
    victims = [n.grant for n in notices(out)]
    # p9's two grants first, then p5's; p1 (higher) and urgent's own priority are never touched.
    assert [v.app for v in victims] == ["p9", "p9", "p5", "p5"]
    assert all(n.reason is PreemptReason.PRIORITY for n in notices(out))
    out = sim.tick(10 * SECOND_NS)
    assert {r.grant.app for r in revokes(out)} == {"p9", "p5"}
    assert count_by_app(grants(out)) == {"urgent": 4}
    assert notices(sim.tick(10 * SECOND_NS)) == []  # only p1 and urgent itself run now
    assert len(sim.held("p1")) == 2


def test_equal_priority_is_never_preempted() -> None:
    sim = preemption_sim()
    sim.app("peer", priority=9)
    sim.want("peer", 1, shape=CPU)
    assert notices(sim.tick(10 * SECOND_NS)) == []


def test_a_victim_that_returns_in_time_is_not_revoked_and_the_preemptor_gets_it() -> None:
    sim = preemption_sim()
    sim.app("late", priority=9)  # waiting, lower than the preemptor: must not take the freed core
    sim.want("late", 5, shape=CPU)
    sim.app("urgent", priority=3)
    sim.want("urgent", 1, shape=CPU)
    out = sim.tick(SECOND_NS)
    (notice,) = notices(out)
    assert notice.grant.app == "p9"
    sim.give_back("p9", notice.grant.grant_id)
    out = sim.tick()
    assert count_by_app(grants(out)) == {"urgent": 1}
    assert grants(out)[0].machine == notice.grant.machine
    assert revokes(sim.tick(10 * SECOND_NS)) == []


def test_revocation_happens_at_the_deadline_not_before() -> None:
    sim = preemption_sim()
    sim.app("urgent", priority=0)
    sim.want("urgent", 1, shape=CPU)
    (notice,) = notices(sim.tick(SECOND_NS))
    sim.now = notice.deadline_ns - 1
    assert revokes(sim.tick()) == []
    out = sim.tick(1)
    assert [r.grant.grant_id for r in revokes(out)] == [notice.grant.grant_id]


def test_no_preemption_before_the_wait() -> None:
    sim = preemption_sim()
    sim.app("urgent", priority=0)
    sim.want("urgent", 1, shape=CPU)
    assert notices(sim.tick(SECOND_NS - 1)) == []
    assert len(notices(sim.tick(1))) == 1


def test_preemption_respects_locality() -> None:
    sim = preemption_sim()
    sim.app("urgent", priority=2)
    sim.want("urgent", 1, shape=CPU, machines=["m1"])  # m1 runs p1's grants only, of a higher priority
    assert [g.machine for g in sim.held("p1")] == ["m1", "m1"]
    assert notices(sim.tick(SECOND_NS)) == []
    (notice,) = notices(sim.tick(3 * SECOND_NS))  # relaxed to anywhere (6 s): a lower-priority victim elsewhere
    assert notice.grant.app == "p9"


@pytest.mark.parametrize("notice_s", [0, 3])
def test_a_preemptor_needing_several_victims_gets_them_on_one_machine(notice_s: int) -> None:
    sim = Sim(SchedPolicy(preempt_after_ns=0, preempt_notice_ns=notice_s * SECOND_NS))
    sim.machine("m1", cpu=2 * CORE)
    sim.machine("m2", cpu=2 * CORE)
    sim.app("small", priority=9)
    sim.want("small", 4, shape=CPU)
    sim.tick()
    sim.app("big", priority=1)
    sim.want("big", 1, shape=Shape.of(cpu=2 * CORE))
    out = sim.tick(1)
    assert len({n.grant.machine for n in notices(out)}) == 1 and len(notices(out)) == 2
    out += sim.tick(notice_s * SECOND_NS)
    assert count_by_app(grants(out)) == {"big": 1}


def test_machine_loss_revokes_its_grants_and_tells_the_owners() -> None:
    sim = Sim(SchedPolicy(heartbeat_timeout_ns=10 * SECOND_NS))
    sim.machine("m1")
    sim.machine("m2")
    sim.app("job")
    sim.want("job", 8)
    sim.tick()
    for _ in range(3):
        sim.now += 4 * SECOND_NS
        sim.alloc.machine_heartbeat("m1", sim.now)
        out = sim.tick()
    lost = revokes(out)
    assert {r.grant.machine for r in lost} == {"m2"} and len(lost) == 4
    assert all(r.reason is RevokeReason.MACHINE_LOST and r.grant.app == "job" for r in lost)
    assert "m2" not in sim.alloc.machines and len(sim.held("job")) == 4


def test_removing_a_machine_revokes_its_grants() -> None:
    sim = Sim()
    sim.machine("m1")
    sim.app("job")
    sim.want("job", 2)
    sim.tick()
    out = sim.alloc.remove_machine("m1")
    sim.checked()
    assert len(revokes(out)) == 2 and all(r.reason is RevokeReason.MACHINE_REMOVED for r in revokes(out))


def test_finishing_an_application_revokes_its_grants() -> None:
    sim = Sim()
    sim.machine("m1")
    sim.app("job")
    sim.app("next")
    sim.want("job", 4)
    sim.want("next", 4)
    sim.tick()
    out = sim.alloc.finish_app("job")
    sim.checked()
    assert len(revokes(out)) == 2  # fair rounds gave each two
    assert count_by_app(grants(sim.tick())) == {"next": 2}


def test_a_unit_limited_to_its_rack_preempts_there_the_least_important_work() -> None:
    policy = SchedPolicy(
        preempt_after_ns=0, relax_rack_after_ns=0, relax_any_after_ns=3600 * SECOND_NS, heartbeat_timeout_ns=10**15
    )
    sim = Sim(policy)
    sim.machine("a1", rack="ra", cpu=CORE)
    sim.machine("a2", rack="ra", cpu=CORE)
    sim.machine("b1", rack="rb", cpu=CORE)
    for name, priority, machine in (("p6", 6, "a1"), ("p8", 8, "a2"), ("p9", 9, "b1")):
        sim.app(name, priority=priority)
        sim.want(name, 1, shape=CPU, machines=[machine])
        sim.tick()
    sim.app("urgent", priority=1)
    sim.want("urgent", 1, shape=CPU, machines=["a1"])
    (notice,) = notices(sim.tick(1))
    # rack ra only: p9 on rack rb is out of reach; p8 is less important than p6
    assert (notice.grant.app, notice.grant.machine, notice.reason) == ("p8", "a2", PreemptReason.PRIORITY)


def test_lowering_a_quota_revokes_nothing_and_makes_the_excess_a_loan() -> None:
    sim = quota_sim()
    sim.app("a", group="A")
    sim.want("a", 2, shape=CPU)
    assert len(grants(sim.tick())) == 2
    sim.alloc.set_quota("A", {"cpu": CORE})
    sim.checked()  # usage not on loan stays within the new quota
    assert len(sim.held("a")) == 2
    assert len(sim.alloc.quota.groups["A"].loan_grants) == 1
