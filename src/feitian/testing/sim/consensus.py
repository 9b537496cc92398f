"""A seeded simulation of a Raft cluster: 3 or 5 replicas (plus a spare), a faulty network, crashes and
restarts from disk, client writes and reads, membership changes, leader transfers and log compaction.

Everything random comes from one ``random.Random(seed)``, so a run replays exactly from its seed. Safety
invariants (:mod:`feitian.testing.sim.consensus_checker`) are checked as events happen; at the end the faults
heal and the cluster must elect a leader and commit a new write on every member within a bound (liveness).
"""

from __future__ import annotations

import dataclasses
import random
import sys
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from feitian.consensus import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    Config,
    Entry,
    Message,
    Raft,
    ReadState,
    Ready,
    Role,
    Snapshot,
    bootstrap,
)
from feitian.errors import FeitianError, InvalidArgumentError, NotLeaderError, UnavailableError
from feitian.testing.sim import mutants
from feitian.testing.sim.consensus_checker import Checker, InvariantViolation
from feitian.testing.sim.consensus_node import ReadyHooks, SimNode
from feitian.testing.sim.network import NetworkFaults, SimNetwork

ELECTION_TICK = 10
HEARTBEAT_TICK = 2
# A read is sent again (same context) when its replica sees a new leader or after this many ticks without an
# answer, and given up after READ_GIVE_UP_TICKS: what the real driver does (feitian.replica).
READ_RETRY_TICKS = ELECTION_TICK // 2
READ_GIVE_UP_TICKS = 10 * ELECTION_TICK


@dataclass(slots=True)
class _PendingRead:
    started: int
    sent_at: int
    leader_seen: int  # the leader the replica knew when it last sent the read (0: none)


@dataclass(frozen=True, slots=True)
class SimOptions:
    seed: int
    nodes: int = 3
    steps: int = 1500
    # After the faults heal, the cluster must be fully caught up within this many ticks.
    liveness_ticks: int = 400
    trace: bool = False
    # A deliberately broken variant to run instead of the real code (feitian.testing.sim.mutants), to show the
    # checker catches what it claims to.
    mutant: str | None = None
    # "mixed": every fault and workload at rates drawn from the seed. "reads": ReadIndex reads at a high rate
    # under leader pauses, crashes, partitions and long message delays (the faults that threaten read safety).
    profile: str = "mixed"
    # A service whose state machine runs on every replica (feitian.testing.sim.service): "coord" or "dfs".
    service: str | None = None


def replay_command(options: SimOptions) -> str:
    target = options.service or "consensus"
    command = (
        f"python -m feitian.testing.sim {target} --seed {options.seed} --nodes {options.nodes} --steps {options.steps}"
    )
    if options.profile != "mixed":
        command += f" --profile {options.profile}"
    return command + (f" --mutant {options.mutant}" if options.mutant else "")


@dataclass(slots=True)
class SimResult:
    options: SimOptions
    ok: bool
    error: str | None = None
    recent_events: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def replay(self) -> str:
        return replay_command(self.options)


@dataclass(frozen=True, slots=True)
class _Knobs:
    """Per-seed fault and workload rates, drawn from the seed so runs differ in character."""

    pre_vote: bool
    check_quorum: bool
    faults: NetworkFaults
    crash_rate: float
    leader_crash_rate: float
    crash_mid_ready_rate: float
    # A replica (most often the leader) stops for a while as if SIGSTOPped: no ticks, messages to it held
    # back and delivered in a burst when it resumes, everything in memory kept.
    pause_rate: float
    leader_pause_rate: float
    partition_rate: float
    leader_isolate_rate: float
    tick_rate: float
    propose_rate: float
    read_rate: float
    conf_change_rate: float
    transfer_rate: float
    compact_rate: float

    @classmethod
    def draw(cls, rng: random.Random) -> _Knobs:
        max_delay = rng.choice([1, 2, 4])
        return cls(
            pre_vote=rng.random() < 0.8,
            check_quorum=rng.random() < 0.8,
            faults=NetworkFaults(
                drop_rate=rng.choice([0.0, 0.01, 0.05, 0.1, 0.2]),
                duplicate_rate=rng.choice([0.0, 0.02, 0.1]),
                min_delay_ticks=0,
                max_delay_ticks=max_delay,
                long_delay_rate=rng.choice([0.0, 0.01, 0.05]),
                long_delay_ticks=rng.choice([10, 30]),
            ),
            crash_rate=rng.choice([0.0, 0.003, 0.01]),
            leader_crash_rate=rng.choice([0.0, 0.0, 0.005, 0.02]),
            crash_mid_ready_rate=rng.choice([0.0, 0.001, 0.005]),
            partition_rate=rng.choice([0.0, 0.005, 0.02]),
            leader_isolate_rate=rng.choice([0.0, 0.0, 0.01, 0.03]),
            tick_rate=rng.uniform(0.85, 1.0),
            propose_rate=rng.choice([0.1, 0.3, 0.6]),
            read_rate=rng.choice([0.02, 0.1]),
            conf_change_rate=rng.choice([0.0, 0.005, 0.02]),
            transfer_rate=rng.choice([0.0, 0.003, 0.01]),
            compact_rate=rng.choice([0.005, 0.02, 0.05]),
            pause_rate=rng.choice([0.0, 0.002, 0.005]),
            leader_pause_rate=rng.choice([0.0, 0.005, 0.02]),
        )

    def for_reads(self, rng: random.Random) -> _Knobs:
        """The "reads" profile: many reads, leaders often paused or cut off, messages often late."""
        return dataclasses.replace(
            self,
            faults=dataclasses.replace(
                self.faults,
                duplicate_rate=rng.choice([0.02, 0.1]),
                long_delay_rate=rng.choice([0.02, 0.05, 0.1]),
                long_delay_ticks=rng.choice([10, 30]),
            ),
            read_rate=rng.choice([0.3, 0.6, 0.9]),
            leader_pause_rate=rng.choice([0.01, 0.03]),
            leader_isolate_rate=rng.choice([0.0, 0.01, 0.03]),
            crash_rate=rng.choice([0.003, 0.01, 0.02]),
            leader_crash_rate=rng.choice([0.0, 0.005, 0.02]),
            conf_change_rate=0.0,
        )


PROFILES = ("mixed", "reads")


class ConsensusSimulation:
    def __init__(self, options: SimOptions) -> None:
        if options.nodes < 1:
            raise InvalidArgumentError(f"simulation: --nodes must be >= 1, got {options.nodes}")
        self.options = options
        self.rng = random.Random(options.seed)
        if options.profile not in PROFILES:
            raise InvalidArgumentError(f"simulation: unknown profile {options.profile!r}; known: {', '.join(PROFILES)}")
        self.knobs = _Knobs.draw(self.rng)
        if options.profile == "reads":
            self.knobs = self.knobs.for_reads(self.rng)
        self.now = 0
        self.chaos = True
        self.events: deque[str] = deque(maxlen=60)
        self.network: SimNetwork[Message] = SimNetwork(random.Random(self.rng.getrandbits(64)), self.knobs.faults)
        self.nodes: dict[int, SimNode] = {}
        self.down_until: dict[int, int] = {}
        self.paused_until: dict[int, int] = {}
        self.held: dict[int, list[Message]] = {}  # messages that reached a paused replica, in arrival order
        self.read_counters: dict[int, int] = {}  # per replica, reset when it restarts (the mutant's contexts)
        self.pending_reads: dict[tuple[int, bytes], _PendingRead] = {}
        self.pauses = 0
        self.read_retries = 0
        self.heal_at: int | None = None
        self.writes = 0
        self.reads = 0
        self.checker = Checker(current_leaders=self._current_leaders)
        self.hooks = ReadyHooks(
            before_persist=self._before_persist,
            after_persist=self._after_persist,
            send=lambda m: self.network.send(m, self.now),
            applied=self._applied,
            snapshot_restored=self._snapshot_restored,
            read_state=self._read_state,
            crash_after_persist=self._crash_after_persist,
            crash_before_persist=self._crash_before_persist,
        )
        founders = tuple(range(1, options.nodes + 1))
        spare = options.nodes + 1  # starts with empty storage; joins only through membership changes
        snapshot, hard_state = bootstrap(founders)
        for node_id in (*founders, spare):
            node = self._make_node(node_id)
            if node_id != spare:
                node.disk.apply_snapshot(snapshot)
                node.disk.set_hard_state(hard_state)
            node.start(self.rng.getrandbits(64))
            self.nodes[node_id] = node
        self._prev_commit = 0
        self._seen_leader_terms: set[tuple[int, int]] = set()
        self.liveness_ticks_used = -1

    def _make_node(self, node_id: int) -> SimNode:
        return SimNode(node_id=node_id, config=self._config(node_id))

    def _config(self, node_id: int) -> Config:
        return Config(
            id=node_id,
            election_tick=ELECTION_TICK,
            heartbeat_tick=HEARTBEAT_TICK,
            max_size_per_msg_bytes=160,
            max_inflight_msgs=4,
            max_uncommitted_size_bytes=1200,
            max_committed_size_per_ready_bytes=400,
            snapshot_timeout_tick=4 * ELECTION_TICK,
            pre_vote=self.knobs.pre_vote,
            check_quorum=self.knobs.check_quorum,
        )

    def log(self, event: str) -> None:
        line = f"[{self.now}] {event}"
        self.events.append(line)
        if self.options.trace:
            print(line, file=sys.stderr)

    # -- running --------------------------------------------------------------------------------------------

    def run(self) -> SimResult:
        with mutants.applied(self.options.mutant):
            return self._run()

    def _run(self) -> SimResult:
        try:
            for _ in range(self.options.steps):
                self._step()
                self.now += 1
            self._check_liveness()
        except InvariantViolation as exc:
            return self._result(False, str(exc))
        except Exception as exc:  # a crash of the core is a bug too: report it with the seed
            return self._result(False, "".join(traceback.format_exception(exc)).rstrip())
        return self._result(True, None)

    def _result(self, ok: bool, error: str | None) -> SimResult:
        stats: dict[str, Any] = {
            "steps": self.now,
            "liveness_ticks": self.liveness_ticks_used,
            "knobs": {
                "pre_vote": self.knobs.pre_vote,
                "check_quorum": self.knobs.check_quorum,
                "drop_rate": self.knobs.faults.drop_rate,
                "crash_rate": self.knobs.crash_rate,
                "partition_rate": self.knobs.partition_rate,
            },
            "max_term": max((n.raw.term for n in self.nodes.values() if n.raw is not None), default=0),
        }
        for name in self.checker.stats.__slots__:
            stats[name] = getattr(self.checker.stats, name)
        stats["messages"] = self.network.stats.sent
        stats["pauses"] = self.pauses
        stats["read_retries"] = self.read_retries
        return SimResult(self.options, ok, error, list(self.events), stats)

    def _step(self) -> None:
        self.checker.step = self.now
        if self.chaos:
            self._faults()
            self._client()
        for message in self.network.due(self.now):
            node = self.nodes[message.to_id]
            if message.to_id in self.paused_until:
                self.held.setdefault(message.to_id, []).append(message)
            elif node.raw is not None:
                node.raw.step(message)
                self._drain(node)
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id]
            if node_id in self.paused_until:
                continue
            if node.raw is not None and (not self.chaos or self.rng.random() < self.knobs.tick_rate):
                node.raw.tick()
                self._drain(node)
        self._sweep_leaders()

    def _drain(self, node: SimNode) -> None:
        node.handle_ready(self.hooks)
        if node.raw is None and node.node_id not in self.down_until:
            self._on_crash(node)

    def _sweep_leaders(self) -> None:
        for node_id, raft in self._current_leaders():
            key = (raft.term, node_id)
            if key not in self._seen_leader_terms:
                self._seen_leader_terms.add(key)
                self.log(f"replica {node_id} leads term {raft.term}")
                self.checker.on_leader(node_id, raft)

    def _current_leaders(self) -> Iterator[tuple[int, Raft]]:
        for node_id in sorted(self.nodes):
            raw = self.nodes[node_id].raw
            if raw is not None and raw.role == Role.LEADER:
                yield node_id, raw.raft

    # -- Ready hooks ----------------------------------------------------------------------------------------

    def _before_persist(self, node: SimNode, rd: Ready) -> None:
        self._prev_commit = node.disk.hard_state.commit
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            self._sweep_leaders()

    def _after_persist(self, node: SimNode, rd: Ready) -> None:
        self.checker.on_persisted(node.node_id, node.disk, rd, self._prev_commit)

    def _applied(self, node: SimNode, entry: Entry) -> None:
        assert node.sm is not None
        self.checker.on_applied(node.node_id, entry, node.sm.digest)
        self.checker.maybe_complete_reads(node.node_id, node.sm.index)

    def _snapshot_restored(self, node: SimNode, snapshot: Snapshot) -> None:
        assert node.sm is not None
        self.log(f"replica {node.node_id} installs snapshot {snapshot.meta.index}/{snapshot.meta.term}")
        self.checker.on_snapshot_restored(node.node_id, snapshot, node.sm.digest)
        self.checker.maybe_complete_reads(node.node_id, node.sm.index)

    def _read_state(self, node: SimNode, rs: ReadState) -> None:
        assert node.sm is not None
        self.checker.on_read_state(node.node_id, rs, node.sm.index)

    def _crash_after_persist(self, node: SimNode) -> bool:
        if self.chaos and self.rng.random() < self.knobs.crash_mid_ready_rate:
            self.log(f"replica {node.node_id} crashes after persisting, before sending")
            return True
        return False

    def _crash_before_persist(self, node: SimNode) -> bool:
        if self.chaos and self.rng.random() < self.knobs.crash_mid_ready_rate:
            self.log(f"leader {node.node_id} crashes after sending, before persisting its own entries")
            return True
        return False

    # -- faults ---------------------------------------------------------------------------------------------

    def _on_crash(self, node: SimNode) -> None:
        self.checker.on_crash(node.node_id)
        self.paused_until.pop(node.node_id, None)
        self.held.pop(node.node_id, None)
        self.read_counters.pop(node.node_id, None)
        self.down_until[node.node_id] = self.now + self.rng.randint(1, 6 * ELECTION_TICK)

    def _restart(self, node_id: int) -> None:
        del self.down_until[node_id]
        node = self.nodes[node_id]
        node.start(self.rng.getrandbits(64))
        self.log(f"replica {node_id} restarts (term {node.disk.hard_state.term}, last {node.disk.last_index()})")
        self._drain(node)

    def _pause(self, node: SimNode, what: str) -> None:
        self.pauses += 1
        self.paused_until[node.node_id] = self.now + self.rng.randint(1, 4 * ELECTION_TICK)
        self.log(f"{what} {node.node_id} pauses until {self.paused_until[node.node_id]}")

    def _resume(self, node_id: int) -> None:
        del self.paused_until[node_id]
        held = self.held.pop(node_id, [])
        self.log(f"replica {node_id} resumes ({len(held)} held messages)")
        node = self.nodes[node_id]
        for message in held:
            if node.raw is None:
                break
            node.raw.step(message)
            self._drain(node)

    def _faults(self) -> None:
        for node_id, at in sorted(self.down_until.items()):
            if self.now >= at:
                self._restart(node_id)
        for node_id, at in sorted(self.paused_until.items()):
            if self.now >= at:
                self._resume(node_id)
        if self.rng.random() < self.knobs.pause_rate and (reachable := self._up_nodes()):
            self._pause(self.rng.choice(reachable), "replica")
        if self.rng.random() < self.knobs.leader_pause_rate and (leader := self._leader()) is not None:
            self._pause(leader, "leader")
        if self.rng.random() < self.knobs.crash_rate:
            up = [n for n in sorted(self.nodes) if self.nodes[n].up]
            if up:
                node = self.nodes[self.rng.choice(up)]
                self.log(f"replica {node.node_id} crashes")
                node.crash()
                self._on_crash(node)
        if self.rng.random() < self.knobs.leader_crash_rate:
            leader = self._leader()
            if leader is not None:
                self.log(f"leader {leader.node_id} crashes")
                leader.crash()
                self._on_crash(leader)
        if self.heal_at is not None:
            if self.now >= self.heal_at:
                self.network.heal()
                self.heal_at = None
                self.log("partition heals")
        elif self.rng.random() < self.knobs.leader_isolate_rate and (leader := self._leader()) is not None:
            # The leader keeps a minority: it can still append but not commit (paper Figure 8 territory).
            others = [n for n in sorted(self.nodes) if n != leader.node_id]
            self.rng.shuffle(others)
            minority = [leader.node_id, *others[: self.rng.randint(0, (len(self.nodes) - 1) // 2 - 1)]]
            groups = [sorted(minority), sorted(set(self.nodes) - set(minority))]
            self.network.partition(groups)
            self.heal_at = self.now + self.rng.randint(2, 4 * ELECTION_TICK)
            self.log(f"leader isolated: partition {groups}")
        elif self.rng.random() < self.knobs.partition_rate:
            ids = sorted(self.nodes)
            self.rng.shuffle(ids)
            cut = self.rng.randint(1, len(ids) - 1)
            groups = [sorted(ids[:cut]), sorted(ids[cut:])]
            self.network.partition(groups)
            self.heal_at = self.now + self.rng.randint(ELECTION_TICK, 15 * ELECTION_TICK)
            self.log(f"partition {groups}")

    # -- clients --------------------------------------------------------------------------------------------

    def _up_nodes(self) -> list[SimNode]:
        """Replicas that are running and not paused (the ones a client or an operator can reach)."""
        return [self.nodes[n] for n in sorted(self.nodes) if self.nodes[n].up and n not in self.paused_until]

    def _leader(self) -> SimNode | None:
        leaders = [n for n in self._up_nodes() if n.raw is not None and n.raw.role == Role.LEADER]
        if not leaders:
            return None
        return max(leaders, key=lambda n: n.raw.term if n.raw is not None else 0)

    def _client(self) -> None:
        k = self.knobs
        if self.rng.random() < k.propose_rate:
            self._propose()
        if self.rng.random() < k.read_rate:
            self._read()
        self._retry_reads()
        if self.rng.random() < k.conf_change_rate:
            self._conf_change()
        if self.rng.random() < k.transfer_rate:
            self._transfer()
        if self.rng.random() < k.compact_rate:
            self._compact()

    def _propose(self) -> None:
        up = self._up_nodes()
        if not up:
            return
        node = self.rng.choice(up)
        count = 1 if self.rng.random() >= 0.3 else self.rng.randint(2, 4)  # sometimes a batch (propose_batch)
        datas = []
        for _ in range(count):
            self.writes += 1
            datas.append(f"w{self.writes}".encode() + b"." * self.rng.randint(0, 40))
        for _ in range(2):  # one redirect on NotLeaderError
            assert node.raw is not None
            try:
                proposals = node.raw.propose_batch(datas) if count > 1 else [node.raw.propose(datas[0])]
            except NotLeaderError as exc:
                hint = exc.fields.get("leader_hint")
                if hint is None or hint not in self.nodes or not self.nodes[hint].up:
                    return
                node = self.nodes[hint]
                continue
            except UnavailableError:
                return
            for proposal, data in zip(proposals, datas, strict=True):
                self.checker.on_proposed(node.node_id, proposal, data)
            self._drain(node)
            return

    def _read(self) -> None:
        up = self._up_nodes()
        if not up:
            return
        node = self.rng.choice(up)
        assert node.raw is not None
        self.reads += 1
        if self.options.mutant == mutants.COLLIDING_READS:
            # Each replica numbers its reads 1, 2, 3... from its last start: equal contexts across replicas
            # and across one replica's restarts, as the driver once did.
            count = self.read_counters[node.node_id] = self.read_counters.get(node.node_id, 0) + 1
            context = count.to_bytes(8, "big")
        else:  # unique, as the driver's (replica id, random incarnation, counter)
            context = f"{node.node_id}.{node.restarts}.{self.reads}".encode()
        self.checker.on_read_started(node.node_id, context)
        self.pending_reads[(node.node_id, context)] = _PendingRead(started=self.now, sent_at=-1, leader_seen=-1)
        self._send_read(node, context)

    def _send_read(self, node: SimNode, context: bytes) -> None:
        assert node.raw is not None
        read = self.pending_reads[(node.node_id, context)]
        read.sent_at = self.now
        read.leader_seen = node.raw.leader_id
        try:
            node.raw.read_index(context)
        except NotLeaderError:
            return  # sent again once a leader is known
        self._drain(node)

    def _retry_reads(self) -> None:
        for key in sorted(self.pending_reads):
            node_id, context = key
            read = self.pending_reads[key]
            node = self.nodes[node_id]
            if key not in self.checker.reads or node.raw is None:
                del self.pending_reads[key]  # answered, or lost with its replica
            elif self.now - read.started > READ_GIVE_UP_TICKS:
                del self.pending_reads[key]
                del self.checker.reads[key]
            elif node_id not in self.paused_until and (
                node.raw.leader_id != read.leader_seen or self.now - read.sent_at >= READ_RETRY_TICKS
            ):
                self.read_retries += 1
                self._send_read(node, context)

    def _conf_change(self) -> None:
        leader = self._leader()
        if leader is None or leader.raw is None:
            return
        cc = self._pick_conf_change(leader)
        if cc is None:
            return
        try:
            proposal = leader.raw.propose_conf_change(cc)
        except (UnavailableError, InvalidArgumentError) as exc:
            self.log(f"conf change {cc} refused: {exc.message}")
            return
        self.log(f"replica {leader.node_id} proposes conf change at {proposal.index}: {cc}")
        self._drain(leader)

    def _pick_conf_change(self, leader: SimNode) -> ConfChange | None:
        assert leader.raw is not None
        cs = leader.raw.conf_state
        if cs.voters_outgoing:
            return ConfChange() if not cs.auto_leave else None
        voters, learners = set(cs.voters), set(cs.learners)
        others = sorted(set(self.nodes) - voters - learners)
        t = ConfChangeType
        options: list[tuple[ConfChangeSingle, ...]] = []
        for n in others:
            options.append((ConfChangeSingle(t.ADD_LEARNER, n),))
            options.append((ConfChangeSingle(t.ADD_VOTER, n),))
        for n in sorted(learners):
            options.append((ConfChangeSingle(t.ADD_VOTER, n),))
            options.append((ConfChangeSingle(t.REMOVE, n),))
        if len(voters) > 1:
            for n in sorted(voters):
                options.append((ConfChangeSingle(t.REMOVE, n),))
                options.append((ConfChangeSingle(t.ADD_LEARNER, n),))
        for out in sorted(voters):
            for new in sorted(learners) + others:
                options.append((ConfChangeSingle(t.REMOVE, out), ConfChangeSingle(t.ADD_VOTER, new)))
                options.append((ConfChangeSingle(t.ADD_LEARNER, out), ConfChangeSingle(t.ADD_VOTER, new)))
        if not options:
            return None
        changes = self.rng.choice(options)
        transition = self.rng.choice(list(ConfChangeTransition))
        if len(changes) > 1 and transition == ConfChangeTransition.AUTO and self.rng.random() < 0.5:
            transition = ConfChangeTransition.JOINT_EXPLICIT
        return ConfChange(changes=changes, transition=transition)

    def _transfer(self) -> None:
        leader = self._leader()
        if leader is None or leader.raw is None:
            return
        voters = [v for v in leader.raw.conf_state.voters if v != leader.node_id]
        if not voters:
            return
        target = self.rng.choice(voters)
        try:
            leader.raw.transfer_leader(target)
        except FeitianError:
            return
        self.log(f"replica {leader.node_id} transfers leadership to {target}")
        self._drain(leader)

    def _compact(self) -> None:
        up = self._up_nodes()
        if not up:
            return
        node = self.rng.choice(up)
        assert node.raw is not None and node.sm is not None
        applied = node.raw.applied_index
        if applied != node.sm.index:
            raise InvariantViolation(f"replica {node.node_id}: core applied {applied}, state machine {node.sm.index}")
        if applied <= node.disk.snapshot().meta.index:
            return
        node.disk.create_snapshot(applied, node.raw.conf_state, node.image())
        keep = self.rng.choice([0, 2, 10, 50])
        node.disk.compact(max(node.disk.first_index() - 1, applied - keep))
        self.log(f"replica {node.node_id} snapshots at {applied}, log from {node.disk.first_index()}")

    # -- liveness -------------------------------------------------------------------------------------------

    def _check_liveness(self) -> None:
        """Heal everything; a leader must emerge and commit a fresh write on every member in bounded ticks."""
        self.chaos = False
        self.network.heal()
        self.heal_at = None
        self.network.faults = NetworkFaults(min_delay_ticks=0, max_delay_ticks=1)
        for node_id in sorted(self.down_until):
            self.down_until[node_id] = self.now
            self._restart(node_id)
        for node_id in sorted(self.paused_until):
            self._resume(node_id)
        self.log("faults healed: checking liveness")
        start = self.now
        probe: tuple[int, int, int] | None = None  # (leader id, index, term)
        while self.now - start < self.options.liveness_ticks:
            self._step()
            self.now += 1
            leader = self._stable_leader()
            if leader is None or leader.raw is None:
                continue
            cs = leader.raw.conf_state
            if cs.voters_outgoing and not cs.auto_leave:
                self._conf_change()
            if probe is not None and leader.raw.term > probe[2] and leader.raw.raft.log.term(probe[1]) != probe[2]:
                probe = None  # lost with its leader (a later leader's log lacks it): propose again
            if probe is None:
                try:
                    proposal = leader.raw.propose(b"liveness-probe")
                except FeitianError:
                    continue
                self.checker.on_proposed(leader.node_id, proposal, b"liveness-probe")
                probe = (leader.node_id, proposal.index, proposal.term)
                self._drain(leader)
                continue
            members = self._members(leader)
            if all(self._caught_up(n, probe[1]) for n in members):
                self.liveness_ticks_used = self.now - start
                for node in members:
                    assert node.raw is not None
                    self.checker.check_acked_durable(node.node_id, node.raw.raft)
                return
        raise InvariantViolation(
            f"liveness: {self.options.liveness_ticks} ticks after healing, no leader committed a write on every "
            f"member; probe={probe}; replicas: {self._describe()}"
        )

    def _members(self, leader: SimNode) -> list[SimNode]:
        assert leader.raw is not None
        cs = leader.raw.conf_state
        ids = set(cs.voters) | set(cs.voters_outgoing) | set(cs.learners) | set(cs.learners_next)
        return [self.nodes[i] for i in sorted(ids)]

    def _stable_leader(self) -> SimNode | None:
        leader = self._leader()
        if leader is None or leader.raw is None:
            return None
        for node in self._members(leader):
            if node.raw is None or node.raw.leader_id != leader.node_id or node.raw.term != leader.raw.term:
                return None
        return leader

    def _caught_up(self, node: SimNode, index: int) -> bool:
        return node.sm is not None and node.sm.index >= index

    def _describe(self) -> str:
        parts = []
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id]
            if node.raw is None:
                parts.append(f"{node_id}: down")
                continue
            st = node.raw.status()
            parts.append(
                f"{node_id}: {st.role.value} term={st.term} lead={st.leader_id} commit={st.commit} "
                f"applied={st.applied} last={st.last_index} conf={st.conf_state}"
                + (f" progress={st.progress}" if st.progress else "")
            )
        return "\n  " + "\n  ".join(parts)


def run_consensus_seed(
    seed: int,
    *,
    nodes: int = 3,
    steps: int = 1500,
    trace: bool = False,
    mutant: str | None = None,
    profile: str = "mixed",
) -> SimResult:
    options = SimOptions(seed=seed, nodes=nodes, steps=steps, trace=trace, mutant=mutant, profile=profile)
    return ConsensusSimulation(options).run()
