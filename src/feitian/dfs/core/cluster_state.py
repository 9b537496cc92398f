"""The leader's soft state about chunk servers: liveness, disk usage and the chunks each one reports.

Nothing here is replicated: a new leader builds a fresh :class:`ClusterState` and servers report again. Until a
server sends its first full chunk report to this leader, its replicas are *unconfirmed* — counted as present,
so a leader change does not start a repair storm — and a registered server is given one heartbeat timeout
from the leader's start before it is declared dead.

Comparing reports with the namespace gives every listed replica a :class:`ReplicaState`. From that the leader
gets, each tick (:meth:`ClusterState.plan_maintenance`): the RemoveReplica commands to propose (corrupt, stale,
lost, dead-and-replaced, excess), the copies to start (repair first, then decommission, then rack spread, then
balance, within a bytes/s throttle and a per-server copy limit), the chunks each server should delete (garbage,
handed out by :meth:`ClusterState.deletes_for`), and the servers that finished decommissioning.
:meth:`ClusterState.fsck` reports missing, corrupt, under-replicated and misplaced chunks (replicas on fewer racks
than the live racks allow).

Only *quiescent* chunks (:meth:`DfsStateMachine.chunk_is_quiescent`) are judged stale or lost, copied or
trimmed; a chunk being written belongs to its writer's pipeline recovery.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from feitian.base.clock import RandomSource
from feitian.base.units import SECOND_NS, MiB
from feitian.dfs.core.commands import RemovalReason, RemoveReplica
from feitian.dfs.core.namespace import DfsStateMachine
from feitian.dfs.core.placement import (
    ChunkBrief,
    CopyTask,
    PlacementPolicy,
    RepairNeed,
    ServerView,
    plan_balance,
    plan_decommission,
    plan_repair,
    plan_spread,
)
from feitian.dfs.core.records import ChunkRecord, ServerState
from feitian.errors import ConfigError, InvalidArgumentError, NotFoundError

__all__ = [
    "ClusterConfig",
    "ClusterState",
    "FsckReport",
    "MaintenancePlan",
    "ReplicaReport",
    "ReplicaState",
    "Throttle",
]


class ClusterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    heartbeat_timeout_ns: int = 30 * SECOND_NS  # a server silent this long is dead
    copy_timeout_ns: int = 600 * SECOND_NS  # a copy not finished by then is forgotten (and may be planned again)
    repair_bytes_per_s: int = 200 * MiB  # copy throttle for repair + decommission + balance, cluster-wide
    repair_burst_bytes: int = 1024 * MiB  # must hold the largest chunk, or that chunk never gets copied
    # A report about a chunk received less than this after the leader changed the chunk (a new length, version
    # or replica set: note_chunk_changed) may predate the change: the replica is unconfirmed until a newer one.
    report_grace_ns: int = 0
    garbage_resend_ns: int = 10 * SECOND_NS  # a delete the server has not confirmed is sent again after this
    placement: PlacementPolicy = PlacementPolicy()

    def validate(self) -> ClusterConfig:
        problems = list(self.placement.problems())
        if self.heartbeat_timeout_ns <= 0 or self.copy_timeout_ns <= 0:
            problems.append("heartbeat_timeout_ns and copy_timeout_ns must be > 0")
        if self.repair_bytes_per_s <= 0 or self.repair_burst_bytes <= 0:
            problems.append("repair_bytes_per_s and repair_burst_bytes must be > 0")
        if self.report_grace_ns < 0 or self.garbage_resend_ns < 0:
            problems.append("report_grace_ns and garbage_resend_ns must be >= 0")
        if problems:
            raise ConfigError("dfs cluster config", problems=problems)
        return self


class ReplicaReport(msgspec.Struct, frozen=True, array_like=True):
    """One chunk a server holds, as it reports it."""

    chunk_id: int
    version: int
    length: int


class ReplicaState(enum.StrEnum):
    GOOD = "good"  # live server, current version, full length
    UNCONFIRMED = "unconfirmed"  # live server that has not reported yet, or a chunk being written
    STALE = "stale"  # older version or fewer bytes than committed
    CORRUPT = "corrupt"  # failed a checksum
    LOST = "lost"  # the server's full report does not have it
    DEAD = "dead"  # the server stopped heartbeating


class Throttle:
    """A token bucket of bytes: ``rate`` per second, at most ``burst`` saved up. Time is passed in."""

    def __init__(self, rate_bytes_per_s: int, burst_bytes: int, now_ns: int) -> None:
        self.rate, self.burst = rate_bytes_per_s, burst_bytes
        self.tokens = float(burst_bytes)
        self.updated_ns = now_ns

    def available(self, now_ns: int) -> int:
        if now_ns > self.updated_ns:
            self.tokens = min(float(self.burst), self.tokens + self.rate * (now_ns - self.updated_ns) / SECOND_NS)
            self.updated_ns = now_ns
        return int(self.tokens)

    def consume(self, nbytes: int) -> None:
        self.tokens -= nbytes


@dataclass
class _Server:
    last_heartbeat_ns: int
    used_bytes: int = 0
    capacity_bytes: int = 0  # 0: use the registered capacity
    reported: dict[int, ReplicaReport] | None = None  # None: no full report to this leader yet
    corrupt: set[int] = field(default_factory=set)
    full_report_ns: int = 0  # when the last full report arrived
    report_ns: dict[int, int] = field(default_factory=dict)  # chunk -> when a later incremental report arrived
    deletes_sent: dict[int, int] = field(default_factory=dict)  # chunk -> when its delete was last sent


class FsckReport(msgspec.Struct, frozen=True):
    chunks: int
    missing: tuple[tuple[int, str], ...]  # (chunk id, file path): no good or unconfirmed replica
    corrupt: tuple[tuple[int, str], ...]  # (chunk id, server id) copies that failed a checksum
    under_replicated: tuple[tuple[int, int, int], ...]  # (chunk id, good + unconfirmed, wanted)
    over_replicated: tuple[int, ...]
    stale: tuple[tuple[int, str], ...]
    dead_servers: tuple[str, ...]  # registered, not decommissioned, and silent
    unconfirmed: int
    # (chunk id, racks its replicas are on, racks they could be on): fully replicated but not spread over as many
    # racks as the live servers allow (a rack that was down came back). Not unhealthy — no copy is missing —
    # but one rack failure would take more of its copies than the placement policy intends; maintenance moves
    # replicas to restore the spread.
    misplaced: tuple[tuple[int, int, int], ...] = ()

    @property
    def healthy(self) -> bool:
        return not (self.missing or self.corrupt or self.under_replicated)


class MaintenancePlan(msgspec.Struct, frozen=True):
    removals: tuple[RemoveReplica, ...]  # propose these
    copies: tuple[CopyTask, ...]  # send each to its source (already counted as in flight)
    garbage: dict[str, tuple[int, ...]]  # server id -> chunk ids it should delete
    lost: tuple[int, ...]  # under-replicated chunks with no good replica to copy from
    decommissioned: tuple[str, ...]  # decommissioning servers holding nothing: propose SetServerState(DECOMMISSIONED)


class ClusterState:
    def __init__(self, namespace: DfsStateMachine, now_ns: int, config: ClusterConfig | None = None) -> None:
        self.ns = namespace
        self.config = (config or ClusterConfig()).validate()
        self.started_ns = now_ns
        self.servers: dict[str, _Server] = {}
        self.copies: dict[tuple[int, str], tuple[CopyTask, int]] = {}  # (chunk, target) -> (task, started)
        self.throttle = Throttle(self.config.repair_bytes_per_s, self.config.repair_burst_bytes, now_ns)
        self.changed_ns: dict[int, int] = {}  # chunk -> when the leader last changed it (see report_grace_ns)
        self.garbage_planned: dict[str, tuple[int, ...]] = {}  # the last plan's garbage (see deletes_for)
        self._dead: set[str] = set()

    # -- events from chunk servers and clients -------------------------------------------------------------------

    def _server(self, op: str, server_id: str) -> _Server:
        info = self.ns.server(server_id)
        if info is None:
            raise NotFoundError(f"{op}: chunk server {server_id!r} is not registered", server_id=server_id)
        state = self.servers.get(server_id)
        if state is None:
            state = self.servers[server_id] = _Server(max(self.started_ns, info.registered_ns))
        return state

    def handle_heartbeat(self, server_id: str, now_ns: int, *, used_bytes: int, capacity_bytes: int = 0) -> None:
        if used_bytes < 0 or capacity_bytes < 0:
            raise InvalidArgumentError(f"heartbeat {server_id}: used and capacity bytes must be >= 0")
        server = self._server("heartbeat", server_id)
        server.last_heartbeat_ns = max(server.last_heartbeat_ns, now_ns)
        server.used_bytes, server.capacity_bytes = used_bytes, capacity_bytes
        self._dead.discard(server_id)

    def handle_chunk_report(self, server_id: str, now_ns: int, chunks: Iterable[ReplicaReport]) -> None:
        """A full report: every chunk the server holds (it replaces what was known)."""
        server = self._server("chunk report", server_id)
        server.reported = {c.chunk_id: c for c in chunks}
        server.corrupt &= set(server.reported)
        server.full_report_ns, server.report_ns = now_ns, {}
        self.handle_heartbeat(server_id, now_ns, used_bytes=server.used_bytes, capacity_bytes=server.capacity_bytes)

    def handle_chunk_added(self, server_id: str, report: ReplicaReport, now_ns: int = 0) -> None:
        """An incremental report: the server holds this chunk now (a new replica, or a new length/version)."""
        server = self._server("chunk added", server_id)
        if server.reported is not None:
            server.reported[report.chunk_id] = report
            server.report_ns[report.chunk_id] = now_ns
        server.corrupt.discard(report.chunk_id)

    def handle_chunk_removed(self, server_id: str, chunk_id: int, now_ns: int = 0) -> None:
        server = self._server("chunk removed", server_id)
        if server.reported is not None:
            server.reported.pop(chunk_id, None)
            server.report_ns[chunk_id] = now_ns
        server.corrupt.discard(chunk_id)
        server.deletes_sent.pop(chunk_id, None)

    def deletes_for(self, server_id: str, now_ns: int) -> tuple[int, ...]:
        """The garbage to send ``server_id`` with this heartbeat answer: chunks of the last plan that the server
        still reports (a delete it confirmed since is not sent again) and that were not sent within
        ``garbage_resend_ns``. Sending marks them sent."""
        server = self.servers.get(server_id)
        if server is None or server.reported is None:
            return ()
        out = tuple(
            chunk_id
            for chunk_id in self.garbage_planned.get(server_id, ())
            if chunk_id in server.reported
            and now_ns - server.deletes_sent.get(chunk_id, now_ns - self.config.garbage_resend_ns)
            >= self.config.garbage_resend_ns
        )
        for chunk_id in out:
            server.deletes_sent[chunk_id] = now_ns
        return out

    def note_chunk_changed(self, chunk_id: int, now_ns: int) -> None:
        """The leader changed this chunk (length, version, replicas): reports older than the change plus
        ``report_grace_ns`` cannot judge its replicas."""
        self.changed_ns[chunk_id] = max(now_ns, self.changed_ns.get(chunk_id, 0))

    def forget_changes_before(self, now_ns: int) -> None:
        """Drop change times that no report can predate any more (bounds memory)."""
        horizon = now_ns - 2 * self.config.report_grace_ns - self.config.heartbeat_timeout_ns
        for chunk_id in [c for c, t in self.changed_ns.items() if t < horizon]:
            del self.changed_ns[chunk_id]

    def report_corrupt(self, server_id: str, chunk_id: int) -> None:
        """A reader (or the server's scrubber) found a checksum mismatch in this replica."""
        self._server("report corrupt", server_id).corrupt.add(chunk_id)

    def tick(self, now_ns: int) -> tuple[str, ...]:
        """Servers that became dead since the last tick; forgets copies that timed out."""
        for key, (_, started) in list(self.copies.items()):
            if now_ns - started >= self.config.copy_timeout_ns:
                del self.copies[key]
        newly = []
        for info in self.ns.servers():
            if not self.is_live(info.server_id, now_ns) and info.server_id not in self._dead:
                self._dead.add(info.server_id)
                newly.append(info.server_id)
        return tuple(newly)

    # -- copies in flight ----------------------------------------------------------------------------------------

    def start_copy(self, task: CopyTask, now_ns: int) -> None:
        self.copies[(task.chunk_id, task.target)] = (task, now_ns)
        self.throttle.consume(task.length)

    def finish_copy(self, chunk_id: int, target: str) -> None:
        """The copy ended (its AddReplica and drop committed, or it failed): it no longer counts as in flight."""
        self.copies.pop((chunk_id, target), None)

    def copies_in_flight(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for task, _ in self.copies.values():
            load[task.source] = load.get(task.source, 0) + 1
            load[task.target] = load.get(task.target, 0) + 1
        return load

    def _copying(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk_id, _ in self.copies:
            out[chunk_id] = out.get(chunk_id, 0) + 1
        return out

    # -- liveness and views --------------------------------------------------------------------------------------

    def is_live(self, server_id: str, now_ns: int) -> bool:
        info = self.ns.server(server_id)
        if info is None:
            return False
        server = self.servers.get(server_id)
        last = server.last_heartbeat_ns if server else max(self.started_ns, info.registered_ns)
        return now_ns - last < self.config.heartbeat_timeout_ns

    def server_views(self, now_ns: int) -> tuple[ServerView, ...]:
        views = []
        for info in self.ns.servers():
            server = self.servers.get(info.server_id)
            capacity = server.capacity_bytes if server and server.capacity_bytes else info.capacity_bytes
            views.append(
                ServerView(
                    info.server_id,
                    info.rack,
                    capacity,
                    server.used_bytes if server else 0,
                    self.is_live(info.server_id, now_ns),
                    info.state is not ServerState.ACTIVE,  # leaving or gone: no new replicas, not balanced
                )
            )
        return tuple(views)

    def replica_states(self, chunk_id: int, now_ns: int) -> dict[str, ReplicaState]:
        chunk = self.ns.table.chunk("replica states", chunk_id)
        quiescent = self.ns.chunk_is_quiescent(chunk_id, now_ns)
        return {s: self._state(chunk, s, quiescent, now_ns) for s in chunk.replicas}

    def _state(self, chunk: ChunkRecord, server_id: str, quiescent: bool, now_ns: int) -> ReplicaState:
        if not self.is_live(server_id, now_ns):
            return ReplicaState.DEAD
        server = self.servers.get(server_id)
        if server is not None and chunk.chunk_id in server.corrupt:
            return ReplicaState.CORRUPT
        if server is None or server.reported is None:
            return ReplicaState.UNCONFIRMED
        report = server.reported.get(chunk.chunk_id)
        if not quiescent:
            return ReplicaState.UNCONFIRMED if report is None or report.version < chunk.version else ReplicaState.GOOD
        if report is not None and report.version >= chunk.version and report.length >= chunk.length:
            return ReplicaState.GOOD
        changed = self.changed_ns.get(chunk.chunk_id)
        if changed is not None:  # a report taken before a change cannot condemn the replica
            received = server.report_ns.get(chunk.chunk_id, server.full_report_ns)
            if received < changed + self.config.report_grace_ns:
                return ReplicaState.UNCONFIRMED
        if report is None:
            return ReplicaState.UNCONFIRMED if chunk.length == 0 else ReplicaState.LOST
        if report.version < chunk.version or report.length < chunk.length:
            return ReplicaState.STALE
        return ReplicaState.GOOD

    def readable_replicas(self, chunk_id: int, now_ns: int) -> tuple[str, ...]:
        """Replicas a client may read from (good or unconfirmed), in namespace order."""
        states = self.replica_states(chunk_id, now_ns)
        usable = (ReplicaState.GOOD, ReplicaState.UNCONFIRMED)
        return tuple(s for s, state in states.items() if state in usable)

    # -- detection -----------------------------------------------------------------------------------------------

    def _classified(self, now_ns: int) -> Iterable[tuple[ChunkRecord, bool, dict[ReplicaState, list[str]]]]:
        for chunk_id in sorted(self.ns.table.chunks):
            chunk = self.ns.table.chunks[chunk_id]
            quiescent = self.ns.chunk_is_quiescent(chunk_id, now_ns)
            groups: dict[ReplicaState, list[str]] = {state: [] for state in ReplicaState}
            for server_id in chunk.replicas:
                groups[self._state(chunk, server_id, quiescent, now_ns)].append(server_id)
            yield chunk, quiescent, groups

    def repair_needs(self, now_ns: int) -> list[RepairNeed]:
        """Quiescent chunks with fewer good + unconfirmed + in-flight copies than their replication."""
        copying = self._copying()
        needs = []
        for chunk, quiescent, groups in self._classified(now_ns):
            if not quiescent:
                continue
            present = len(groups[ReplicaState.GOOD]) + len(groups[ReplicaState.UNCONFIRMED])
            missing = self.ns.replication_of(chunk.chunk_id) - present - copying.get(chunk.chunk_id, 0)
            if missing > 0:
                good = tuple(groups[ReplicaState.GOOD])
                holders = tuple({*chunk.replicas, *self._holders(chunk.chunk_id)})
                needs.append(
                    RepairNeed(chunk.chunk_id, chunk.version, chunk.length, len(good) + missing, good, holders)
                )
        return needs

    def _holders(self, chunk_id: int) -> list[str]:
        out = [s for s, server in self.servers.items() if server.reported is not None and chunk_id in server.reported]
        out.extend(target for c, target in self.copies if c == chunk_id)
        return out

    def cleanup(self, now_ns: int) -> list[RemoveReplica]:
        """RemoveReplica commands for bad or surplus replicas of quiescent chunks with no copy in flight. The last
        good replica is never removed; dead ones only once the chunk is fully replicated elsewhere."""
        copying = self._copying()
        views = {v.server_id: v for v in self.server_views(now_ns)}
        out: list[RemoveReplica] = []
        for chunk, quiescent, groups in self._classified(now_ns):
            if not quiescent or chunk.chunk_id in copying or not groups[ReplicaState.GOOD]:
                continue
            good = groups[ReplicaState.GOOD]
            for state, reason in (
                (ReplicaState.CORRUPT, RemovalReason.CORRUPT),
                (ReplicaState.STALE, RemovalReason.STALE),
                (ReplicaState.LOST, RemovalReason.LOST),
            ):
                out.extend(RemoveReplica(chunk.chunk_id, s, reason) for s in groups[state])
            replication = self.ns.replication_of(chunk.chunk_id)
            if len(good) >= replication:
                out.extend(RemoveReplica(chunk.chunk_id, s, RemovalReason.DEAD) for s in groups[ReplicaState.DEAD])
            if len(good) > replication and not groups[ReplicaState.UNCONFIRMED]:
                out.extend(
                    RemoveReplica(chunk.chunk_id, s, RemovalReason.EXCESS) for s in _surplus(good, replication, views)
                )
        return out

    def garbage(self, now_ns: int) -> dict[str, tuple[int, ...]]:
        """Per server, reported chunks it should delete: deleted chunks, and replicas no longer listed (dropped
        from a pipeline, removed as stale, excess or moved) that are not the target of a copy in flight."""
        table = self.ns.table
        out: dict[str, tuple[int, ...]] = {}
        for server_id, server in sorted(self.servers.items()):
            if server.reported is None:
                continue
            drop = []
            for chunk_id in sorted(server.reported):
                chunk = table.chunks.get(chunk_id)
                if chunk is None:
                    if chunk_id < table.next_chunk_id:
                        drop.append(chunk_id)
                elif server_id not in chunk.replicas and (chunk_id, server_id) not in self.copies:
                    drop.append(chunk_id)
            if drop:
                out[server_id] = tuple(drop)
        return out

    def live_racks(self, now_ns: int) -> int:
        """How many racks have a live server in service: what a chunk's replicas can be spread over."""
        return len({v.rack for v in self.server_views(now_ns) if v.live and not v.decommissioning})

    def misplaced(self, now_ns: int) -> list[tuple[ChunkBrief, int, int]]:
        """Quiescent, fully replicated chunks whose good replicas are on fewer racks than they could be (the
        replication factor, at most the racks with a live server in service): (the chunk with its good replicas,
        racks used, racks wanted)."""
        live_racks = self.live_racks(now_ns)
        out = []
        for chunk, quiescent, groups in self._classified(now_ns):
            good = groups[ReplicaState.GOOD]
            replication = self.ns.replication_of(chunk.chunk_id)
            if not quiescent or groups[ReplicaState.UNCONFIRMED] or len(good) < replication:
                continue
            racks = len({self._rack(s) for s in good})
            wanted = min(replication, live_racks)
            if racks < wanted:
                out.append((ChunkBrief(chunk.chunk_id, chunk.version, chunk.length, tuple(good)), racks, wanted))
        return out

    def _rack(self, server_id: str) -> str:
        info = self.ns.server(server_id)
        return info.rack if info is not None else f"?{server_id}"

    def fsck(self, now_ns: int) -> FsckReport:
        missing: list[tuple[int, str]] = []
        corrupt: list[tuple[int, str]] = []
        stale: list[tuple[int, str]] = []
        under: list[tuple[int, int, int]] = []
        over: list[int] = []
        unconfirmed = 0
        for chunk, _, groups in self._classified(now_ns):
            present = len(groups[ReplicaState.GOOD]) + len(groups[ReplicaState.UNCONFIRMED])
            unconfirmed += len(groups[ReplicaState.UNCONFIRMED])
            replication = self.ns.replication_of(chunk.chunk_id)
            if present == 0 and (chunk.length > 0 or chunk.sealed):
                missing.append((chunk.chunk_id, self.ns.path_of(chunk.file_id)))
            if present < replication:
                under.append((chunk.chunk_id, present, replication))
            elif len(groups[ReplicaState.GOOD]) > replication:
                over.append(chunk.chunk_id)
            corrupt.extend((chunk.chunk_id, s) for s in groups[ReplicaState.CORRUPT])
            stale.extend((chunk.chunk_id, s) for s in groups[ReplicaState.STALE])
        dead = tuple(
            s.server_id
            for s in self.ns.servers()
            if s.state is not ServerState.DECOMMISSIONED and not self.is_live(s.server_id, now_ns)
        )
        misplaced = tuple((brief.chunk_id, racks, wanted) for brief, racks, wanted in self.misplaced(now_ns))
        return FsckReport(
            len(self.ns.table.chunks),
            tuple(missing),
            tuple(corrupt),
            tuple(under),
            tuple(over),
            tuple(stale),
            dead,
            unconfirmed,
            misplaced,
        )

    # -- one maintenance round -----------------------------------------------------------------------------------

    def plan_maintenance(self, now_ns: int, rng: RandomSource, *, balance: bool = True) -> MaintenancePlan:
        """Everything the leader should do this tick; the copies returned are already counted as in flight."""
        self.tick(now_ns)
        removals = tuple(self.cleanup(now_ns))  # before copies start: bad copies go at once
        views = self.server_views(now_ns)
        policy = self.config.placement
        repair = plan_repair(
            self.repair_needs(now_ns),
            views,
            rng=rng,
            budget_bytes=self.throttle.available(now_ns),
            in_flight=self.copies_in_flight(),
            policy=policy,
        )
        for task in repair.copies:
            self.start_copy(task, now_ns)
        copies = list(repair.copies)
        decommissioned = []
        for view in views:
            info = self.ns.server(view.server_id)
            if info is None or info.state is not ServerState.DECOMMISSIONING:
                continue
            chunks = self._briefs(view.server_id, now_ns)
            if not chunks and not self.ns.chunks_on(view.server_id):
                decommissioned.append(view.server_id)
                continue
            plan = plan_decommission(
                view.server_id,
                chunks,
                views,
                rng=rng,
                budget_bytes=self.throttle.available(now_ns),
                in_flight=self.copies_in_flight(),
                policy=policy,
            )
            for task in plan.copies:
                self.start_copy(task, now_ns)
            copies.extend(plan.copies)
        if not repair.waiting and not repair.copies:
            copying = self._copying()
            spread_moves = plan_spread(  # once no copy is in flight and no server still holds an unlisted copy
                [
                    brief
                    for brief, _, _ in self.misplaced(now_ns)
                    if brief.chunk_id not in copying and set(self._holders(brief.chunk_id)) <= set(brief.replicas)
                ],
                views,
                rng=rng,
                budget_bytes=self.throttle.available(now_ns),
                in_flight=self.copies_in_flight(),
                policy=policy,
            )
            for task in spread_moves:
                self.start_copy(task, now_ns)
            copies.extend(spread_moves)
        if balance and not repair.waiting and not repair.copies:
            movable = {
                v.server_id: self._briefs(v.server_id, now_ns) for v in views if v.live and not v.decommissioning
            }
            moves = plan_balance(
                views,
                movable,
                budget_bytes=self.throttle.available(now_ns),
                in_flight=self.copies_in_flight(),
                policy=policy,
            )
            for task in moves:
                self.start_copy(task, now_ns)
            copies.extend(moves)
        self.garbage_planned = self.garbage(now_ns)
        return MaintenancePlan(removals, tuple(copies), self.garbage_planned, repair.lost, tuple(decommissioned))

    def _briefs(self, server_id: str, now_ns: int) -> list[ChunkBrief]:
        """Copyable chunks with a good replica on ``server_id`` and no copy in flight (their good replicas)."""
        copying = self._copying()
        out = []
        for chunk_id in self.ns.chunks_on(server_id):
            if chunk_id in copying or not self.ns.chunk_is_quiescent(chunk_id, now_ns):
                continue
            chunk = self.ns.table.chunks[chunk_id]
            states = {s: self._state(chunk, s, True, now_ns) for s in chunk.replicas}
            if states.get(server_id) is not ReplicaState.GOOD:
                continue
            good = tuple(s for s, state in states.items() if state is ReplicaState.GOOD)
            out.append(ChunkBrief(chunk_id, chunk.version, chunk.length, good))
        return out


def _surplus(good: list[str], replication: int, views: Mapping[str, ServerView]) -> list[str]:
    """Which good replicas to drop to get down to ``replication``: decommissioning servers first, then those whose
    removal keeps the most racks, the most utilized first."""
    keep = list(good)
    drop: list[str] = []
    while len(keep) > replication:

        def cost(server_id: str) -> tuple[bool, int, float, str]:
            view = views.get(server_id)
            racks_left = len({views[s].rack for s in keep if s != server_id and s in views})
            return (not (view and view.decommissioning), -racks_left, -(view.utilization if view else 0.0), server_id)

        victim = min(keep, key=cost)
        keep.remove(victim)
        drop.append(victim)
    return drop
