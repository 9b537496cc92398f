"""The leader's soft state: liveness, replica states from reports, cleanup, garbage, fsck, and maintenance
rounds (repair, decommission, balance) driven against the replicated namespace — plus a seeded simulation of
server failures that must converge without losing a chunk."""

from __future__ import annotations

import random

import pytest
from dfs_fixtures import SECOND_NS, Master

from feitian.dfs.core import (
    AddReplica,
    CloseFile,
    ClusterConfig,
    ClusterState,
    CommitChunk,
    CopyReason,
    Delete,
    LeaseMode,
    MaintenancePlan,
    PlacementPolicy,
    RemovalReason,
    RemoveReplica,
    RemoveServer,
    ReplicaReport,
    ReplicaState,
    ServerState,
    SetReplication,
    SetServerState,
    Throttle,
    choose_replicas,
)
from feitian.errors import FeitianError, InvalidArgumentError, NotFoundError

TIMEOUT_S = 30
CHUNK_LEN = 1000


class Cluster:
    """A namespace, a ClusterState and simulated disks; copies complete instantly when carried out."""

    def __init__(
        self, servers: int = 6, racks: int = 3, seed: int = 1, capacity: int = 10**6, **config: object
    ) -> None:
        self.m = Master()
        self.ids = self.m.servers(servers, racks=racks, capacity=capacity)
        self.cs = ClusterState(self.m.sm, self.m.now, ClusterConfig(**config))  # type: ignore[arg-type]
        self.disks: dict[str, dict[int, ReplicaReport]] = {s: {} for s in self.ids}
        self.live = set(self.ids)
        self.rng = random.Random(seed)

    def report(self) -> None:
        for server_id in sorted(self.live):
            used = sum(r.length for r in self.disks[server_id].values())
            self.cs.handle_heartbeat(server_id, self.m.now, used_bytes=used)
            self.cs.handle_chunk_report(server_id, self.m.now, self.disks[server_id].values())

    def write_file(
        self, path: str, chunks: int = 1, replication: int = 3, on: tuple[str, ...] | None = None
    ) -> list[int]:
        file_id, lease = self.m.create(path, replication=replication)
        ids = []
        previous = -1
        for _ in range(chunks):
            views = self.cs.server_views(self.m.now)
            replicas = on or choose_replicas(views, replication, chunk_bytes=CHUNK_LEN, rng=self.rng)
            location = self.m.add_chunk(file_id, lease, replicas, previous_length=previous)
            for server_id in replicas:
                self.disks[server_id][location.chunk_id] = ReplicaReport(location.chunk_id, 1, CHUNK_LEN)
            previous = CHUNK_LEN
            ids.append(location.chunk_id)
        self.m.ok(CloseFile(file_id, lease, self.m.now, last_chunk_length=CHUNK_LEN, seal_last=True))
        return ids

    def kill(self, server_id: str) -> None:
        self.live.discard(server_id)

    def round(self, seconds: float = 1.0, *, balance: bool = True) -> MaintenancePlan:
        self.m.tick(seconds)
        self.report()
        plan = self.cs.plan_maintenance(self.m.now, self.rng, balance=balance)
        for removal in plan.removals:
            self.m.apply(removal)
        for task in plan.copies:
            source = self.disks[task.source].get(task.chunk_id)
            if task.source in self.live and task.target in self.live and source is not None:
                self.disks[task.target][task.chunk_id] = source
                self.cs.handle_chunk_added(task.target, source)
                added = self.m.apply(AddReplica(task.chunk_id, task.target, task.version, task.length, self.m.now))
                if not isinstance(added, FeitianError) and task.drop is not None:
                    moved = (CopyReason.BALANCE, CopyReason.SPREAD)
                    reason = RemovalReason.BALANCE if task.reason in moved else RemovalReason.DECOMMISSION
                    self.m.apply(RemoveReplica(task.chunk_id, task.drop, reason))
            self.cs.finish_copy(task.chunk_id, task.target)
        for server_id, chunk_ids in plan.garbage.items():
            for chunk_id in chunk_ids:
                self.disks[server_id].pop(chunk_id, None)
                self.cs.handle_chunk_removed(server_id, chunk_id)
        self.m.sm.validate()
        return plan

    def good_copies(self, chunk_id: int) -> int:
        states = self.cs.replica_states(chunk_id, self.m.now)
        return sum(state is ReplicaState.GOOD for state in states.values())


# -- liveness and replica states ----------------------------------------------------------------------------------


def test_liveness_from_heartbeats_with_a_grace_after_leader_start() -> None:
    c = Cluster()
    assert all(c.cs.is_live(s, c.m.now) for s in c.ids)  # no heartbeat yet: alive for one timeout
    c.m.tick(TIMEOUT_S - 1)
    for s in c.ids[1:]:
        c.cs.handle_heartbeat(s, c.m.now, used_bytes=0)
    assert c.cs.tick(c.m.now) == ()
    c.m.tick(2)
    assert c.cs.tick(c.m.now) == ("cs0",) and c.cs.tick(c.m.now) == ()  # reported once
    assert not c.cs.is_live("cs0", c.m.now) and not c.cs.is_live("nope", c.m.now)
    c.cs.handle_heartbeat("cs0", c.m.now, used_bytes=5)
    assert c.cs.is_live("cs0", c.m.now)
    with pytest.raises(NotFoundError, match="heartbeat: chunk server 'ghost' is not registered"):
        c.cs.handle_heartbeat("ghost", c.m.now, used_bytes=0)
    with pytest.raises(InvalidArgumentError):
        c.cs.handle_heartbeat("cs0", c.m.now, used_bytes=-1)


def test_server_views_carry_usage_racks_and_state() -> None:
    c = Cluster(servers=3)
    c.cs.handle_heartbeat("cs1", c.m.now, used_bytes=500, capacity_bytes=2000)
    c.m.ok(SetServerState("cs2", ServerState.DECOMMISSIONING))
    views = {v.server_id: v for v in c.cs.server_views(c.m.now)}
    assert views["cs1"].utilization == 0.25 and views["cs0"].capacity_bytes == 10**6
    assert views["cs2"].decommissioning and views["cs0"].rack == "rack0"


def test_replica_states_from_reports() -> None:
    c = Cluster()
    (chunk,) = c.write_file("/f")
    replicas = c.m.sm.chunk_location(chunk).replicas
    assert set(c.cs.replica_states(chunk, c.m.now).values()) == {ReplicaState.UNCONFIRMED}
    a, b, d = replicas
    c.disks[b][chunk] = ReplicaReport(chunk, 0, CHUNK_LEN)  # an old version
    del c.disks[d][chunk]  # lost it
    c.report()
    c.cs.report_corrupt(a, chunk)
    states = c.cs.replica_states(chunk, c.m.now)
    assert states == {a: ReplicaState.CORRUPT, b: ReplicaState.STALE, d: ReplicaState.LOST}
    assert c.cs.readable_replicas(chunk, c.m.now) == ()
    c.kill(a)
    c.m.tick(TIMEOUT_S + 1)
    c.report()
    assert c.cs.replica_states(chunk, c.m.now)[a] is ReplicaState.DEAD


def test_chunks_being_written_are_never_judged() -> None:
    c = Cluster()
    file_id, lease = c.m.create("/open")
    location = c.m.add_chunk(file_id, lease, ("cs0", "cs1", "cs2"))
    c.m.ok(CommitChunk(file_id, lease, location.chunk_id, 10, False, c.m.now))
    c.report()  # nobody has written the chunk yet
    states = c.cs.replica_states(location.chunk_id, c.m.now)
    assert set(states.values()) == {ReplicaState.UNCONFIRMED}
    assert c.cs.repair_needs(c.m.now) == [] and c.cs.cleanup(c.m.now) == []
    assert c.cs.fsck(c.m.now).missing == ()


# -- repair -------------------------------------------------------------------------------------------------------


def test_dead_server_is_repaired_fewest_replicas_first_then_forgotten() -> None:
    c = Cluster(servers=6)
    chunks = c.write_file("/f", chunks=4)
    c.report()
    victim = c.m.sm.chunk_location(chunks[0]).replicas[0]
    c.kill(victim)
    c.m.tick(TIMEOUT_S + 1)
    hit = {ch for ch in chunks if victim in c.m.sm.chunk_location(ch).replicas}
    copied: set[int] = set()
    for _ in range(3):
        plan = c.round()
        for task in plan.copies:
            assert task.source != victim and task.target != victim and task.reason is CopyReason.REPAIR
            copied.add(task.chunk_id)
    assert copied == hit
    for chunk in chunks:
        replicas = c.m.sm.chunk_location(chunk).replicas
        assert victim not in replicas and c.good_copies(chunk) == 3
        racks = {c.m.sm.server(s).rack for s in replicas}  # type: ignore[union-attr]
        assert len(racks) == 3
    assert c.cs.fsck(c.m.now).healthy


def test_repair_order_puts_the_most_endangered_chunk_first() -> None:
    c = Cluster(servers=6, repair_burst_bytes=CHUNK_LEN, repair_bytes_per_s=1)
    one = c.write_file("/a", on=("cs0", "cs1", "cs2"))
    two = c.write_file("/b", on=("cs3", "cs4", "cs5"))
    for s in ("cs0", "cs3", "cs4"):
        c.kill(s)
    c.m.tick(TIMEOUT_S + 1)
    plan = c.round(0)
    assert [t.chunk_id for t in plan.copies] == [two[0]]  # one copy fits the budget
    assert one[0] not in [t.chunk_id for t in plan.copies]


def test_throttle_refills_with_time() -> None:
    throttle = Throttle(100, 1000, 0)
    assert throttle.available(0) == 1000
    throttle.consume(1000)
    assert throttle.available(SECOND_NS // 2) == 50
    assert throttle.available(100 * SECOND_NS) == 1000


def test_corrupt_copy_is_replaced_then_garbage_collected() -> None:
    c = Cluster()
    (chunk,) = c.write_file("/f")
    c.report()
    bad = c.m.sm.chunk_location(chunk).replicas[1]
    c.cs.report_corrupt(bad, chunk)
    assert c.cs.fsck(c.m.now).corrupt == ((chunk, bad),)
    plan = c.round()
    assert RemoveReplica(chunk, bad, RemovalReason.CORRUPT) in plan.removals
    c.round()
    c.round()
    assert bad not in c.m.sm.chunk_location(chunk).replicas and chunk not in c.disks[bad]
    assert c.good_copies(chunk) == 3 and c.cs.fsck(c.m.now).healthy


def test_last_good_copy_is_never_removed() -> None:
    c = Cluster()
    (chunk,) = c.write_file("/f")
    a, b, d = c.m.sm.chunk_location(chunk).replicas
    for s in (a, b, d):
        c.cs.report_corrupt(s, chunk)
    c.report()
    assert c.cs.cleanup(c.m.now) == []
    report = c.cs.fsck(c.m.now)
    assert len(report.corrupt) == 3 and not report.healthy


def test_fsck_reports_missing_chunks_with_their_paths() -> None:
    c = Cluster()
    (chunk,) = c.write_file("/f", replication=2)
    for s in c.m.sm.chunk_location(chunk).replicas:
        c.kill(s)
    c.m.tick(TIMEOUT_S + 1)
    c.report()
    report = c.cs.fsck(c.m.now)
    assert report.missing == ((chunk, "/f"),) and report.under_replicated == ((chunk, 0, 2),)
    assert len(report.dead_servers) == 2 and not report.healthy
    plan = c.round()
    assert plan.lost == (chunk,) and plan.copies == ()


def test_garbage_deleted_files_and_dropped_replicas_but_not_copies_in_flight() -> None:
    c = Cluster()
    (chunk,) = c.write_file("/f")
    c.report()
    c.m.ok(Delete("/f", c.m.now))
    c.disks["cs5"][999] = ReplicaReport(999, 1, 10)  # an id never allocated: maybe an in-flight allocation
    c.report()
    garbage = c.cs.garbage(c.m.now)
    holders = [s for s in c.ids if chunk in c.disks[s]]
    assert all(garbage[s] == (chunk,) for s in holders) and 999 not in garbage.get("cs5", ())


def test_leader_failover_does_not_start_a_repair_storm() -> None:
    c = Cluster()
    c.write_file("/f", chunks=3)
    fresh = ClusterState(c.m.sm, c.m.now)
    assert fresh.repair_needs(c.m.now) == [] and fresh.plan_maintenance(c.m.now, c.rng).copies == ()


def test_excess_replicas_are_trimmed_keeping_racks() -> None:
    c = Cluster(servers=6)
    (chunk,) = c.write_file("/f", replication=3)
    c.round()
    c.m.ok(SetReplication("/f", 2, c.m.now))
    plan = c.round()
    removals = [r for r in plan.removals if r.reason is RemovalReason.EXCESS]
    assert len(removals) == 1
    replicas = c.m.sm.chunk_location(chunk).replicas
    assert len(replicas) == 2 and len({c.m.sm.server(s).rack for s in replicas}) == 2  # type: ignore[union-attr]


# -- decommission and balance -------------------------------------------------------------------------------------


def test_decommission_migrates_every_chunk_then_the_server_can_leave() -> None:
    c = Cluster(servers=6)
    chunks = c.write_file("/f", chunks=5)
    leaving = max(c.ids, key=lambda s: len(c.m.sm.chunks_on(s)))
    held = c.m.sm.chunks_on(leaving)
    assert held
    c.m.ok(SetServerState(leaving, ServerState.DECOMMISSIONING))
    c.m.refused(RemoveServer(leaving), InvalidArgumentError, "still holds")
    for _ in range(4):
        plan = c.round(balance=False)
    assert c.m.sm.chunks_on(leaving) == ()
    assert leaving in plan.decommissioned
    c.m.ok(RemoveServer(leaving))
    assert all(c.good_copies(ch) == 3 for ch in chunks) and c.cs.fsck(c.m.now).healthy


def test_a_decommissioned_server_stays_out_until_recommissioned() -> None:
    c = Cluster(servers=4)
    chunks = c.write_file("/f", chunks=4)
    leaving = max(c.ids, key=lambda s: len(c.m.sm.chunks_on(s)))
    c.m.ok(SetServerState(leaving, ServerState.DECOMMISSIONING))
    c.m.refused(SetServerState(leaving, ServerState.DECOMMISSIONED), InvalidArgumentError, "still holds")
    plan = c.round(balance=False)
    while leaving not in plan.decommissioned:
        plan = c.round(balance=False)
    c.m.ok(SetServerState(leaving, ServerState.DECOMMISSIONED))  # what the leader proposes (not RemoveServer)
    # It keeps running and heartbeating, and registers again (a restart): it stays decommissioned.
    info = c.m.sm.server(leaving)
    assert info is not None
    from feitian.dfs.core import RegisterServer

    c.m.ok(RegisterServer(leaving, info.address, info.rack, info.capacity_bytes, c.m.now))
    assert c.m.sm.server(leaving).state is ServerState.DECOMMISSIONED  # type: ignore[union-attr]
    for _ in range(3):
        plan = c.round()
        assert leaving not in plan.decommissioned and all(leaving not in (t.target, t.source) for t in plan.copies)
    views = {v.server_id: v for v in c.cs.server_views(c.m.now)}
    assert views[leaving].decommissioning and leaving not in choose_replicas(
        views.values(), 4, chunk_bytes=CHUNK_LEN, rng=c.rng
    )
    assert c.m.sm.chunks_on(leaving) == () and all(c.good_copies(ch) == 3 for ch in chunks)
    c.kill(leaving)  # switched off for good: not reported as a dead server
    c.m.tick(TIMEOUT_S + 1)
    assert leaving not in c.cs.fsck(c.m.now).dead_servers
    c.live.add(leaving)
    c.m.ok(SetServerState(leaving, ServerState.ACTIVE))  # `feitian dfs recommission`
    c.round()
    assert not {v.server_id: v for v in c.cs.server_views(c.m.now)}[leaving].decommissioning


def test_a_delete_the_server_confirmed_is_not_sent_again() -> None:
    c = Cluster()
    (chunk,) = c.write_file("/f")
    c.report()
    c.m.ok(Delete("/f", c.m.now))
    c.cs.plan_maintenance(c.m.now, c.rng)
    holder = next(s for s in c.ids if chunk in c.disks[s])
    assert c.cs.deletes_for(holder, c.m.now) == (chunk,)
    assert c.cs.deletes_for(holder, c.m.now) == ()  # sent: not again within the resend interval
    c.m.tick(11)
    assert c.cs.deletes_for(holder, c.m.now) == (chunk,)  # not confirmed: sent again
    c.cs.handle_chunk_removed(holder, chunk, c.m.now)  # the server says it deleted it (a heartbeat)
    c.m.tick(11)
    # The plan still lists it until the next round; it is not asked for again (issue 16: the server logged
    # "deleted 0 replicas ...: [22, 23]" for such repeats).
    assert chunk in c.cs.garbage_planned[holder] and c.cs.deletes_for(holder, c.m.now) == ()


def test_fsck_reports_misplaced_chunks_and_maintenance_restores_the_rack_spread() -> None:
    c = Cluster(servers=4, racks=3)  # cs0 and cs3 on rack0, cs1 alone on rack1, cs2 on rack2
    (chunk,) = c.write_file("/f", on=("cs0", "cs1", "cs2"))
    c.round()
    c.kill("cs1")  # the only server of rack1
    c.m.tick(TIMEOUT_S + 1)
    for _ in range(3):
        c.round()
    assert set(c.m.sm.chunk_location(chunk).replicas) == {"cs0", "cs2", "cs3"}  # repair: rack0 twice
    assert c.cs.fsck(c.m.now).misplaced == ()  # rack1 is down: two racks are all there is
    c.live.add("cs1")  # rack1 is back
    c.report()
    report = c.cs.fsck(c.m.now)
    assert report.misplaced == ((chunk, 2, 3),) and report.healthy  # reported, not unhealthy
    moves = [t for t in c.round().copies if t.reason is CopyReason.SPREAD]
    assert [(t.chunk_id, t.target) for t in moves] == [(chunk, "cs1")] and moves[0].drop in ("cs0", "cs3")
    c.round()
    replicas = c.m.sm.chunk_location(chunk).replicas
    assert len(replicas) == 3 and len({c.m.sm.server(s).rack for s in replicas}) == 3  # type: ignore[union-attr]
    assert c.cs.fsck(c.m.now).misplaced == () and c.good_copies(chunk) == 3


def test_balance_moves_chunks_to_a_new_server() -> None:
    c = Cluster(servers=3, capacity=20_000, placement=PlacementPolicy(max_balance_moves=4, max_copies_per_server=8))
    for i in range(4):
        c.write_file(f"/f{i}", chunks=3)
    from feitian.dfs.core import RegisterServer

    c.m.ok(RegisterServer("new", "tcp://new:1", "rack9", 20_000, c.m.now))
    c.disks["new"] = {}
    c.live.add("new")
    c.ids.append("new")
    before = c.round(balance=False)
    assert not before.copies
    for _ in range(3):
        c.round()
    assert c.m.sm.chunks_on("new")
    used = [sum(r.length for r in c.disks[s].values()) for s in c.ids]
    assert max(used) - min(used) < 12 * CHUNK_LEN
    assert all(c.good_copies(ch) == 3 for ch in range(1, 13)) and c.cs.fsck(c.m.now).healthy


def test_reopened_file_is_not_copied_while_a_random_writer_holds_it() -> None:
    c = Cluster()
    (chunk,) = c.write_file("/f")
    c.m.open_write("/f", "w", LeaseMode.RANDOM)
    victim = c.m.sm.chunk_location(chunk).replicas[0]
    c.kill(victim)
    c.m.tick(TIMEOUT_S + 1)
    plan = c.round()
    assert plan.copies == () and c.cs.fsck(c.m.now).under_replicated


# -- simulation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_failures_and_recoveries_never_lose_a_chunk(seed: int) -> None:
    rng = random.Random(seed)
    c = Cluster(servers=8, racks=4, seed=seed, placement=PlacementPolicy(max_copies_per_server=4))
    chunks = [ch for i in range(5) for ch in c.write_file(f"/f{i}", chunks=2)]
    for _ in range(25):
        dead = set(c.ids) - c.live
        if dead and rng.random() < 0.4:
            c.live.add(rng.choice(sorted(dead)))  # a server comes back with its disk
        elif len(dead) < 2 and rng.random() < 0.5:
            c.kill(rng.choice(sorted(c.live)))  # at most two down at once: fewer than the replication factor
        c.round(rng.choice([1, TIMEOUT_S / 2, TIMEOUT_S + 1]))
        for chunk in chunks:
            holders = [s for s in c.ids if chunk in c.disks[s] and s in c.live]
            listed = set(c.m.sm.chunk_location(chunk).replicas)
            assert holders and set(holders) & listed, f"seed {seed}: chunk {chunk} has no live listed copy"
    c.live = set(c.ids)
    for _ in range(4):
        c.round(TIMEOUT_S / 3)
    report = c.cs.fsck(c.m.now)
    assert report.healthy, f"seed {seed}: {report}"
    assert all(c.good_copies(ch) == 3 for ch in chunks)
