"""The Pangu master under simulation: :class:`~feitian.dfs.core.DfsStateMachine` on every replica, with the
commands a master leader decides — from its own state and its own (jumping) clock — for writers and operators.

The leader registers five chunk servers on three racks. Writers ``h0``..``h2`` create files with a write lease,
add chunks (ids from the leader's ``next_chunk_id``, sometimes colliding with an uncommitted one), commit and seal
them, rebuild a pipeline (``BumpChunkVersion``), renew and close; they also try to take over other writers' files
(``AcquireLease``). An operator makes directories, renames, deletes, changes replication, adds and removes
replicas. Every command's ``now_ns`` and lease expiry come from the proposing leader's clock.

Invariants, on every replica after every applied entry (besides equal state digests at equal indexes):

* the namespace's own invariants (:meth:`DfsStateMachine.validate`): every inode listed by its parent, every chunk
  owned by exactly one file at its position, no chunk owned by two files, lengths adding up, replicas only on
  registered servers and in the server index, none on decommissioned servers;
* **replication**: a new chunk has between the file's ``min_write_replicas`` and ``replication`` replicas, and
  no chunk ever has more than ``max_replication``;
* **lease exclusivity**: a file's lease passes to another holder only once the previous one expired and its
  takeover grace passed, by the state machine's clock;
* **monotonic**: the state machine's clock, ``next_inode``, ``next_chunk_id``, ``next_lease_id`` and every
  chunk's version never go back (across leader clocks that jump backwards).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import cast

from feitian.base.units import SECOND_NS, KiB
from feitian.consensus import Entry
from feitian.dfs.core import (
    AcquireLease,
    AddChunk,
    AddReplica,
    BumpChunkVersion,
    CloseFile,
    Command,
    CommitChunk,
    Create,
    CreateResult,
    Delete,
    DfsStateMachine,
    FileNode,
    LeaseGrant,
    LeaseMode,
    Mkdir,
    NamespaceConfig,
    RegisterServer,
    RemovalReason,
    RemoveReplica,
    Rename,
    RenewLease,
    SetReplication,
    encode_command,
)
from feitian.errors import FeitianError
from feitian.replica import StateMachine
from feitian.testing.sim.consensus_checker import InvariantViolation
from feitian.testing.sim.consensus_node import SimNode
from feitian.testing.sim.service import LOST, ServiceSimulation

SERVERS = tuple(f"cs{i}" for i in range(5))
HOLDERS = ("h0", "h1", "h2")
NAMES = tuple(f"/d{d}/f{f}" for d in range(2) for f in range(4))
REQUEST_GIVE_UP_TICKS = 60


@dataclass(slots=True)
class _Writer:
    holder: str
    file_id: int = 0
    lease_id: int = 0
    busy: bool = False
    sent_at: int = 0
    token: int = 0


@dataclass(slots=True)
class _ReplicaView:
    clock_ns: int = 0
    next_inode: int = 0
    next_chunk_id: int = 0
    next_lease_id: int = 0
    versions: dict[int, int] = field(default_factory=dict)  # chunk id -> version
    leases: dict[int, tuple[int, str, int]] = field(default_factory=dict)  # file -> (lease id, holder, expires)


def _view_of(sm: DfsStateMachine) -> _ReplicaView:
    view = _ReplicaView(sm.clock_ns, sm.tree.next_inode, sm.table.next_chunk_id, sm.next_lease_id)
    view.versions = {c.chunk_id: c.version for c in sm.table.chunks.values()}
    view.leases = _leases(sm)
    return view


def _leases(sm: DfsStateMachine) -> dict[int, tuple[int, str, int]]:
    out = {}
    for file_id in sm.leased_files():
        file = sm.tree.nodes[file_id]
        assert isinstance(file, FileNode) and file.lease is not None
        out[file_id] = (file.lease.lease_id, file.lease.holder, file.lease.expires_ns)
    return out


class DfsModel:
    name = "dfs"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.writers = [_Writer(h) for h in HOLDERS]
        self.operator = _Writer("operator")
        self.views: dict[int, _ReplicaView] = {}
        self.counted: set[int] = set()
        self.counts = {"files_created": 0, "chunks_added": 0, "takeovers": 0, "refused": 0, "leases_busy": 0}

    def new_machine(self) -> StateMachine:
        # The takeover grace shortened from 5 s to 1 s to fit the run's time scale (100 ms ticks).
        return DfsStateMachine(NamespaceConfig(takeover_grace_ns=SECOND_NS))

    def stats(self) -> dict[str, int]:
        return dict(self.counts)

    # -- the leader's decisions --------------------------------------------------------------------------------

    def act(self, sim: ServiceSimulation) -> None:
        for writer in (*self.writers, self.operator):
            if writer.busy and sim.now - writer.sent_at > REQUEST_GIVE_UP_TICKS:
                writer.busy, writer.token = False, writer.token + 1
        leader = sim.leader()
        if leader is None or leader.service is None:
            return
        sm = cast(DfsStateMachine, leader.service)
        now = sim.clock_ns(leader.node_id)
        missing = [s for s in SERVERS if s not in sm.table.servers]
        if missing and not self.operator.busy:
            i = SERVERS.index(missing[0])
            self._send(
                sim, leader, self.operator, RegisterServer(missing[0], f"10.0.0.{i}:7000", f"r{i % 3}", 1 << 40, now)
            )
            return
        if self.rng.random() >= sim.knobs.propose_rate:
            return
        idle = [w for w in (*self.writers, self.operator) if not w.busy]
        if not idle:
            return
        writer = self.rng.choice(idle)
        command = self._operator_command(sm, now) if writer is self.operator else self._writer_command(sm, writer, now)
        if command is not None:
            self._send(sim, leader, writer, command)

    def _expiry(self, now: int) -> int:
        return now + self.rng.choice([1, 2, 5, 20]) * SECOND_NS

    def _writer_command(self, sm: DfsStateMachine, w: _Writer, now: int) -> Command | None:
        rng = self.rng
        file = sm.tree.nodes.get(w.file_id) if w.file_id else None
        if not isinstance(file, FileNode) or file.lease is None or file.lease.lease_id != w.lease_id:
            w.file_id = w.lease_id = 0
            if rng.random() < 0.5:
                path = rng.choice(NAMES)
                return Create(
                    path,
                    now,
                    replication=rng.choice([1, 2, 3]),
                    chunk_size_bytes=64 * KiB,
                    overwrite=rng.random() < 0.3,
                    parents=True,
                    holder=w.holder,
                    lease_expires_ns=self._expiry(now),
                )
            return AcquireLease(rng.choice(NAMES), w.holder, LeaseMode.APPEND, now, self._expiry(now))
        if rng.random() < 0.03:  # the writer dies: its lease is left to expire, then others may take the file
            w.file_id = w.lease_id = 0
            return None
        last = sm.table.chunks[file.chunks[-1]] if file.chunks else None
        roll = rng.random()
        if last is None or roll < 0.25:
            replicas = tuple(rng.sample(SERVERS, rng.randint(file.min_write_replicas, file.replication)))
            previous = -1
            if last is not None and not last.sealed:
                previous = min(file.chunk_size_bytes, last.length + rng.randint(0, 8) * KiB)
            chunk_id = sm.table.next_chunk_id + (1 if rng.random() < 0.2 else 0)
            return AddChunk(w.file_id, w.lease_id, chunk_id, replicas, now, previous_length=previous)
        if roll < 0.55:
            length = min(file.chunk_size_bytes, last.length + rng.randint(0, 16) * KiB)
            return CommitChunk(w.file_id, w.lease_id, last.chunk_id, length, rng.random() < 0.2, now)
        if roll < 0.65:
            keep = [s for s in last.replicas if rng.random() < 0.7] or list(last.replicas[:1])
            return BumpChunkVersion(w.file_id, w.lease_id, last.chunk_id, last.version + 1, tuple(keep), now)
        if roll < 0.8:
            return RenewLease(w.file_id, w.lease_id, now, self._expiry(now))
        return CloseFile(w.file_id, w.lease_id, now, seal_last=rng.random() < 0.5)

    def _operator_command(self, sm: DfsStateMachine, now: int) -> Command | None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return Mkdir(f"/d{rng.randint(0, 2)}", now, parents=True)
        if roll < 0.25:
            return Rename(rng.choice(NAMES), rng.choice(NAMES), now, overwrite=rng.random() < 0.5)
        if roll < 0.35:
            return Delete(rng.choice(NAMES), now, force=rng.random() < 0.2)
        if roll < 0.45:
            return SetReplication(rng.choice(NAMES), rng.choice([1, 2, 3]), now)
        if not sm.table.chunks:
            return None
        chunk = sm.table.chunks[rng.choice(sorted(sm.table.chunks))]
        if roll < 0.75:
            others = [s for s in SERVERS if s not in chunk.replicas]
            if not others:
                return None
            return AddReplica(chunk.chunk_id, rng.choice(others), chunk.version, chunk.length, now)
        if not chunk.replicas:
            return None
        return RemoveReplica(chunk.chunk_id, rng.choice(chunk.replicas), rng.choice(list(RemovalReason)))

    def _send(self, sim: ServiceSimulation, leader: SimNode, w: _Writer, command: Command) -> None:
        w.token += 1
        token = w.token
        w.busy, w.sent_at = True, sim.now

        def answered(result: object) -> None:
            if w.token != token:
                return
            w.busy = False
            if result is LOST:
                return
            if (isinstance(result, CreateResult) and result.lease_id) or isinstance(result, LeaseGrant):
                w.file_id, w.lease_id = result.file_id, result.lease_id
            elif isinstance(command, CloseFile) and not isinstance(result, FeitianError):
                w.file_id = w.lease_id = 0

        if not sim.submit(leader, encode_command(command), answered):
            w.busy = False

    # -- invariants --------------------------------------------------------------------------------------------

    def on_restored(self, sim: ServiceSimulation, node: SimNode) -> None:
        self.views[node.node_id] = _view_of(cast(DfsStateMachine, node.service))

    def check_applied(self, sim: ServiceSimulation, node: SimNode, entry: Entry) -> None:
        sm = cast(DfsStateMachine, node.service)
        where = f"dfs replica {node.node_id} at index {entry.index}"
        try:
            sm.validate()
        except FeitianError as exc:
            raise InvariantViolation(f"{where}: {exc.message}") from None
        before, after = self.views[node.node_id], _view_of(sm)
        for name in ("clock_ns", "next_inode", "next_chunk_id", "next_lease_id"):
            if getattr(after, name) < getattr(before, name):
                raise InvariantViolation(
                    f"{where}: {name} went back from {getattr(before, name)} to {getattr(after, name)}"
                )
        max_replication = sm.config.max_replication
        for chunk_id, chunk in sm.table.chunks.items():
            if len(chunk.replicas) > max_replication:
                raise InvariantViolation(f"{where}: chunk {chunk_id} has {len(chunk.replicas)} replicas")
            old = before.versions.get(chunk_id)
            if old is None:
                file = sm.tree.nodes[chunk.file_id]
                assert isinstance(file, FileNode)
                if chunk.version == 1 and not file.min_write_replicas <= len(chunk.replicas) <= file.replication:
                    raise InvariantViolation(
                        f"{where}: new chunk {chunk_id} has {len(chunk.replicas)} replicas, its file needs "
                        f"{file.min_write_replicas}..{file.replication}"
                    )
            elif chunk.version < old:
                raise InvariantViolation(f"{where}: chunk {chunk_id}'s version went back from {old} to {chunk.version}")
        grace = sm.config.takeover_grace_ns
        count = entry.index not in self.counted
        self.counted.add(entry.index)
        for file_id, (lease_id, holder, _) in after.leases.items():
            prev = before.leases.get(file_id)
            if prev is None or prev[0] == lease_id or prev[1] == holder:
                continue
            if sm.clock_ns < prev[2] + grace:
                raise InvariantViolation(
                    f"{where}: file {file_id}'s lease {prev[0]} of {prev[1]!r} (live until {prev[2]} + grace {grace}) "
                    f"was taken over by {holder!r} (lease {lease_id}) at {sm.clock_ns}"
                )
            if count:
                self.counts["takeovers"] += 1
        if count:
            self._count(node, after.next_chunk_id - before.next_chunk_id)
        self.views[node.node_id] = after

    def _count(self, node: SimNode, new_chunks: int) -> None:
        self.counts["chunks_added"] += new_chunks
        result = node.last_result
        if isinstance(result, FeitianError):
            self.counts["refused"] += 1
            if result.fields.get("reason") == "open_for_writing":
                self.counts["leases_busy"] += 1
        elif isinstance(result, CreateResult):
            self.counts["files_created"] += 1
