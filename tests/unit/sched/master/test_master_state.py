"""FuxiMaster's pure state (feitian.sched.master.state): applications, Tubo reports, orders, events, failover
adoption — driven directly, no processes, with the allocator's invariants checked after every step."""

from __future__ import annotations

import pytest

from feitian.errors import InvalidArgumentError, NotFoundError
from feitian.sched.core import DemandDelta, Shape, UnitSpec, check
from feitian.sched.master.state import AM_SUFFIX, AppRecord, MachineGone, MachineSeen, MasterState, Persist
from feitian.sched.messages import (
    WAITING,
    AppEnded,
    AppState,
    KillProcess,
    ProcKind,
    ProcReport,
    StartProcess,
    TuboHeartbeat,
    WorkerEnded,
)

S = 1_000_000_000
CAP = {"cpu": 4000, "memory": 4 << 30}


def hb(name: str, *procs: ProcReport, full: bool = False) -> TuboHeartbeat:
    return TuboHeartbeat(name=name, rack="r1", address=f"tcp://{name}", capacity=CAP, full=full, procs=list(procs))


def record(app_id: str, **kw: object) -> AppRecord:
    return AppRecord(app_id=app_id, name=app_id, command=["x"], master_shape={"cpu": 500}, **kw)  # type: ignore[arg-type]


def proc(p: str, app: str, kind: ProcKind, grant: int, state: str = "running", **kw: object) -> ProcReport:
    unit = "master" if kind is ProcKind.MASTER else "work"
    return ProcReport(
        proc_id=p, app_id=app, kind=kind, grant_id=grant, unit=unit, shape={"cpu": 500}, state=state, **kw
    )  # type: ignore[arg-type]


def serving(epoch: int = 1) -> MasterState:
    state = MasterState(epoch)
    state.load([])
    state.heartbeat(hb("m1", full=True), 0, 1.0)
    state.end_recovery()
    return state


def tick(state: MasterState, now: int) -> list[object]:
    out = state.tick(now, now / S)
    assert check(state.alloc) == []
    return out


def test_a_submitted_application_gets_its_master_started_by_the_next_heartbeat() -> None:
    state = serving()
    state.submit(record("app-1"))
    tick(state, 1)
    reply = state.heartbeat(hb("m1"), 2, 1.0)
    starts = [o for o in reply.orders if isinstance(o, StartProcess)]
    assert [o.proc_id for o in starts] == ["app-1.master.1"]
    assert starts[0].grant.app == "app-1" + AM_SUFFIX
    assert (starts[0].grant.grant_id >> 40) == 1, "grant ids carry the epoch"
    # Repeated until the Tubo reports the process, then no more.
    assert state.heartbeat(hb("m1"), 3, 1.0).orders == reply.orders
    state.heartbeat(hb("m1", proc("app-1.master.1", "app-1", ProcKind.MASTER, starts[0].grant.grant_id)), 4, 1.0)
    assert state.heartbeat(hb("m1"), 5, 1.0).orders == []
    assert state.apps["app-1"].record.state is AppState.RUNNING
    assert any(isinstance(e, Persist) for e in tick(state, 6))


def test_a_waiting_master_keeps_its_order_and_its_application_pending() -> None:
    state = serving()
    state.submit(record("app-1"))
    tick(state, 1)
    order = next(o for o in state.heartbeat(hb("m1"), 2, 1.0).orders if isinstance(o, StartProcess))
    waiting = proc("app-1.master.1", "app-1", ProcKind.MASTER, order.grant.grant_id, WAITING, detail="fetching")
    # Repeated while it waits (a Tubo restarted mid-download carries it out again); the application is pending.
    assert state.heartbeat(hb("m1", waiting), 3, 1.0).orders == [order]
    assert state.apps["app-1"].record.state is AppState.PENDING
    [listed] = state.procs_of("app-1")
    assert (listed.proc_id, listed.machine, listed.address, listed.state) == (
        "app-1.master.1",
        "m1",
        "tcp://m1",
        WAITING,
    )
    assert state.nodes(4)[0].processes == 1
    running = proc("app-1.master.1", "app-1", ProcKind.MASTER, order.grant.grant_id)
    assert state.heartbeat(hb("m1", running), 5, 1.0).orders == []
    assert state.apps["app-1"].record.state is AppState.RUNNING
    assert [p.state for p in state.procs_of("app-1")] == ["running"]
    assert state.procs_of("app-404") == []


def test_master_exit_codes_end_or_retry_the_application() -> None:
    state = serving()
    state.submit(record("app-1", max_attempts=2))
    tick(state, 1)
    grant = next(o for o in state.heartbeat(hb("m1"), 2, 1.0).orders if isinstance(o, StartProcess)).grant
    failed = proc("app-1.master.1", "app-1", ProcKind.MASTER, grant.grant_id, "failed", exit_code=3)
    reply = state.heartbeat(hb("m1", failed), 3, 1.0)
    assert [o.proc_id for o in reply.orders if isinstance(o, StartProcess)] == ["app-1.master.2"]
    failed2 = proc("app-1.master.2", "app-1", ProcKind.MASTER, grant.grant_id, "failed", exit_code=4)
    state.heartbeat(hb("m1", failed2), 4, 1.0)
    ended = state.record_of("app-1")
    assert ended.state is AppState.FAILED and ended.exit_code == 4 and ended.attempts == 2
    assert "app-1" not in state.alloc.apps and "app-1" + AM_SUFFIX not in state.alloc.apps
    assert check(state.alloc) == []


def test_kill_revokes_everything_and_orders_its_processes_stopped() -> None:
    state = serving()
    state.submit(record("app-1"))
    tick(state, 1)
    am_grant = next(o for o in state.heartbeat(hb("m1"), 2, 1.0).orders if isinstance(o, StartProcess)).grant
    state.heartbeat(hb("m1", proc("app-1.master.1", "app-1", ProcKind.MASTER, am_grant.grant_id)), 3, 1.0)
    state.am_register("app-1", [], 4)
    state.am_demand("app-1", [DemandDelta("app-1", 1, "work", 2, UnitSpec(Shape.of(cpu=500)))], 5)
    tick(state, 6)
    grants = state.alloc.grants_of("app-1")
    assert len(grants) == 2
    effects = state.kill("app-1", 7.0)
    assert isinstance(effects[0], Persist) and effects[0].record.state is AppState.KILLED
    orders = state.heartbeat(hb("m1"), 8, 1.0).orders
    assert [o.proc_id for o in orders if isinstance(o, KillProcess)] == ["app-1.master.1"]
    events, _, _ = state.events_after("app-1", 0, 1)
    assert isinstance(events[-1], AppEnded) and events[-1].state is AppState.KILLED
    assert state.alloc.machine_free("m1").as_dict() == CAP
    with pytest.raises(NotFoundError):
        state.kill("app-404", 9.0)


def test_a_new_leader_adopts_what_tubos_report_and_kills_nothing() -> None:
    old = serving(epoch=1)
    old.submit(record("app-1"))
    tick(old, 1)
    am = next(o for o in old.heartbeat(hb("m1"), 2, 1.0).orders if isinstance(o, StartProcess)).grant
    reports = [
        proc("app-1.master.1", "app-1", ProcKind.MASTER, am.grant_id),
        proc("app-1.w.a", "app-1", ProcKind.WORKER, 77),
    ]
    # The new leader: hard state only (the application), the machine names known.
    new = MasterState(2)
    new.load([record("app-1", state=AppState.RUNNING, attempts=1)], ["m1"])
    assert new.recovering and not new.recovered()
    assert new.heartbeat(hb("m1"), 10, 1.0).send_full  # unknown machine: a full report first
    reply = new.heartbeat(hb("m1", *reports, full=True), 11, 1.0)
    assert reply.orders == [], "a failover must not kill or start anything"
    assert new.recovered()
    new.end_recovery()
    assert new.alloc.grant(77) is not None and new.alloc.grant(am.grant_id) is not None
    tick(new, 12)
    assert new.heartbeat(hb("m1"), 13, 1.0).orders == []  # its master is known: none started again
    assert new.alloc.next_grant_id >> 40 == 2


def test_machines_seen_and_lost_are_effects_for_the_hard_state() -> None:
    state = MasterState(1)
    state.load([])
    state.heartbeat(hb("m1", full=True), 0, 1.0)
    state.end_recovery()
    assert MachineSeen("m1") in state.take_persist()
    gone = tick(state, 11 * S)  # past the heartbeat timeout (10 s)
    assert MachineGone("m1") in gone and "m1" not in state.machines


def test_a_process_of_an_ended_or_unknown_application_is_stopped() -> None:
    state = serving()
    reply = state.heartbeat(hb("m1", proc("ghost.w.1", "ghost", ProcKind.WORKER, 5)), 1, 1.0)
    assert [o.proc_id for o in reply.orders if isinstance(o, KillProcess)] == ["ghost.w.1"]


def test_worker_ends_become_events_once() -> None:
    state = serving()
    state.submit(record("app-1"))
    tick(state, 1)
    am = next(o for o in state.heartbeat(hb("m1"), 2, 1.0).orders if isinstance(o, StartProcess)).grant
    state.heartbeat(hb("m1", proc("app-1.master.1", "app-1", ProcKind.MASTER, am.grant_id)), 3, 1.0)
    state.am_demand("app-1", [DemandDelta("app-1", 1, "work", 1, UnitSpec(Shape.of(cpu=500)))], 4)
    tick(state, 5)
    (grant,) = state.alloc.grants_of("app-1")
    ended = proc("app-1.w.a", "app-1", ProcKind.WORKER, grant.grant_id, "oom_killed", exit_code=137)
    state.heartbeat(hb("m1", proc("app-1.w.a", "app-1", ProcKind.WORKER, grant.grant_id)), 6, 1.0)
    state.heartbeat(hb("m1", ended), 7, 1.0)
    state.heartbeat(hb("m1", ended, full=True), 8, 1.0)  # reported again: not a second event
    events, _, _ = state.events_after("app-1", 0, 1)
    assert [e.state for e in events if isinstance(e, WorkerEnded)] == ["oom_killed"]


def test_bad_submissions_are_refused_naming_what() -> None:
    state = serving()
    for bad, what in [
        (record("a", priority=-1), "priority"),
        (AppRecord(app_id="a", name="a", command=[]), "empty"),
        (record("a", group="nope"), "quota group"),
        (AppRecord(app_id="a", name="a", command=["x"], master_shape={"gpu": 1}), "gpu"),
        (record("a", max_attempts=0), "max_attempts"),
        (AppRecord(app_id="a", name="a", command=["x" * 40_000]), "bytes"),
    ]:
        with pytest.raises((InvalidArgumentError, NotFoundError), match=what):
            state.check_submit(bad)


def test_the_event_log_is_bounded_and_a_master_behind_it_is_asked_to_resync() -> None:
    from feitian.sched.master.state import MasterLimits

    state = MasterState(1, master_limits=MasterLimits(max_events_per_app=4))
    state.load([])
    state.heartbeat(hb("m1", full=True), 0, 1.0)
    state.end_recovery()
    state.submit(record("app-1"))
    state.am_demand("app-1", [DemandDelta("app-1", 1, "work", 6, UnitSpec(Shape.of(cpu=100)))], 1)
    tick(state, 2)
    runtime = state.apps["app-1"]
    assert len(runtime.events) == 4
    events, _, _ = state.events_after("app-1", 0, 1)
    assert type(events[0]).__name__ == "AskResync"
