"""Nuwa under simulation: :class:`~feitian.coord.core.CoordStateMachine` on every replica, clients holding
sessions and locks, and the leader's session duties (``StartLeaderTerm``, a :class:`SessionTracker` fed by
heartbeats and proposing ``ExpireSessions`` by the leader's clock, which jumps).

Clients (``p0``..``p3``, each with a ``client_id`` and increasing ``request_seq``) open a session, take locks
(an ephemeral ``/locks/lN`` created under the session), release them, write ``/data/dN`` (with and without an
expected version), delete, close their session, go quiet so their session expires, and retry a request whose
outcome they did not learn with the same ``request_seq`` (exactly-once: the state machine's dedupe table).

Invariants, on every replica after every applied entry (besides equal state digests at equal indexes):

* **lock exclusivity**: a lock (``/locks/lN``) is granted (a ``Created`` result) only while nobody holds it:
  since the last grant it was deleted, or its holder's session ended; the holder recorded from the grants is the
  node's ephemeral owner in the tree;
* **ephemerals of live sessions only**: every ephemeral node's session is open, and the index of a session's
  ephemerals agrees with the nodes;
* **monotonic versions**: the revision never goes back; a node re-created has a larger ``create_revision``; a
  node changed keeps it and its ``version`` and ``mod_revision`` grow.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from feitian.consensus import Entry, Role
from feitian.coord.core import (
    Applied,
    CloseSession,
    Command,
    CoordStateMachine,
    Created,
    CreateNode,
    CreateSession,
    Deleted,
    DeleteNode,
    EventKind,
    LeaderTermStarted,
    SessionClosed,
    SessionCreated,
    SessionsExpired,
    SessionTracker,
    SetNode,
    StartLeaderTerm,
    encode_command,
)
from feitian.errors import FeitianError, NotLeaderError, SessionExpiredError
from feitian.replica import StateMachine
from feitian.testing.sim.consensus_checker import InvariantViolation
from feitian.testing.sim.consensus_node import SimNode
from feitian.testing.sim.service import LOST, ServiceSimulation

LOCKS = ("/locks/l0", "/locks/l1", "/locks/l2")
DATA = ("/data/d0", "/data/d1", "/data/d2", "/data/d3")
CLIENTS = 4
HEARTBEAT_TICKS = 5
REQUEST_GIVE_UP_TICKS = 60


@dataclass(slots=True)
class _Client:
    principal: str
    client_id: str
    seq: int = 0
    session_id: int = 0
    held: set[str] = field(default_factory=set)
    quiet_until: int = 0  # no heartbeats before this tick (the client is "paused": its session may expire)
    last_heartbeat: int = 0
    request: Command | None = None
    sent_at: int = 0
    token: int = 0  # which request a late answer belongs to


@dataclass(slots=True)
class _ReplicaView:
    """What the checker remembers about one replica's state between applied entries."""

    revision: int = 0
    holders: dict[str, int] = field(default_factory=dict)  # lock path -> session of its last grant
    versions: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # (create_rev, version, mod_rev)


class CoordModel:
    name = "coord"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.clients = [_Client(f"p{i}", f"c{i}") for i in range(CLIENTS)]
        self.views: dict[int, _ReplicaView] = {}
        self.trackers: dict[int, SessionTracker] = {}
        self.term_started: dict[int, int] = {}  # replica -> the term whose StartLeaderTerm it proposed
        self.counted: set[int] = set()  # indexes whose results are in the counts (once, not per replica)
        self.answers: dict[tuple[str, int], object] = {}  # (client id, request_seq) -> its first answer
        self.counts = {
            "locks_granted": 0,
            "lock_conflicts": 0,
            "sessions_created": 0,
            "sessions_expired": 0,
            "duplicates": 0,
            "retries": 0,
            "retried_answers_equal": 0,
        }

    def new_machine(self) -> StateMachine:
        return CoordStateMachine()

    def stats(self) -> dict[str, int]:
        return dict(self.counts)

    # -- leader duties -----------------------------------------------------------------------------------------

    def _leader_duties(self, sim: ServiceSimulation) -> None:
        for node_id in sorted(sim.nodes):
            node = sim.nodes[node_id]
            tracker = self.trackers.setdefault(node_id, SessionTracker())
            if node.raw is None or node.raw.role is not Role.LEADER:
                if tracker.active:
                    tracker.step_down()
                continue
            if node_id in sim.paused_until:
                continue  # a paused leader keeps its tracker; it acts again when it resumes
            term = node.raw.term
            if tracker.active and tracker.epoch != term:
                tracker.step_down()
            if not tracker.active and self.term_started.get(node_id) != term:
                self.term_started[node_id] = term
                self._start_term(sim, node, term)
            if tracker.active:
                due = tracker.due(sim.clock_ns(node_id))
                if due is not None:
                    ids = due.session_ids

                    def expired(result: object, tracker: SessionTracker = tracker, ids: tuple[int, ...] = ids) -> None:
                        if result is LOST and tracker.active:
                            tracker.expiry_failed(ids)

                    if not sim.submit(node, encode_command(due), expired):
                        tracker.expiry_failed(ids)

    def _start_term(self, sim: ServiceSimulation, node: SimNode, term: int) -> None:
        node_id = node.node_id

        def started(result: object) -> None:
            n = sim.nodes[node_id]
            if not isinstance(result, LeaderTermStarted) or n.raw is None or n.raw.term != term:
                return
            if not sim.is_leader(n) or n.service is None:
                return
            sm = cast(CoordStateMachine, n.service)
            self.trackers[node_id].become_leader(term, sm.session_ttls(), sim.clock_ns(node_id))

        if not sim.submit(node, encode_command(StartLeaderTerm(epoch=term)), started):
            self.term_started.pop(node_id, None)

    def _heartbeats(self, sim: ServiceSimulation) -> None:
        leader = sim.leader()
        tracker = self.trackers.get(leader.node_id) if leader is not None else None
        for client in self.clients:
            if not client.session_id or sim.now < client.quiet_until:
                continue
            if sim.now - client.last_heartbeat < HEARTBEAT_TICKS or leader is None or tracker is None:
                continue
            if not tracker.active:  # the driver refuses as "not the leader (taking over)" before the tracker
                continue
            client.last_heartbeat = sim.now
            try:
                tracker.heartbeat(client.session_id, sim.clock_ns(leader.node_id))
            except NotLeaderError:
                continue
            except SessionExpiredError:
                client.session_id, client.held = 0, set()

    # -- clients -----------------------------------------------------------------------------------------------

    def act(self, sim: ServiceSimulation) -> None:
        self._leader_duties(sim)
        self._heartbeats(sim)
        for client in self.clients:
            if client.request is not None and sim.now - client.sent_at > REQUEST_GIVE_UP_TICKS:
                client.request, client.token = None, client.token + 1  # gave up: outcome unknown
        if self.rng.random() >= sim.knobs.propose_rate:
            return
        idle = [c for c in self.clients if c.request is None]
        if not idle:
            return
        client = self.rng.choice(idle)
        if self.rng.random() < 0.01:
            client.quiet_until = sim.now + self.rng.randint(10, 80)  # stops heartbeating for a while
        command = self._next_command(client)
        if command is not None:
            self._send(sim, client, command)

    def _next_command(self, client: _Client) -> Command | None:
        rng = self.rng
        client.seq += 1

        def cmd(kind: Callable[..., Command], **fields: Any) -> Command:
            return kind(principal=client.principal, client_id=client.client_id, request_seq=client.seq, **fields)

        if not client.session_id:
            return cmd(CreateSession, ttl_ms=rng.choice([2_000, 5_000]))
        roll, sid = rng.random(), client.session_id
        if roll < 0.35:
            path = rng.choice(LOCKS)
            if path in client.held:
                return cmd(DeleteNode, session_id=sid, path=path)
            return cmd(CreateNode, session_id=sid, path=path, ephemeral=True, parents=True)
        if roll < 0.65:
            value = f"{client.principal}.{client.seq}".encode()
            return cmd(SetNode, path=rng.choice(DATA), value=value, expected_version=rng.choice([None, None, 1, 2, 3]))
        if roll < 0.8:
            return cmd(CreateNode, path=rng.choice(DATA), value=b"v", parents=True)
        if roll < 0.9:
            return cmd(DeleteNode, path=rng.choice(DATA))
        if roll < 0.95:
            return cmd(CloseSession, session_id=sid)
        return cmd(CreateNode, session_id=sid, path=f"/tmp/{client.principal}", ephemeral=True)

    def _send(self, sim: ServiceSimulation, client: _Client, command: Command) -> None:
        nodes = sim.reachable()
        if not nodes:
            return
        client.token += 1
        token = client.token
        client.request, client.sent_at = command, sim.now

        def answered(result: object) -> None:
            if client.token != token:
                return  # the client gave up on this request already
            request, client.request = client.request, None
            if request is not None and result is not LOST:
                self._check_exactly_once(client, request, result)
            lost_reply = result is not LOST and self.rng.random() < 0.05  # the answer did not reach the client
            if result is LOST or lost_reply:
                if request is not None and self.rng.random() < 0.6:
                    self.counts["retries"] += 1
                    self._send(sim, client, request)  # the same request_seq: must not apply twice
                return
            self._learn(client, request, result)

        leader = sim.leader()
        target = leader if leader is not None and self.rng.random() < 0.8 else self.rng.choice(nodes)
        if not sim.submit(target, encode_command(command), answered):
            client.request = None

    def _check_exactly_once(self, client: _Client, request: Command, result: object) -> None:
        """A retry (same ``request_seq``) that succeeds gets the first answer back, not a second application."""
        if isinstance(result, FeitianError):
            return  # e.g. the session the first answer was kept under has ended since: the retry meets that
        key = (client.client_id, getattr(request, "request_seq", 0))
        first = self.answers.get(key)
        if first is None:
            self.answers[key] = result
            return
        if first != result:
            raise InvariantViolation(
                f"coord exactly-once: {client.client_id} request {key[1]} answered {result!r}, first {first!r}"
            )
        self.counts["retried_answers_equal"] += 1

    def _learn(self, client: _Client, request: Command | None, result: object) -> None:
        if isinstance(result, SessionCreated):
            client.session_id, client.held = result.session_id, set()
            client.last_heartbeat = 0
        elif isinstance(result, Created) and result.stat.path in LOCKS:
            client.held.add(result.stat.path)
        elif isinstance(result, Deleted):
            client.held.discard(result.stat.path)
        elif isinstance(result, SessionClosed | SessionExpiredError):
            client.session_id, client.held = 0, set()
        elif isinstance(result, FeitianError) and isinstance(request, CreateNode) and request.path in LOCKS:
            self.counts["lock_conflicts"] += 1

    # -- invariants --------------------------------------------------------------------------------------------

    def on_restored(self, sim: ServiceSimulation, node: SimNode) -> None:
        sm = cast(CoordStateMachine, node.service)
        view = _ReplicaView(revision=sm.revision)
        for path, n in sm.tree.nodes.items():
            view.versions[path] = (n.create_revision, n.version, n.mod_revision)
            if path in LOCKS and n.ephemeral_owner:
                view.holders[path] = n.ephemeral_owner
        self.views[node.node_id] = view
        self.trackers[node.node_id] = SessionTracker()  # soft state: a restarted replica starts without it
        self.term_started.pop(node.node_id, None)

    def check_applied(self, sim: ServiceSimulation, node: SimNode, entry: Entry) -> None:
        sm = cast(CoordStateMachine, node.service)
        view = self.views[node.node_id]
        where = f"coord replica {node.node_id} at index {entry.index}"
        if sm.revision < view.revision:
            raise InvariantViolation(f"{where}: revision went back from {view.revision} to {sm.revision}")
        view.revision = sm.revision
        applied = sm.last_applied
        if applied.index == entry.index:
            tracker = self.trackers.get(node.node_id)
            if tracker is not None:
                tracker.observe(applied, sim.clock_ns(node.node_id))
            count = entry.index not in self.counted
            self.counted.add(entry.index)
            for part in applied.parts or (applied,):
                self._check_result(where, view, part, count)
            self._check_versions(where, sm, view, applied)
        for path, session_id in view.holders.items():
            held = sm.tree.nodes.get(path)
            if held is None or held.ephemeral_owner != session_id:
                owner = None if held is None else held.ephemeral_owner
                raise InvariantViolation(
                    f"{where}: lock {path} was granted to session {session_id:#x} and never released, but the tree "
                    f"says its owner is {owner}"
                )
        for session_id, paths in sm.tree.ephemerals.items():
            if session_id not in sm.sessions:
                raise InvariantViolation(f"{where}: ephemeral nodes {sorted(paths)} of ended session {session_id:#x}")
            for path in paths:
                held = sm.tree.nodes.get(path)
                if held is None or held.ephemeral_owner != session_id:
                    raise InvariantViolation(f"{where}: the ephemeral index lists {path} under {session_id:#x}")

    def _check_result(self, where: str, view: _ReplicaView, applied: Applied, count: bool) -> None:
        if applied.duplicate:
            if count:
                self.counts["duplicates"] += 1
            return
        result = applied.result
        if isinstance(result, Created) and result.stat.path in LOCKS:
            path = result.stat.path
            if path in view.holders:
                raise InvariantViolation(
                    f"{where}: lock {path} granted to session {result.stat.ephemeral_owner:#x} while session "
                    f"{view.holders[path]:#x} holds it"
                )
            view.holders[path] = result.stat.ephemeral_owner
            if count:
                self.counts["locks_granted"] += 1
        elif isinstance(result, Deleted):
            view.holders.pop(result.stat.path, None)
        elif isinstance(result, SessionClosed | SessionsExpired):
            for path in result.deleted:
                view.holders.pop(path, None)
            if isinstance(result, SessionsExpired) and count:
                self.counts["sessions_expired"] += len(result.session_ids)
        elif isinstance(result, SessionCreated) and count:
            self.counts["sessions_created"] += 1

    @staticmethod
    def _check_versions(where: str, sm: CoordStateMachine, view: _ReplicaView, applied: Applied) -> None:
        for event in applied.events:
            node = sm.tree.nodes.get(event.path)
            if event.kind is EventKind.DELETED or node is None:
                continue
            now = (node.create_revision, node.version, node.mod_revision)
            before = view.versions.get(event.path)
            if before is not None:
                if event.kind is EventKind.CREATED and now[0] <= before[0]:
                    raise InvariantViolation(f"{where}: {event.path} re-created at revision {now[0]} <= {before[0]}")
                if event.kind is EventKind.CHANGED and (
                    now[0] != before[0] or now[1] <= before[1] or now[2] <= before[2]
                ):
                    raise InvariantViolation(f"{where}: {event.path} changed from {before} to {now}")
            view.versions[event.path] = now
