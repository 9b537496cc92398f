"""The driver-facing handle of one replica: inputs (tick, step, propose, ...) and the Ready/advance cycle."""

from __future__ import annotations

import msgspec

from feitian.consensus import leader as _leader
from feitian.consensus.config import Config, RandomSource
from feitian.consensus.leader import Proposal
from feitian.consensus.messages import Message, ReadIndex
from feitian.consensus.progress import ProgressState
from feitian.consensus.raft import Raft
from feitian.consensus.read_only import ReadState
from feitian.consensus.role import Role, SoftState
from feitian.consensus.storage import Storage
from feitian.consensus.types import ConfChange, ConfState, Entry, EntryKind, HardState, Snapshot
from feitian.errors import InternalError, InvalidArgumentError, NotLeaderError


class Ready(msgspec.Struct, frozen=True):
    """Work for the driver, to carry out in this order, then ``RawNode.advance(ready)``:

    1. persist ``snapshot`` (if not None), ``entries`` and ``hard_state`` (if not None) durably (fsync);
    2. only then send ``messages`` (they may promise what step 1 persisted — votes, acknowledged entries);
    3. apply ``committed_entries`` to the state machine in order (after step 1: they may include entries from
       this same Ready), restoring the state machine from ``snapshot`` first if there is one;
    4. serve the reads in ``read_states`` once the state machine has applied up to each one's index;
    5. report ``soft_state`` (leader or role changed) to whoever cares.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()


def may_send_before_persist(ready: Ready, persisted: HardState, role: Role) -> bool:
    """Whether the driver may send ``ready.messages`` *before* persisting ``ready`` (thesis §10.2.1).

    True for a leader whose term and vote are already durable: its messages (AppendEntries, heartbeats,
    ReadIndex replies, TimeoutNow) promise nothing about its own disk, and the core counts the leader's own
    entries toward commitment only after :meth:`RawNode.advance` reports them persisted. So the leader's
    write and its followers' writes run in parallel. Anything else (votes, a new term, snapshots) must be
    persisted first.
    """
    if role is not Role.LEADER or ready.snapshot is not None:
        return False
    hs = ready.hard_state
    return hs is None or (hs.term == persisted.term and hs.vote == persisted.vote)


class ProgressStatus(msgspec.Struct, frozen=True):
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    inflight_msgs: int


class Status(msgspec.Struct, frozen=True):
    """A read-only picture of the replica (for monitoring and tests). ``progress`` is filled on the leader."""

    id: int
    term: int
    vote: int
    commit: int
    applied: int
    last_index: int
    leader_id: int
    role: Role
    conf_state: ConfState
    lead_transferee: int
    progress: dict[int, ProgressStatus]


class RawNode:
    """One replica's consensus core. Synchronous, no I/O, no clock, no randomness of its own.

    ``applied_index`` tells a restarted replica that its state machine already holds entries up to that
    index (they are not handed out again); by default everything after the latest snapshot is re-applied.
    """

    def __init__(self, config: Config, storage: Storage, rand: RandomSource, *, applied_index: int = 0) -> None:
        self._raft = Raft(config, storage, rand, applied_index=applied_index)
        self._prev_soft = self._raft.soft_state()
        self._prev_hard = self._raft.hard_state()
        self._outstanding: Ready | None = None

    # -- introspection --------------------------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self._raft.id

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def role(self) -> Role:
        return self._raft.role

    @property
    def leader_id(self) -> int:
        """The leader this replica follows (itself when leading); 0 if unknown."""
        return self._raft.leader_id

    @property
    def commit_index(self) -> int:
        return self._raft.log.committed

    @property
    def applied_index(self) -> int:
        return self._raft.log.applied

    @property
    def conf_state(self) -> ConfState:
        """Membership as of the applied index: the ConfState to store with a snapshot taken after advance()."""
        return self._raft.tracker.conf_state()

    @property
    def raft(self) -> Raft:
        """The internal state machine (tests and the simulator only)."""
        return self._raft

    def status(self) -> Status:
        r = self._raft
        progress: dict[int, ProgressStatus] = {}
        if r.role == Role.LEADER:
            for node_id, pr in r.tracker.visit():
                progress[node_id] = ProgressStatus(
                    match=pr.match,
                    next=pr.next,
                    state=pr.state,
                    is_learner=pr.is_learner,
                    recent_active=pr.recent_active,
                    inflight_msgs=len(pr.inflights),
                )
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index(),
            leader_id=r.leader_id,
            role=r.role,
            conf_state=r.tracker.conf_state(),
            lead_transferee=r.lead_transferee,
            progress=progress,
        )

    # -- inputs ---------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (the driver calls it every tick interval, e.g. 100 ms)."""
        self._raft.tick()

    def step(self, message: Message) -> None:
        """Deliver a message from a peer. Messages to another replica raise InvalidArgumentError."""
        self._raft.step(message)

    def campaign(self) -> None:
        """Start an election now (as if the election timeout fired); no-op unless this replica may lead."""
        self._raft.hup(transfer=False)

    def propose(self, data: bytes) -> Proposal:
        """Append ``data`` to the log (leader only). Raises NotLeaderError(leader_hint) on any other replica —
        proposals are not forwarded; the client retries at the hinted leader — and on a leader that is
        transferring leadership or being removed; OverloadedError past
        ``max_uncommitted_size_bytes``. Success is known when the entry at ``Proposal.index`` is applied with
        ``Proposal.term``."""
        return _leader.propose(self._raft, data)

    def propose_batch(self, datas: list[bytes]) -> list[Proposal]:
        """Append several proposals in one go (as :meth:`propose`, each its own entry), sending the followers one
        AppendEntries for all of them instead of one per proposal. All or none: an error refuses the batch."""
        if not datas:
            return []
        return _leader.propose_batch(self._raft, datas)

    def propose_conf_change(self, change: ConfChange) -> Proposal:
        """Propose a membership change (leader only). Raises NotLeaderError, UnavailableError while a previous
        change is unapplied or the leader has not committed an entry of its term yet, InvalidArgumentError if
        the change is not allowed from the current configuration. It takes effect when applied."""
        return _leader.propose_conf_change(self._raft, change)

    def read_index(self, context: bytes) -> None:
        """Start a linearizable read named by ``context`` (non-empty, unique among pending reads).

        The result arrives as a ReadState in a later Ready, here or never (a lost leader drops it; time out
        and retry). On a follower it is forwarded to the leader; raises NotLeaderError if none is known.
        """
        if not context:
            raise InvalidArgumentError("read index: context must be non-empty")
        r = self._raft
        if r.role == Role.LEADER:
            _leader.handle_read_request(r, context, r.id)
        elif r.leader_id == 0:
            raise NotLeaderError(f"read index: replica {r.id} knows no leader", leader_hint=None)
        else:
            r.send(ReadIndex(from_id=r.id, to_id=r.leader_id, term=r.term, context=context))

    def transfer_leader(self, target: int) -> None:
        """Hand leadership to voter ``target`` (leader only): it is brought up to date, then told to campaign
        (TimeoutNow). Proposals are refused meanwhile; the transfer is abandoned after an election timeout."""
        _leader.transfer_leader(self._raft, target)

    def report_unreachable(self, node_id: int) -> None:
        """The driver failed to send to ``node_id``: stop pipelining to it and probe."""
        _leader.report_unreachable(self._raft, node_id)

    def report_snapshot(self, node_id: int, *, failed: bool) -> None:
        """The driver finished (or failed) sending an InstallSnapshot to ``node_id``."""
        _leader.report_snapshot(self._raft, node_id, failed=failed)

    # -- Ready / advance ------------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        r = self._raft
        return bool(
            r.soft_state() != self._prev_soft
            or r.hard_state() != self._prev_hard
            or r.log.has_pending_snapshot()
            or r.msgs
            or r.log.unstable.entries
            or r.log.has_next_committed_entries()
            or r.read_states
        )

    def ready(self) -> Ready | None:
        """The next batch of work, or None if there is none. Call :meth:`advance` before the next ready()."""
        if self._outstanding is not None:
            raise InternalError(f"replica {self.id}: ready() called again before advance()")
        if not self.has_ready():
            return None
        r = self._raft
        soft = r.soft_state()
        hard = r.hard_state()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            snapshot=r.log.unstable.snapshot,
            entries=tuple(r.log.unstable.entries),
            messages=tuple(r.msgs),
            committed_entries=tuple(r.log.next_committed_entries()),
            read_states=tuple(r.read_states),
        )
        self._prev_soft = soft
        r.msgs = []
        r.read_states = []
        self._outstanding = rd
        return rd

    def take_committed(self, limit: int | None = None) -> tuple[Entry, ...]:
        """Committed entries beyond the outstanding Ready's, to apply *now* instead of after its ``advance``.

        For a driver that has already applied the outstanding Ready's ``committed_entries`` and is still
        persisting its ``entries``: a leader whose followers acknowledged an entry before its own fsync returned
        can answer without waiting for it (committed means durable on a quorum, whatever this disk holds).
        The entries returned count as applied at once; no later Ready hands them out again. Stops before any
        entry that is not a plain command (configuration changes take effect in ``advance``, in order), and
        returns nothing without an outstanding Ready, while a snapshot is pending, or when the outstanding Ready
        carries a snapshot or a configuration change. At most ``limit`` entries (the rest come in later Readies)."""
        rd = self._outstanding
        if rd is None or rd.snapshot is not None:
            return ()
        if any(e.kind is not EntryKind.NORMAL for e in rd.committed_entries):
            return ()
        log = self._raft.log
        after = max(log.applied, rd.committed_entries[-1].index if rd.committed_entries else 0)
        taken: list[Entry] = []
        for entry in log.committed_entries_after(after):
            if entry.kind is not EntryKind.NORMAL or (limit is not None and len(taken) >= limit):
                break
            taken.append(entry)
        if taken:
            log.applied_to(taken[-1].index)
            r = self._raft
            r.uncommitted_size = max(0, r.uncommitted_size - sum(len(e.data) for e in taken))
        return tuple(taken)

    def advance(self, ready: Ready) -> None:
        """The driver persisted, sent and applied ``ready``. Conf changes among its committed entries take
        effect now, and the applied index moves to its last committed entry (or its snapshot)."""
        if ready is not self._outstanding:
            raise InvalidArgumentError(f"replica {self.id}: advance() with a Ready that is not outstanding")
        self._outstanding = None
        if ready.hard_state is not None:
            self._prev_hard = ready.hard_state
        self._raft.advance(ready.entries, ready.snapshot, ready.committed_entries)
