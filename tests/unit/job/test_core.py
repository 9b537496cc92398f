"""The JobMaster core, driven event by event (FUXI-7..11); the invariant checker runs after every step."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from feitian.errors import ConfigError, DataCorruptionError, InvalidArgumentError
from feitian.job.core import (
    AttemptRef,
    BlacklistMachine,
    CancelAttempt,
    CancelReason,
    CommitAttempt,
    EdgeDef,
    Effect,
    FinishedAttempt,
    JobCore,
    JobFinished,
    JobGraph,
    JobPolicy,
    Pattern,
    ReleaseReason,
    ReleaseWorker,
    StartInstance,
    TaskDef,
    WantWorkers,
    WorkerReport,
    check,
    slow_criteria,
)
from feitian.sched.core import Locality

S = 1_000_000_000


class Run:
    """A core plus the effects it returned; every call is followed by the invariant check."""

    def __init__(self, core: JobCore) -> None:
        self.core = core
        self.effects: list[Effect] = []

    def __call__(self, fn: Callable[..., list[Effect]], *args: object) -> list[Effect]:
        out = fn(*args)
        assert check(self.core) == []
        self.effects.extend(out)
        return out

    def started(self, out: list[Effect]) -> list[StartInstance]:
        return [e for e in out if isinstance(e, StartInstance)]


def graph_map_reduce(maps: int = 4, reduces: int = 2, **kw: object) -> JobGraph:
    return JobGraph(
        [TaskDef("map", maps, **kw), TaskDef("reduce", reduces)],  # type: ignore[arg-type]
        [EdgeDef("map", "reduce", Pattern.HASH)],
    )


def wants(out: list[Effect]) -> dict[tuple[str, str], int]:
    return {(e.task, e.unit): e.delta for e in out if isinstance(e, WantWorkers)}


def test_map_reduce_runs_reduces_only_after_every_map_and_reuses_workers() -> None:
    run = Run(JobCore(graph_map_reduce(4, 2)))
    out = run(run.core.start, 0)
    assert wants(out) == {("map", "map"): 4}  # one worker per runnable instance, none for the waiting reduces
    out = run(run.core.worker_started, 1, "w1", "map", "m1", "map")
    (start,) = run.started(out)
    assert start.ref == AttemptRef("map", 0, 1, 1) and start.worker_id == "w1" and not start.backup
    # the grant consumed one outstanding worker: the core still wants 3 (for 3 runnable maps) and says nothing
    assert wants(out) == {}
    for i in range(4):
        out = run(run.core.attempt_finished, 10 + i, "w1", AttemptRef("map", i, 1, 1), b"out%d" % i, 100)
        assert [e for e in out if isinstance(e, CommitAttempt)] == [
            CommitAttempt(AttemptRef("map", i, 1, 1), "w1", b"out%d" % i, duration_ns=9 if i == 0 else 1, processed=100)
        ]
        if i < 3:
            # worker reuse: the same worker gets the next map, reduces still wait
            assert [s.ref.index for s in run.started(out)] == [i + 1]
            assert not any(isinstance(e, WantWorkers) and e.task == "reduce" for e in out)
    # every map done: the reduces are runnable and want workers; the map worker has nothing left: released
    assert wants(out)[("reduce", "reduce")] == 2
    assert ReleaseWorker("w1", "map", ReleaseReason.NOT_NEEDED) in out
    # the three workers asked for and never granted were cancelled as the runnable maps went to w1
    assert sum(e.delta for e in run.effects if isinstance(e, WantWorkers) and e.task == "map") == 1
    assert run.core.tasks["map"].outstanding["map"] == 0
    out = run(run.core.worker_started, 20, "r1", "reduce", "m2", "reduce")
    out = run(run.core.attempt_finished, 21, "r1", AttemptRef("reduce", 0, 1, 1))
    out = run(run.core.attempt_finished, 22, "r1", AttemptRef("reduce", 1, 1, 1))
    assert JobFinished(True) in out and ReleaseWorker("r1", "reduce", ReleaseReason.JOB_ENDED) in out
    assert run.core.instance_output("map", 2) == b"out2"


def test_one_to_one_consumer_starts_after_its_own_producer() -> None:
    g = JobGraph([TaskDef("a", 3), TaskDef("b", 3)], [EdgeDef("a", "b", Pattern.ONE_TO_ONE)])
    run = Run(JobCore(g))
    run(run.core.start, 0)
    run(run.core.worker_started, 1, "wa", "a", "m1", "a")
    run(run.core.worker_started, 1, "wb", "b", "m1", "b")  # a worker of b arrives early: it waits idle
    out = run(run.core.attempt_finished, 2, "wa", AttemptRef("a", 0, 1, 1))
    assert {(s.worker_id, s.ref.task, s.ref.index) for s in run.started(out)} == {("wa", "a", 1), ("wb", "b", 0)}


def test_broadcast_consumer_waits_for_the_whole_producer() -> None:
    g = JobGraph([TaskDef("small", 2), TaskDef("big", 3)], [EdgeDef("small", "big", Pattern.BROADCAST)])
    run = Run(JobCore(g))
    run(run.core.start, 0)
    run(run.core.worker_started, 1, "s", "small", "m1", "small")
    run(run.core.worker_started, 1, "b", "big", "m1", "big")
    out = run(run.core.attempt_finished, 2, "s", AttemptRef("small", 0, 1, 1))
    assert all(s.ref.task == "small" for s in run.started(out))
    out = run(run.core.attempt_finished, 3, "s", AttemptRef("small", 1, 1, 1))
    assert [(s.worker_id, s.ref.task) for s in run.started(out)] == [("b", "big")]


def test_locality_host_then_rack_then_anywhere_with_bounded_waits() -> None:
    g = JobGraph([TaskDef("t", 2, hosts=(("m1",), ("m3",)))])
    pol = JobPolicy(
        rack_wait_ns=3 * S, any_wait_ns=6 * S, worker_idle_keep_ns=100 * S, backup_check_interval_ns=100 * S
    )
    run = Run(JobCore(g, pol, racks={"m1": "r1", "m2": "r1", "m3": "r2", "m9": "r9"}))
    out = run(run.core.start, 0)
    assert {e.unit: e.locality for e in out if isinstance(e, WantWorkers)} == {
        "t@m1": Locality(machines=("m1",)),
        "t@m3": Locality(machines=("m3",)),
    }
    # a worker on m2 (rack r1) gets nothing at first; a worker on m3 gets instance 1 at once
    assert run.started(run(run.core.worker_started, 1, "w2", "t", "m2", "t@m1")) == []
    assert [s.ref.index for s in run.started(run(run.core.worker_started, 1, "w3", "t", "m3", "t@m3"))] == [1]
    assert run.core.next_deadline_ns() == 3 * S  # the rack wait of instance 0 ends then
    assert run.started(run(run.core.tick, 3 * S - 1)) == []
    assert [(s.worker_id, s.ref.index) for s in run.started(run(run.core.tick, 3 * S))] == [("w2", 0)]


def test_delay_scheduling_relaxes_to_any_machine() -> None:
    g = JobGraph([TaskDef("t", 1, hosts=(("m1",),))])
    run = Run(JobCore(g, JobPolicy(rack_wait_ns=3 * S, any_wait_ns=6 * S), racks={"m1": "r1", "m9": "r9"}))
    run(run.core.start, 0)
    run(run.core.worker_started, 1, "w9", "t", "m9", "t@m1")
    assert run.started(run(run.core.tick, 5 * S)) == []
    assert [s.worker_id for s in run.started(run(run.core.tick, 6 * S))] == ["w9"]


def test_a_retry_prefers_another_machine_and_exhausted_attempts_fail_the_job() -> None:
    g = JobGraph([TaskDef("t", 1, max_attempts=2)])
    run = Run(JobCore(g, JobPolicy(retry_elsewhere_wait_ns=10 * S)))
    run(run.core.start, 0)
    run(run.core.worker_started, 1, "w1", "t", "m1", "t")
    out = run(run.core.attempt_failed, 2, "w1", AttemptRef("t", 0, 1, 1), "boom")
    assert run.started(out) == []  # the idle worker is on the machine it failed on
    out = run(run.core.worker_started, 3, "w2", "t", "m2", "t")
    (start,) = run.started(out)
    assert start.worker_id == "w2" and start.ref.attempt == 2
    assert ReleaseWorker("w1", "t", ReleaseReason.NOT_NEEDED) in out  # nothing left that w1 may run
    out = run(run.core.attempt_failed, 4, "w2", start.ref, "boom again")
    (fin,) = [e for e in out if isinstance(e, JobFinished)]
    assert not fin.ok and "'t' instance 0 failed 2 attempts" in fin.reason and "boom again" in fin.reason
    assert [e.worker_id for e in out if isinstance(e, ReleaseWorker)] == ["w2"]


def test_a_retry_returns_to_the_failed_machine_after_the_wait() -> None:
    g = JobGraph([TaskDef("t", 1)])
    run = Run(JobCore(g, JobPolicy(retry_elsewhere_wait_ns=10 * S, worker_idle_keep_ns=100 * S)))
    run(run.core.start, 0)
    run(run.core.worker_started, 0, "w1", "t", "m1", "t")
    run(run.core.attempt_failed, 1 * S, "w1", AttemptRef("t", 0, 1, 1), "boom")
    assert run.core.next_deadline_ns() == 11 * S
    assert [s.worker_id for s in run.started(run(run.core.tick, 11 * S))] == ["w1"]


def test_a_lost_worker_fails_its_attempt_without_blacklisting() -> None:
    g = JobGraph([TaskDef("t", 1)])
    run = Run(JobCore(g, JobPolicy(task_blacklist_failures=1)))
    run(run.core.start, 0)
    run(run.core.worker_started, 0, "w1", "t", "m1", "t")
    out = run(run.core.worker_lost, 1, "w1")
    assert wants(out) == {("t", "t"): 1} and not any(isinstance(e, BlacklistMachine) for e in out)
    assert run.core.progress()[0].failed == 1
    assert run(run.core.worker_lost, 2, "w1") == []  # stale


# -- backups (FUXI-10) --------------------------------------------------------------------------------------------


def backup_setup(min_fraction: float = 0.5) -> tuple[Run, AttemptRef]:
    """Four instances; three finish at 10 s having processed 1000 each (rate 100/s); instance 3 runs on w3.
    The three idle workers are released (nothing is left to run but instance 3)."""
    g = JobGraph([TaskDef("t", 4)])
    pol = JobPolicy(backup_slow_factor=1.5, backup_min_done_fraction=min_fraction)
    run = Run(JobCore(g, pol))
    run(run.core.start, 0)
    for i in range(4):
        run(run.core.worker_started, 0, f"w{i}", "t", f"m{i}", "t")
    for i in range(3):
        run(run.core.attempt_finished, 10 * S, f"w{i}", AttemptRef("t", i, 1, 1), b"", 1000)
    return run, AttemptRef("t", 3, 1, 1)


def test_a_slow_instance_gets_one_backup_and_the_first_to_finish_wins() -> None:
    run, ref = backup_setup()
    assert run.core.next_deadline_ns() == 1 * S  # the backup check is due every backup_check_interval_ns
    run(run.core.attempt_progress, 5 * S, "w3", ref, 100)  # 20/s, far below 100/s
    out = run(run.core.tick, 16 * S)  # 16 s > 1.5 x 10 s
    assert wants(out) == {("t", "t"): 1}  # a worker for the backup
    # a worker on w3's machine may not take the backup (not before any_wait_ns); one on another machine does
    out = run(run.core.worker_started, 16 * S, "same", "t", "m3", "t")
    assert run.started(out) == []
    out = run(run.core.worker_started, 16 * S, "w9", "t", "m9", "t")
    (start,) = run.started(out)
    assert start.backup and start.worker_id == "w9" and start.ref == AttemptRef("t", 3, 1, 2)
    assert run.core.progress()[0].backups == 1
    assert run.started(run(run.core.tick, 30 * S)) == []  # never a second backup
    out = run(run.core.attempt_finished, 31 * S, start.worker_id, start.ref, b"backup", 1000)
    assert CommitAttempt(start.ref, start.worker_id, b"backup", duration_ns=15 * S, processed=1000) in out
    assert CancelAttempt(ref, "w3", CancelReason.LOST_RACE) in out
    # the loser finishing later changes nothing: one commit per instance
    out = run(run.core.attempt_finished, 32 * S, "w3", ref, b"late", 1000)
    assert not any(isinstance(e, CommitAttempt) for e in out)
    assert run.core.commits[("t", 3)] == 1 and run.core.instance_output("t", 3) == b"backup"
    assert run.core.finished == JobFinished(True)


@pytest.mark.parametrize(
    ("case", "now_s", "processed", "min_fraction"),
    [
        ("all three hold", 16, 100, 0.5),
        ("not running longer than the average", 14, 100, 0.5),
        ("not processing slower than the average", 16, 10_000, 0.5),
        ("too little of the task finished", 16, 100, 0.8),
    ],
)
def test_each_backup_criterion_alone_is_necessary(case: str, now_s: int, processed: int, min_fraction: float) -> None:
    run, ref = backup_setup(min_fraction)
    run(run.core.attempt_progress, 5 * S, "w3", ref, processed)
    task = run.core.tasks["t"]
    criteria = slow_criteria(task, task.instances[3], now_s * S, run.core.policy)
    out = run(run.core.tick, now_s * S)
    out = run(run.core.worker_started, now_s * S, "w9", "t", "m9", "t")
    if case == "all three hold":
        assert criteria == (True, True, True) and len(run.started(out)) == 1
    else:
        assert criteria.count(False) == 1, criteria  # exactly the one criterion broken
        assert run.started(out) == [] and run.core.progress()[0].backups == 0


def test_no_backup_when_the_task_disables_them_or_attempts_are_spent() -> None:
    for spec in (TaskDef("t", 4, backups=False), TaskDef("t", 4, max_attempts=1)):
        run = Run(JobCore(JobGraph([spec])))
        run(run.core.start, 0)
        for i in range(4):
            run(run.core.worker_started, 0, f"w{i}", "t", f"m{i}", "t")
        for i in range(3):
            run(run.core.attempt_finished, 10 * S, f"w{i}", AttemptRef("t", i, 1, 1), b"", 1000)
        assert wants(run(run.core.tick, 100 * S)) == {}
        assert run.started(run(run.core.worker_started, 100 * S, "w9", "t", "m9", "t")) == []


def test_the_original_failing_leaves_the_backup_running() -> None:
    run, ref = backup_setup()
    run(run.core.tick, 16 * S)
    (start,) = run.started(run(run.core.worker_started, 16 * S, "w9", "t", "m9", "t"))
    out = run(run.core.attempt_failed, 17 * S, "w3", ref, "disk error")
    assert run.started(out) == [] and run.core.finished is None
    out = run(run.core.attempt_finished, 18 * S, start.worker_id, start.ref)
    assert JobFinished(True) in out


# -- blacklisting ------------------------------------------------------------------------------------------------


def test_a_machine_failing_a_task_repeatedly_is_blacklisted_for_it_then_for_the_job() -> None:
    g = JobGraph([TaskDef("a", 4, max_attempts=4), TaskDef("b", 4, max_attempts=4)])
    run = Run(JobCore(g, JobPolicy(task_blacklist_failures=2, job_blacklist_tasks=2)))
    run(run.core.start, 0)
    run(run.core.worker_started, 0, "a1", "a", "bad", "a")
    out = run(run.core.attempt_failed, 1, "a1", AttemptRef("a", 0, 1, 1), "x")
    # the retry avoids "bad"; the worker takes another instance
    (start,) = run.started(out)
    assert start.ref.index == 1
    out = run(run.core.attempt_failed, 2, "a1", start.ref, "x")
    assert BlacklistMachine("bad", "a", 2) in out
    assert ReleaseWorker("a1", "a", ReleaseReason.BLACKLISTED) in out
    # a new worker of a on "bad" is refused at once; b may still use it
    out = run(run.core.worker_started, 3, "a2", "a", "bad", "a")
    assert ReleaseWorker("a2", "a", ReleaseReason.BLACKLISTED) in out and run.started(out) == []
    run(run.core.worker_started, 4, "b1", "b", "bad", "b")
    out = run(run.core.attempt_failed, 5, "b1", AttemptRef("b", 0, 1, 1), "x")
    out = run(run.core.attempt_failed, 6, "b1", run.started(out)[0].ref, "x")
    assert BlacklistMachine("bad", "b", 2) in out and BlacklistMachine("bad", None, 4) in out


def test_workers_offered_only_on_blacklisted_machines_fail_the_job_after_the_bound() -> None:
    g = JobGraph([TaskDef("a", 1)])
    run = Run(JobCore(g, JobPolicy(task_blacklist_failures=1, max_blacklist_rejects=3)))
    run(run.core.start, 0)
    run(run.core.worker_started, 0, "w0", "a", "bad", "a")
    run(run.core.attempt_failed, 1, "w0", AttemptRef("a", 0, 1, 1), "x")
    for n in range(1, 4):
        out = run(run.core.worker_started, 1 + n, f"w{n}", "a", "bad", "a")
    (fin,) = [e for e in out if isinstance(e, JobFinished)]
    assert not fin.ok and "blacklisted" in fin.reason


# -- workers ---------------------------------------------------------------------------------------------------


def test_an_idle_worker_is_kept_for_instances_to_come_then_released() -> None:
    g = JobGraph([TaskDef("a", 2), TaskDef("b", 2)], [EdgeDef("a", "b", Pattern.ONE_TO_ONE)])
    run = Run(JobCore(g, JobPolicy(worker_idle_keep_ns=2 * S, backup_check_interval_ns=100 * S)))
    run(run.core.start, 0)
    run(run.core.worker_started, 0, "wa", "a", "m1", "a")
    run(run.core.worker_started, 0, "wb", "b", "m1", "b")
    assert run.core.next_deadline_ns() == 2 * S
    out = run(run.core.tick, 2 * S)
    assert ReleaseWorker("wb", "b", ReleaseReason.NOT_NEEDED) in out


def test_demand_is_capped_per_task() -> None:
    run = Run(JobCore(JobGraph([TaskDef("t", 100)]), JobPolicy(max_workers_per_task=10)))
    assert wants(run(run.core.start, 0)) == {("t", "t"): 10}


def test_bad_inputs_are_named() -> None:
    core = JobCore(JobGraph([TaskDef("t", 1)]))
    core.start(0)
    with pytest.raises(InvalidArgumentError, match="no task 'nope'"):
        core.worker_started(0, "w", "nope", "m", "u")
    core.worker_started(0, "w", "t", "m", "t")
    with pytest.raises(InvalidArgumentError, match="already known"):
        core.worker_started(0, "w", "t", "m", "t")
    with pytest.raises(InvalidArgumentError, match="already called"):
        core.start(0)
    with pytest.raises(ConfigError) as e:
        JobPolicy(rack_wait_ns=5, any_wait_ns=1, backup_min_done_fraction=2.0).validate()
    assert len(e.value.problems) == 2  # type: ignore[attr-defined]


# -- snapshots and restarts (FUXI-11) ----------------------------------------------------------------------------


def half_done() -> tuple[JobCore, bytes]:
    core = JobCore(graph_map_reduce(4, 2))
    core.start(0)
    core.worker_started(0, "w1", "map", "m1", "map")
    core.worker_started(0, "w2", "map", "m2", "map")
    core.attempt_finished(1, "w1", AttemptRef("map", 0, 1, 1), b"o0", 10)
    core.attempt_finished(2, "w2", AttemptRef("map", 1, 1, 1), b"o1", 10)
    # w1 now runs map 2, w2 runs map 3
    return core, core.snapshot()


def test_restore_reruns_only_unfinished_instances() -> None:
    _, snap = half_done()
    core = JobCore.restore(graph_map_reduce(4, 2), snap)
    assert core.epoch == 2
    run = Run(core)
    out = run(core.start, 10)
    assert wants(out) == {("map", "map"): 2}
    run(core.worker_started, 11, "n1", "map", "m1", "map")
    out = run(core.worker_started, 11, "n2", "map", "m2", "map")
    starts = [e for e in run.effects if isinstance(e, StartInstance)]
    assert sorted(s.ref.index for s in starts) == [2, 3] and all(s.ref.epoch == 2 for s in starts)
    assert core.instance_output("map", 1) == b"o1"


def test_restore_adopts_running_attempts_from_worker_reports() -> None:
    _, snap = half_done()
    core = JobCore.restore(graph_map_reduce(4, 2), snap)
    run = Run(core)
    # w1 finished map 2 while the master was down; w2 still runs map 3; a stray worker reports map 0 (done)
    run(
        core.worker_report,
        10,
        WorkerReport("w1", "map", "m1", finished=FinishedAttempt(AttemptRef("map", 2, 1, 2), b"o2", 10, 5)),
    )
    run(core.worker_report, 10, WorkerReport("w2", "map", "m2", running=AttemptRef("map", 3, 1, 2), started_ns=2))
    out = run(core.worker_report, 10, WorkerReport("w3", "map", "m3", running=AttemptRef("map", 0, 1, 1)))
    assert CancelAttempt(AttemptRef("map", 0, 1, 1), "w3", CancelReason.NOT_ADOPTED) in out
    out = run(core.start, 11)
    assert run.started(out) == [] and wants(out) == {}  # nothing to rerun: map 3 runs on w2
    assert [e for e in run.effects if isinstance(e, CommitAttempt)] == [
        CommitAttempt(AttemptRef("map", 2, 1, 2), "w1", b"o2", duration_ns=5, processed=10)
    ]
    out = run(core.attempt_finished, 12, "w2", AttemptRef("map", 3, 1, 2), b"o3")
    assert wants(out)[("reduce", "reduce")] == 2


def test_an_adopted_attempt_whose_inputs_are_not_done_is_cancelled_at_start() -> None:
    _, snap = half_done()
    core = JobCore.restore(graph_map_reduce(4, 2), snap)
    run = Run(core)
    run(core.worker_report, 10, WorkerReport("r1", "reduce", "m1", running=AttemptRef("reduce", 0, 1, 1)))
    out = run(core.start, 11)
    assert CancelAttempt(AttemptRef("reduce", 0, 1, 1), "r1", CancelReason.NOT_ADOPTED) in out


def test_commits_journaled_after_the_snapshot_count_as_done() -> None:
    core, snap = half_done()
    out = core.attempt_finished(3, "w1", AttemptRef("map", 2, 1, 1), b"o2", 10)
    journal = [e for e in out if isinstance(e, CommitAttempt)]
    restored = JobCore.restore(graph_map_reduce(4, 2), snap, commits=journal)
    run = Run(restored)
    assert restored.instance_output("map", 2) == b"o2"
    assert wants(run(restored.start, 10)) == {("map", "map"): 1}  # only map 3 reruns
    bad = CommitAttempt(AttemptRef("nope", 0, 1, 1), "w", b"")
    with pytest.raises(InvalidArgumentError, match="job journal"):
        JobCore.restore(graph_map_reduce(4, 2), snap, commits=[bad])


def test_bad_snapshots_are_refused_naming_the_problem() -> None:
    _, snap = half_done()
    with pytest.raises(InvalidArgumentError, match="'map': 4 instances in the snapshot, 5 in the job"):
        JobCore.restore(graph_map_reduce(5, 2), snap)
    with pytest.raises(DataCorruptionError):
        JobCore.restore(graph_map_reduce(4, 2), snap[:-3])
    import msgspec

    other = msgspec.msgpack.encode({"version": 99})
    with pytest.raises(InvalidArgumentError, match="version 99"):
        JobCore.restore(graph_map_reduce(4, 2), other)


def test_reports_of_unknown_tasks_or_twice_and_epochs_across_two_restarts() -> None:
    _, snap = half_done()
    core = JobCore.restore(graph_map_reduce(4, 2), snap)
    run = Run(core)
    out = run(core.worker_report, 10, WorkerReport("x", "gone", "m1"))
    assert out == [ReleaseWorker("x", "gone", ReleaseReason.UNKNOWN)]
    report = WorkerReport("w2", "map", "m2", running=AttemptRef("map", 3, 1, 2), started_ns=2)
    run(core.worker_report, 10, report)
    assert run(core.worker_report, 10, report) == []  # reported twice: once is enough
    # an attempt named in the core's own epoch cannot come from before the restart: refused
    out = run(core.worker_report, 10, WorkerReport("w5", "map", "m5", running=AttemptRef("map", 2, 2, 1)))
    assert CancelAttempt(AttemptRef("map", 2, 2, 1), "w5", CancelReason.NOT_ADOPTED) in out
    again = JobCore.restore(graph_map_reduce(4, 2), core.snapshot())
    assert again.epoch == 3 and again.instance_output("map", 0) == b"o0"


def test_progress_counts_done_running_failed_and_backups() -> None:
    run, ref = backup_setup()
    run(run.core.attempt_failed, 11 * S, "w3", ref, "x")
    run(run.core.worker_started, 11 * S, "w9", "t", "m9", "t")  # runs the retry
    (p,) = run.core.progress()
    assert (p.task, p.instances, p.done, p.running, p.failed, p.backups) == ("t", 4, 3, 1, 1, 0)
