"""The Raft state machine of one replica: terms, roles, elections and the follower side of replication.

:class:`Raft` is driven by :class:`~feitian.consensus.rawnode.RawNode`; it never does I/O. It queues outgoing
messages in ``msgs`` and confirmed reads in ``read_states``; the leader-side logic lives in
:mod:`feitian.consensus.leader`. Section numbers refer to Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm" (extended), and "thesis" to Ongaro's PhD thesis.
"""

from __future__ import annotations

import enum

from feitian.consensus import confchange
from feitian.consensus import leader as _leader
from feitian.consensus.config import Config, RandomSource
from feitian.consensus.log import RaftLog
from feitian.consensus.messages import (
    AppendEntries,
    AppendEntriesReply,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    Message,
    ReadIndexReply,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)
from feitian.consensus.progress import Inflights, Progress
from feitian.consensus.quorum import VoteResult
from feitian.consensus.read_only import ReadOnly, ReadState
from feitian.consensus.role import Role, SoftState
from feitian.consensus.storage import Storage
from feitian.consensus.tracker import ProgressTracker, TrackerConfig
from feitian.consensus.types import ConfChange, Entry, EntryKind, HardState, Snapshot
from feitian.errors import DataCorruptionError, InternalError, InvalidArgumentError


class _Campaign(enum.Enum):
    PRE_ELECTION = "pre_election"
    ELECTION = "election"
    TRANSFER = "transfer"


class Raft:
    def __init__(self, config: Config, storage: Storage, rand: RandomSource, *, applied_index: int = 0) -> None:
        config.validate()
        self.id = config.id
        self.config = config
        self.rand = rand
        self.log = RaftLog(storage, max_committed_size_per_ready_bytes=config.max_committed_size_per_ready_bytes)
        self.term = 0
        self.vote = 0
        self.role = Role.FOLLOWER
        self.leader_id = 0
        self.is_learner = False
        self.tracker = ProgressTracker(config.max_inflight_msgs)
        self.lead_transferee = 0
        # Index of the latest conf change the leader appended; no new one until it is applied.
        self.pending_conf_index = 0
        # The leader appended a conf change that removes or demotes it (see leader.is_leaving).
        self.leaving = False
        # Payload bytes appended by this leader and not yet handed out as committed.
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        # Reads that arrived before this leader committed an entry of its term: (context, from_id).
        self.pending_read_requests: list[tuple[bytes, int]] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []

        hard_state, conf_state = storage.initial_state()
        tracker_config, progress = confchange.restore(
            conf_state, last_index=self.log.last_index(), max_inflight_msgs=config.max_inflight_msgs
        )
        self.switch_to_config(tracker_config, progress)
        if hard_state != HardState():
            self._load_state(hard_state)
        if applied_index > 0:
            self.log.applied_to(applied_index)
        self.become_follower(self.term, 0)

    def _load_state(self, hs: HardState) -> None:
        if hs.commit > self.log.last_index():
            raise DataCorruptionError(
                f"replica {self.id}: persisted commit {hs.commit} beyond last index {self.log.last_index()}"
            )
        # A commit below the snapshot's index means the hard state was not rewritten after the snapshot.
        self.log.committed = max(hs.commit, self.log.committed)
        self.term = hs.term
        self.vote = hs.vote

    # -- state ----------------------------------------------------------------------------------------------

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(leader_id=self.leader_id, role=self.role)

    def promotable(self) -> bool:
        """Whether this replica may campaign: a voter without an unpersisted snapshot."""
        pr = self.tracker.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.log.has_pending_snapshot()

    def committed_entry_in_current_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def send(self, message: Message) -> None:
        self.msgs.append(message)

    # -- role transitions -----------------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = 0
        self.leader_id = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.config.election_tick + self.rand.randrange(self.config.election_tick)
        self.lead_transferee = 0
        self.tracker.reset_votes()
        last = self.log.last_index()
        for node_id, pr in list(self.tracker.progress.items()):
            self.tracker.progress[node_id] = Progress(
                match=last if node_id == self.id else 0,
                next=last + 1,
                inflights=Inflights(self.config.max_inflight_msgs),
                is_learner=pr.is_learner,
            )
        self.pending_conf_index = 0
        self.leaving = False
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_read_requests = []

    def become_follower(self, term: int, leader_id: int) -> None:
        self._reset(term)
        self.leader_id = leader_id
        self.role = Role.FOLLOWER

    def become_pre_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InternalError(f"replica {self.id}: leader cannot become pre-candidate")
        # Neither term nor vote change: a pre-vote must not disrupt anyone (thesis §9.6).
        self.tracker.reset_votes()
        self.leader_id = 0
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InternalError(f"replica {self.id}: leader cannot become candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        if self.role == Role.FOLLOWER:
            raise InternalError(f"replica {self.id}: follower cannot become leader without an election")
        self._reset(self.term)
        self.leader_id = self.id
        self.role = Role.LEADER
        pr = self.tracker.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # Any conf change in the log may be unapplied: allow the next one only after all of it is applied.
        self.pending_conf_index = self.log.last_index()
        self.leaving = _leader.leaves_after_log(self)
        # Commit entries of earlier terms by committing one of ours (§5.4.2, §8).
        _leader.append_entries(self, [(EntryKind.NOOP, b"")], force=True)

    # -- time -----------------------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role == Role.LEADER:
            _leader.tick_leader(self)
            return
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.hup(transfer=False)

    # -- elections (§5.2, thesis §9.6 pre-vote, §3.10 leader transfer) --------------------------------------

    def hup(self, *, transfer: bool) -> None:
        if self.role == Role.LEADER or not self.promotable() or self._has_unapplied_conf_changes():
            return
        if transfer:
            self._campaign(_Campaign.TRANSFER)
        elif self.config.pre_vote:
            self._campaign(_Campaign.PRE_ELECTION)
        else:
            self._campaign(_Campaign.ELECTION)

    def _has_unapplied_conf_changes(self) -> bool:
        return self._conf_change_between(self.log.applied, self.log.committed)

    def _conf_change_between(self, after: int, through: int) -> bool:
        """Whether an entry in (after, through] is a configuration change."""
        if after >= through:
            return False
        lo = max(after + 1, self.log.first_index())
        entries = self.log.slice(lo, through + 1, 2**63 - 1) or []
        return any(e.kind == EntryKind.CONF_CHANGE for e in entries)

    def _campaign(self, kind: _Campaign) -> None:
        pre_vote = kind == _Campaign.PRE_ELECTION
        if pre_vote:
            self.become_pre_candidate()
            term = self.term + 1  # the term we would campaign in; ours does not change
        else:
            self.become_candidate()
            term = self.term
        if self._poll(self.id, True) == VoteResult.WON:
            # The only voter (single-replica cluster).
            if pre_vote:
                self._campaign(_Campaign.ELECTION)
            else:
                self.become_leader()
            return
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        for node_id in self.tracker.voter_ids():
            if node_id == self.id:
                continue
            self.send(
                RequestVote(
                    from_id=self.id,
                    to_id=node_id,
                    term=term,
                    last_log_index=last_index,
                    last_log_term=last_term,
                    pre_vote=pre_vote,
                    leader_transfer=kind == _Campaign.TRANSFER,
                )
            )

    def _poll(self, node_id: int, granted: bool) -> VoteResult:
        self.tracker.record_vote(node_id, granted)
        return self.tracker.tally_votes()[2]

    # -- stepping -------------------------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.to_id != self.id:
            raise InvalidArgumentError(f"replica {self.id}: message for replica {m.to_id}: {type(m).__name__}")
        if isinstance(m, RequestVoteReply) and m.commit_term and self.role != Role.LEADER:
            # A voter's commit index is a fact of any term: if our log holds its entry, ours is committed too.
            # If that commits a configuration change, this campaign counts votes in a configuration about to
            # change: stop it and apply the change first (hup refuses while it is unapplied).
            before = self.log.committed
            learned = self.log.maybe_commit(m.commit, m.commit_term)
            if learned and self.role != Role.FOLLOWER and self._conf_change_between(before, self.log.committed):
                self.become_follower(self.term, 0)
        if m.term > self.term:
            if not self._accept_higher_term(m):
                return
        elif m.term < self.term:
            self._answer_stale(m)
            return
        if isinstance(m, RequestVote):
            self._handle_request_vote(m)
        elif self.role == Role.LEADER:
            _leader.step_leader(self, m)
        elif self.role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _accept_higher_term(self, m: Message) -> bool:
        """A message from a higher term; False if it is to be ignored."""
        if isinstance(m, RequestVote):
            in_lease = (
                self.config.check_quorum and self.leader_id != 0 and (self.election_elapsed < self.config.election_tick)
            )
            if in_lease and not m.leader_transfer:
                # Heard from a leader within the minimum election timeout: do not let a (possibly removed or
                # partitioned) replica disrupt it (thesis §4.2.3).
                return False
            if m.pre_vote:
                return True  # a pre-vote never changes our term
        if isinstance(m, RequestVoteReply) and m.pre_vote and m.granted:
            return True  # granted pre-votes carry the term we would campaign in
        if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            self.become_follower(m.term, m.from_id)
        else:
            self.become_follower(m.term, 0)
        return True

    def _answer_stale(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, Heartbeat)):
            # A leader of an older term: tell it our term so it steps down (§5.1). Without this, a leader
            # whose followers moved to a later term without it (their votes go elsewhere; with pre-vote or
            # check-quorum terms do not even spread through votes) would lead a cluster that ignores it.
            self.send(AppendEntriesReply(from_id=self.id, to_id=m.from_id, term=self.term))
        elif isinstance(m, RequestVote):
            # A candidate of an older term: refuse with our term so it catches up (Figure 2). Otherwise a
            # candidate racing a disruptive replica (one removed but unaware of it) whose campaigns keep the
            # voters' term ahead of it might never reach their term and win.
            self._refuse_vote(m)

    def _refuse_vote(self, m: RequestVote) -> None:
        self.send(
            RequestVoteReply(
                from_id=self.id,
                to_id=m.from_id,
                term=self.term,
                granted=False,
                pre_vote=m.pre_vote,
                commit=self.log.committed,
                commit_term=self.log.term(self.log.committed) or 0,
            )
        )

    def _handle_request_vote(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.from_id or (self.vote == 0 and self.leader_id == 0) or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term):
            self.send(
                RequestVoteReply(from_id=self.id, to_id=m.from_id, term=m.term, granted=True, pre_vote=m.pre_vote)
            )
            if not m.pre_vote:
                self.election_elapsed = 0
                self.vote = m.from_id
        else:
            self._refuse_vote(m)

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            self.election_elapsed = 0
            self.leader_id = m.from_id
            self._handle_from_leader(m)
        elif isinstance(m, TimeoutNow):
            self.hup(transfer=True)
        elif isinstance(m, ReadIndexReply):
            self.read_states.append(ReadState(index=m.index, context=m.context))
        # Anything else (stale replies, a ReadIndex sent to an ex-leader) is dropped: senders retry.

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            self.become_follower(m.term, m.from_id)  # a leader of our term exists
            self._handle_from_leader(m)
        elif isinstance(m, RequestVoteReply):
            if m.pre_vote != (self.role == Role.PRE_CANDIDATE):
                return
            if m.pre_vote and m.granted and m.term != self.term + 1:
                return  # a grant from an earlier pre-vote round
            result = self._poll(m.from_id, m.granted)
            if result == VoteResult.WON:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(_Campaign.ELECTION)
                else:
                    self.become_leader()
                    _leader.bcast_append(self)
            elif result == VoteResult.LOST:
                self.become_follower(self.term, 0)
        elif isinstance(m, ReadIndexReply):
            self.read_states.append(ReadState(index=m.index, context=m.context))

    # -- follower side of replication (§5.3, §7) ------------------------------------------------------------

    def _handle_from_leader(self, m: AppendEntries | Heartbeat | InstallSnapshot) -> None:
        if isinstance(m, AppendEntries):
            self._handle_append_entries(m)
        elif isinstance(m, Heartbeat):
            self.log.commit_to(m.commit)
            self.send(HeartbeatReply(from_id=self.id, to_id=m.from_id, term=self.term, context=m.context))
        else:
            index = self.log.last_index() if self.restore(m.snapshot) else self.log.committed
            self.send(AppendEntriesReply(from_id=self.id, to_id=m.from_id, term=self.term, index=index))

    def _handle_append_entries(self, m: AppendEntries) -> None:
        if m.prev_log_index < self.log.committed:
            self.send(AppendEntriesReply(from_id=self.id, to_id=m.from_id, term=self.term, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.prev_log_index, m.prev_log_term, m.commit, m.entries)
        if last_new is not None:
            if not (m.quiet and not m.entries):
                self.send(AppendEntriesReply(from_id=self.id, to_id=m.from_id, term=self.term, index=last_new))
            return
        # Our log does not match at prev_log_index. Hint the largest (index, term) that might match: the last
        # entry at or below it with a term no larger than prev_log_term. This skips our divergent tail.
        hint_index, hint_term = self.log.find_conflict_by_term(
            min(m.prev_log_index, self.log.last_index()), m.prev_log_term
        )
        self.send(
            AppendEntriesReply(
                from_id=self.id,
                to_id=m.from_id,
                term=self.term,
                index=m.prev_log_index,
                reject=True,
                hint_index=hint_index,
                hint_term=hint_term,
            )
        )

    def restore(self, snapshot: Snapshot) -> bool:
        """Install a leader's snapshot (§7); False if it brings nothing new."""
        meta = snapshot.meta
        if meta.index <= self.log.committed:
            return False
        if self.role != Role.FOLLOWER:
            raise InternalError(f"replica {self.id}: restoring a snapshot as {self.role.value}")
        if self.log.match_term(meta.index, meta.term):
            # We already have the entry: the snapshot only tells us it is committed.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snapshot)
        tracker_config, progress = confchange.restore(
            meta.conf, last_index=self.log.last_index(), max_inflight_msgs=self.config.max_inflight_msgs
        )
        self.switch_to_config(tracker_config, progress)
        return True

    # -- membership (thesis §4) -----------------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> bool:
        """Apply a committed conf change; an invalid one is ignored (identically on every replica)."""
        changer = confchange.Changer(
            self.tracker.config,
            self.tracker.progress,
            last_index=self.log.last_index(),
            max_inflight_msgs=self.config.max_inflight_msgs,
        )
        try:
            tracker_config, progress = changer.apply(cc)
        except InvalidArgumentError:
            return False
        self.switch_to_config(tracker_config, progress)
        return True

    def switch_to_config(self, tracker_config: TrackerConfig, progress: dict[int, Progress]) -> None:
        self.tracker.config = tracker_config
        self.tracker.progress = progress
        pr = progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.role == Role.LEADER:
            # Removed or demoted: stop leading; the remaining voters elect a leader among themselves.
            _leader.hand_off(self)
            self.become_follower(self.term, 0)
            return
        if self.role != Role.LEADER or not tracker_config.voters:
            return
        _leader.on_config_switched(self)

    # -- Ready support --------------------------------------------------------------------------------------

    def advance(self, entries: tuple[Entry, ...], snapshot: Snapshot | None, committed: tuple[Entry, ...]) -> None:
        """The driver persisted ``entries``/``snapshot`` and applied ``committed`` (see RawNode.advance)."""
        for entry in committed:
            if entry.kind == EntryKind.CONF_CHANGE:
                self.apply_conf_change(ConfChange.decode(entry.data))
        new_applied = committed[-1].index if committed else (snapshot.meta.index if snapshot else 0)
        if new_applied:
            if new_applied > self.log.applied:  # entries taken ahead (RawNode.take_committed) are already applied
                self.log.applied_to(new_applied)
            size = sum(len(entry.data) for entry in committed)
            self.uncommitted_size = max(0, self.uncommitted_size - size)
            _leader.maybe_auto_leave(self)
        if entries:
            self.log.unstable.stable_to(entries[-1].index, entries[-1].term)
            if self.role == Role.LEADER:
                _leader.persisted_own_entries(self, entries[-1].index, entries[-1].term)
        if snapshot is not None:
            self.log.unstable.stable_snapshot_to(snapshot.meta.index)
