"""Seeded simulation of a JobMaster core with its driver, a FuxiMaster that grants workers, and the workers.

Random DAGs (map -> reduce by hash, 1:1 chains, broadcast joins), machines of random speed (one slow, one that
fails often), random attempt failures and worker losses, JobMaster restarts from the last persisted snapshot
plus the workers' reports. After every step the core's invariant checker runs, and the simulation checks from
the outside what the core promises: no instance's output is committed from two different attempts, nothing is
dispatched to a blacklisted machine or before its inputs are committed, a restarted core never reruns an
instance its snapshot holds, and the job ends with every instance's output in place (the same output as an
undisturbed run). A failing seed replays exactly: ``pytest tests/unit/job/test_core_sim.py -k 'seed-17'``.

The driver persists the snapshot after every step that committed something, before the commit takes effect
(as the JobMaster must, docs/jobs-core.md) — or, with ``snapshot_every`` > 1, journals those commits and writes
a full snapshot every so many committing steps — and right after a restore.
"""

from __future__ import annotations

import heapq
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import pytest

from feitian.job.core import (
    AttemptRef,
    BlacklistMachine,
    CancelAttempt,
    CommitAttempt,
    EdgeDef,
    Effect,
    FinishedAttempt,
    JobCore,
    JobFinished,
    JobGraph,
    JobPolicy,
    Pattern,
    ReleaseWorker,
    StartInstance,
    TaskDef,
    WantWorkers,
    WorkerReport,
    check,
)

S = 1_000_000_000
MS = 1_000_000


def random_graph(rng: random.Random, machines: list[str]) -> JobGraph:
    def hosts(n: int) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(rng.sample(machines, 2)) for _ in range(n)) if rng.random() < 0.7 else ()

    shape = rng.choice(["map_reduce", "chain", "join", "diamond"])
    n = rng.randint(2, 12)
    if shape == "map_reduce":
        r = rng.randint(1, 6)
        tasks = [TaskDef("map", n, hosts=hosts(n)), TaskDef("reduce", r)]
        edges = [EdgeDef("map", "reduce", rng.choice([Pattern.HASH, Pattern.RANGE]))]
    elif shape == "chain":
        tasks = [TaskDef("a", n, hosts=hosts(n)), TaskDef("b", n), TaskDef("c", n)]
        edges = [EdgeDef("a", "b", Pattern.ONE_TO_ONE), EdgeDef("b", "c", Pattern.ONE_TO_ONE)]
    elif shape == "join":
        m = rng.randint(1, 3)
        tasks = [TaskDef("small", m), TaskDef("big", n, hosts=hosts(n)), TaskDef("out", rng.randint(1, 4))]
        edges = [
            EdgeDef("small", "big", Pattern.BROADCAST),
            EdgeDef("big", "out", Pattern.HASH),
        ]
    else:
        tasks = [TaskDef("src", n), TaskDef("left", n), TaskDef("right", rng.randint(1, 5)), TaskDef("sink", 2)]
        edges = [
            EdgeDef("src", "left", Pattern.ONE_TO_ONE),
            EdgeDef("src", "right", Pattern.HASH),
            EdgeDef("left", "sink", Pattern.HASH),
            EdgeDef("right", "sink", Pattern.BROADCAST),
        ]
    return JobGraph(tasks, edges)


@dataclass
class SimWorker:
    wid: str
    task: str
    machine: str
    running: AttemptRef | None = None
    started_ns: int = 0
    processed: int = 0
    unacked: FinishedAttempt | None = None  # finished while the JobMaster was down
    alive: bool = True


@dataclass
class Sim:
    seed: int
    fail_rate: float = 0.05
    loss_rate: float = 0.01  # per attempt: its worker is lost mid-way
    flaky_rate: float = 0.5  # failures per attempt on the flaky machine
    restarts: int = 0
    slots_per_machine: int = 3
    snapshot_every: int = 1  # committing steps per full snapshot; the commits in between go to a journal
    rng: random.Random = field(init=False)
    now: int = 0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = self.rng = random.Random(self.seed)
        self.machines = [f"m{i}" for i in range(rng.randint(4, 8))]
        self.racks = {m: f"r{i % 2}" for i, m in enumerate(self.machines)}
        self.speed = {m: rng.uniform(0.7, 1.3) for m in self.machines}
        self.speed[self.machines[0]] = 0.1  # a slow machine: backups should overtake it
        self.flaky = self.machines[1]  # a machine failing often: blacklisting should stop using it
        self.graph = random_graph(rng, self.machines)
        self.policy = JobPolicy(
            rack_wait_ns=300 * MS,
            any_wait_ns=600 * MS,
            retry_elsewhere_wait_ns=1 * S,
            worker_idle_keep_ns=500 * MS,
            backup_check_interval_ns=200 * MS,
            task_blacklist_failures=3,
        )
        self.core = JobCore(self.graph, self.policy, self.racks)
        self.persisted = self.core.snapshot()
        self.journal: list[bytes] = []
        self.committing_steps = 0
        self.events: list[tuple[int, int, str, tuple[object, ...]]] = []
        self.seq = 0
        self.workers: dict[str, SimWorker] = {}
        self.used: dict[str, int] = dict.fromkeys(self.machines, 0)
        self.outstanding: dict[tuple[str, str], int] = {}
        self.units: dict[tuple[str, str], tuple[str, ...]] = {}
        self.committed: dict[tuple[str, int], AttemptRef] = {}
        self.storage: dict[tuple[str, int], bytes] = {}
        self.blacklist: set[tuple[str | None, str]] = set()
        self.restored_done: set[tuple[str, int]] = set()
        self.down_until: int | None = None
        self.finished: JobFinished | None = None
        self.restart_times = sorted(rng.uniform(0.5, 8) * S for _ in range(self.restarts))
        self.starts = 0
        self.backups = 0
        self.reported_running = 0
        self.reported_finished = 0

    # -- the event queue ------------------------------------------------------------------------------------------

    def at(self, t: int, kind: str, *args: object) -> None:
        self.seq += 1
        heapq.heappush(self.events, (int(t), self.seq, kind, args))

    def step(self, fn: Callable[..., list[Effect]], *args: object) -> None:
        out = fn(self.now, *args)
        problems = check(self.core)
        assert not problems, f"seed {self.seed} at {self.now}: {problems}"
        commits = [e for e in out if isinstance(e, CommitAttempt)]
        if commits:  # persisted before the commits take effect
            self.committing_steps += 1
            if self.committing_steps % self.snapshot_every == 0:
                self.persisted, self.journal = self.core.snapshot(), []
            else:
                self.journal.extend(msgspec.msgpack.encode(c) for c in commits)
        for effect in out:
            self.apply(effect)

    def run(self, limit_ns: int = 600 * S) -> None:
        self.step(lambda now: self.core.start(now))
        self.at(100 * MS, "fuxi")
        for t in self.restart_times:
            self.at(t, "crash")
        while self.finished is None:
            assert self.events, f"seed {self.seed}: nothing left to happen but the job is not finished"
            t, _, kind, args = heapq.heappop(self.events)
            deadline = self.core.next_deadline_ns() if self.down_until is None else None
            if deadline is not None and deadline < t:
                heapq.heappush(self.events, (t, _, kind, args))
                self.now = max(self.now, deadline)
                self.step(self.core.tick)
                continue
            self.now = max(self.now, t)
            assert self.now < limit_ns, (
                f"seed {self.seed}: the job did not finish within {limit_ns // S} simulated seconds"
            )
            getattr(self, "on_" + kind)(*args)

    # -- effects ----------------------------------------------------------------------------------------------------

    def apply(self, e: Effect) -> None:
        if isinstance(e, WantWorkers):
            key = (e.task, e.unit)
            self.units[key] = e.locality.machines
            self.outstanding[key] = max(0, self.outstanding.get(key, 0) + e.delta)
        elif isinstance(e, StartInstance):
            self.on_start(e)
        elif isinstance(e, CancelAttempt):
            w = self.workers.get(e.worker_id)
            if w is not None and w.alive and w.running == e.ref:
                w.running = None
                self.at(self.now + 50 * MS, "idle", w.wid)
        elif isinstance(e, ReleaseWorker):
            w = self.workers.get(e.worker_id)
            if w is not None and w.alive:
                w.alive = False
                self.used[w.machine] -= 1
        elif isinstance(e, CommitAttempt):
            key = (e.ref.task, e.ref.index)
            before = self.committed.get(key)
            assert before is None or before == e.ref, f"seed {self.seed}: {key} committed from {before} and {e.ref}"
            self.committed[key] = e.ref
            self.storage[key] = e.output
        elif isinstance(e, BlacklistMachine):
            self.blacklist.add((e.task, e.machine))
        elif isinstance(e, JobFinished):
            self.finished = e

    def on_start(self, e: StartInstance) -> None:
        ref = e.ref
        key = (ref.task, ref.index)
        assert key not in self.restored_done, f"seed {self.seed}: {key} was in the snapshot but runs again"
        assert (ref.task, e.machine) not in self.blacklist and (None, e.machine) not in self.blacklist, (
            f"seed {self.seed}: {ref} dispatched to blacklisted {e.machine}"
        )
        for edge in self.graph.upstream(ref.task):
            src = self.graph.tasks[edge.src]
            needed = [ref.index] if edge.pattern is Pattern.ONE_TO_ONE else range(src.instances)
            missing = [i for i in needed if (edge.src, i) not in self.committed]
            assert not missing, f"seed {self.seed}: {ref} started before {edge.src}{missing} were committed"
        w = self.workers[e.worker_id]
        assert w.alive and w.running is None and w.machine == e.machine
        self.starts += 1
        self.backups += e.backup
        w.running, w.started_ns, w.processed = ref, self.now, 0
        rng = self.rng
        duration = int(rng.uniform(0.5, 1.5) * S / self.speed[w.machine])
        fail_rate = self.flaky_rate if w.machine == self.flaky else self.fail_rate
        if rng.random() < self.loss_rate:
            self.at(self.now + rng.randint(0, duration), "lose", w.wid, ref)
        elif rng.random() < fail_rate:
            self.at(self.now + rng.randint(0, duration), "fail", w.wid, ref)
        else:
            self.at(self.now + duration // 2, "progress", w.wid, ref)
            self.at(self.now + duration, "finish", w.wid, ref)

    # -- events ---------------------------------------------------------------------------------------------------

    def current(self, wid: str, ref: AttemptRef) -> SimWorker | None:
        w = self.workers[wid]
        return w if w.alive and w.running == ref else None

    def master_up(self) -> bool:
        return self.down_until is None

    def on_fuxi(self) -> None:
        """FuxiMaster grants outstanding demand on machines with a free slot (preferred ones first)."""
        self.at(self.now + 100 * MS, "fuxi")
        if not self.master_up() or self.finished is not None:
            return
        for key, n in sorted(self.outstanding.items()):
            for _ in range(n):
                free = [
                    m
                    for m in self.machines
                    if self.used[m] < self.slots_per_machine and (None, m) not in self.blacklist
                ]
                if not free:
                    return
                preferred = [m for m in self.units[key] if m in free]
                machine = preferred[0] if preferred and self.rng.random() < 0.8 else self.rng.choice(free)
                self.used[machine] += 1
                self.outstanding[key] -= 1
                wid = f"w{self.seq}"
                self.seq += 1
                self.workers[wid] = SimWorker(wid, key[0], machine)
                self.step(self.core.worker_started, wid, key[0], machine, key[1])
                if self.finished is not None:
                    return

    def on_progress(self, wid: str, ref: AttemptRef) -> None:
        w = self.current(wid, ref)
        if w is not None:
            w.processed = 500
            if self.master_up():
                self.step(self.core.attempt_progress, wid, ref, 500)

    def on_finish(self, wid: str, ref: AttemptRef) -> None:
        w = self.current(wid, ref)
        if w is None:
            return
        w.running = None
        output = f"{ref.task}:{ref.index}".encode()
        if self.master_up():
            self.step(self.core.attempt_finished, wid, ref, output, 1000)
        else:
            w.unacked = FinishedAttempt(ref, output, 1000, self.now - w.started_ns)

    def on_fail(self, wid: str, ref: AttemptRef) -> None:
        w = self.current(wid, ref)
        if w is None:
            return
        w.running = None
        if self.master_up():
            self.step(self.core.attempt_failed, wid, ref, "simulated failure")

    def on_lose(self, wid: str, ref: AttemptRef) -> None:
        w = self.current(wid, ref)
        if w is None:
            return
        w.alive, w.running = False, None
        self.used[w.machine] -= 1
        if self.master_up():
            self.step(self.core.worker_lost, wid)

    def on_idle(self, wid: str) -> None:
        w = self.workers[wid]
        if w.alive and self.master_up():
            self.step(self.core.worker_idle, wid)

    def on_crash(self) -> None:
        """The JobMaster dies; FuxiMaster restarts it a little later (its demand is dropped meanwhile)."""
        if self.finished is not None or not self.master_up():
            return
        self.down_until = self.now + int(self.rng.uniform(0.2, 2) * S)
        self.outstanding.clear()
        self.at(self.down_until, "recover")

    def on_recover(self) -> None:
        self.down_until = None
        journal = [msgspec.msgpack.decode(c, type=CommitAttempt) for c in self.journal]
        self.core = JobCore.restore(self.graph, self.persisted, self.policy, self.racks, journal)
        self.persisted, self.journal = self.core.snapshot(), []
        self.restored_done = {(t.name, i.index) for t in self.core.tasks.values() for i in t.instances if i.committed}
        for w in sorted(self.workers.values(), key=lambda w: w.wid):
            if not w.alive:
                continue
            report = WorkerReport(
                w.wid,
                w.task,
                w.machine,
                running=w.running,
                started_ns=w.started_ns if w.running else None,
                processed=w.processed,
                finished=w.unacked,
            )
            w.unacked = None
            self.reported_running += report.running is not None
            self.reported_finished += report.finished is not None
            self.step(self.core.worker_report, report)
        self.step(self.core.start)


SEEDS = list(range(100))


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed-{s}")
def test_the_job_finishes_with_every_output_under_failures_and_restarts(seed: int) -> None:
    sim = Sim(seed, fail_rate=0.05, loss_rate=0.02, restarts=seed % 3, snapshot_every=1 + seed % 4 * 3)
    sim.run()
    assert sim.finished == JobFinished(True), f"seed {seed}: {sim.finished}"
    expected = {(t, i): f"{t}:{i}".encode() for t, spec in sim.graph.tasks.items() for i in range(spec.instances)}
    assert sim.storage == expected  # the same output as an undisturbed run
    assert all(not w.alive for w in sim.workers.values()), "every worker is returned at the end"


def test_a_restart_reruns_only_the_unfinished_instances() -> None:
    """With no failures, the work started over all incarnations exceeds the instance count only by the
    attempts that were running at a restart and not adopted, and by backups."""
    for seed in range(10):
        undisturbed = Sim(seed, fail_rate=0.0, loss_rate=0.0, flaky_rate=0.0)
        undisturbed.run()
        restarted = Sim(seed, fail_rate=0.0, loss_rate=0.0, flaky_rate=0.0, restarts=2, snapshot_every=1 + seed % 3)
        restarted.run()
        assert restarted.finished == JobFinished(True)
        assert restarted.storage == undisturbed.storage
        instances = sum(t.instances for t in restarted.graph.tasks.values())
        # every worker reported its running attempt, which was adopted: nothing reran
        assert restarted.starts - restarted.backups == instances, seed


def test_the_same_seed_replays_the_same_run() -> None:
    a, b = Sim(7, restarts=1), Sim(7, restarts=1)
    a.run()
    b.run()
    assert (a.now, a.starts, a.backups, a.committed) == (b.now, b.starts, b.backups, b.committed)


def test_the_simulation_exercises_backups_blacklisting_and_adoption() -> None:
    """The slow machine's instances get backups, the flaky machine gets blacklisted (for a task, and for the
    job in some runs), and restarts adopt both running and finished attempts from the workers' reports."""
    backups = blacklisted = job_blacklisted = running = finished = 0
    for seed in range(60):
        sim = Sim(seed, restarts=seed % 2 * 2)
        sim.run()
        backups += sim.backups
        blacklisted += any(m == sim.flaky for _, m in sim.blacklist)
        job_blacklisted += (None, sim.flaky) in sim.blacklist
        running += sim.reported_running
        finished += sim.reported_finished
    assert backups > 0 and blacklisted > 0 and job_blacklisted > 0
    assert running > 0 and finished > 0


@pytest.mark.parametrize("seed", range(30), ids=lambda s: f"seed-{s}")
def test_under_heavy_failures_the_job_ends_done_or_failed_naming_a_spent_instance(seed: int) -> None:
    """30 % of attempts fail: the job still ends; if it failed, the reason names an instance that really used
    all its attempts (or a task left without machines), and nothing runs any more."""
    sim = Sim(seed, fail_rate=0.3, loss_rate=0.05, restarts=seed % 2)
    sim.run()
    assert sim.finished is not None
    if sim.finished.ok:
        assert len(sim.storage) == sum(t.instances for t in sim.graph.tasks.values())
        return
    match = re.search(r"task '(\w+)' instance (\d+) failed (\d+) attempts", sim.finished.reason)
    if match is None:
        assert "blacklisted" in sim.finished.reason, sim.finished.reason
    else:
        inst = sim.core.tasks[match[1]].instances[int(match[2])]
        assert inst.attempts_used == int(match[3]) == sim.graph.tasks[match[1]].max_attempts
    assert not any(t.running for t in sim.core.tasks.values())
    assert all(not w.alive for w in sim.workers.values()), "every worker is returned at the end"
