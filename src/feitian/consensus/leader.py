"""The leader side of Raft: proposals, replication flow control, commitment, ReadIndex and leader transfer.

Functions over a :class:`~feitian.consensus.raft.Raft` whose role is LEADER (paper §5.3, §5.4; thesis §3.10,
§4, §6.4). Kept apart from the follower/candidate logic in :mod:`feitian.consensus.raft`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from feitian.consensus import confchange
from feitian.consensus.messages import (
    AppendEntries,
    AppendEntriesReply,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    Message,
    ReadIndex,
    ReadIndexReply,
    TimeoutNow,
)
from feitian.consensus.progress import Progress, ProgressState
from feitian.consensus.read_only import MAX_PENDING_READS, ReadState
from feitian.consensus.role import Role
from feitian.consensus.types import ConfChange, Entry, EntryKind
from feitian.errors import InternalError, InvalidArgumentError, NotLeaderError, OverloadedError, UnavailableError

if TYPE_CHECKING:
    from feitian.consensus.raft import Raft


class Proposal(msgspec.Struct, frozen=True):
    """Where a proposal landed. It succeeded iff the entry applied at ``index`` has this ``term``; an entry of
    another term at ``index`` means it was lost (a new leader overwrote it) and may be retried."""

    index: int
    term: int


# -- proposals --------------------------------------------------------------------------------------------------


def _check_leader(r: Raft, operation: str, *, allow_leaving: bool = False) -> None:
    if r.role != Role.LEADER:
        hint = r.leader_id or None
        raise NotLeaderError(f"{operation}: replica {r.id} is not the leader (leader {hint})", leader_hint=hint)
    if r.lead_transferee:
        raise NotLeaderError(
            f"{operation}: leadership is being transferred from {r.id} to {r.lead_transferee}",
            leader_hint=r.lead_transferee,
        )
    if not allow_leaving and is_leaving(r):
        raise NotLeaderError(f"{operation}: leader {r.id} is leaving the voters", leader_hint=None)


def is_leaving(r: Raft) -> bool:
    """Whether this leader is not a voter of the configuration its log is heading to.

    Such a leader appends nothing but conf changes: an entry after its own removal could end up only on
    replicas that can no longer campaign (itself, learners) while the remaining voters still need their votes
    under the configuration they have applied — a cluster that can never elect a leader again.
    """
    return r.leaving or r.id not in r.tracker.config.voters


def append_entries(r: Raft, payloads: list[tuple[EntryKind, bytes]], *, force: bool = False) -> Proposal:
    """Append entries of the leader's term; refuses with OverloadedError past max_uncommitted_size_bytes.

    ``force`` skips the bound (the no-op a new leader appends, automatic conf changes).
    """
    last = r.log.last_index()
    entries = [Entry(term=r.term, index=last + 1 + i, kind=kind, data=data) for i, (kind, data) in enumerate(payloads)]
    size = sum(len(e.data) for e in entries)
    limit = r.config.max_uncommitted_size_bytes
    # An empty uncommitted tail accepts a proposal of any size, so a single large proposal cannot wedge.
    if not force and r.uncommitted_size > 0 and size > 0 and r.uncommitted_size + size > limit:
        raise OverloadedError(
            f"propose on replica {r.id}: {r.uncommitted_size} uncommitted bytes + {size} would exceed "
            f"max_uncommitted_size_bytes={limit}",
            limit=limit,
        )
    r.uncommitted_size += size
    last = r.log.append(entries)
    # The leader's own entries count toward commitment only once the driver reports them persisted
    # (Raft.advance -> persisted_own_entries), so the driver may send AppendEntries while it writes them
    # (thesis §10.2.1): the leader's disk write and the followers' run in parallel.
    return Proposal(index=last, term=r.term)


def persisted_own_entries(r: Raft, last_index: int, last_term: int) -> None:
    """The leader's entries up to ``last_index`` are durable: count its own copy, and commit if that makes a
    majority."""
    if last_term != r.term:
        return
    own = r.tracker.progress.get(r.id)
    if own is not None and own.maybe_update(last_index) and maybe_commit(r):
        release_pending_reads(r)
        bcast_commit(r)


def propose(r: Raft, data: bytes) -> Proposal:
    _check_leader(r, "propose")
    proposal = append_entries(r, [(EntryKind.NORMAL, data)])
    bcast_append(r)
    return proposal


def propose_batch(r: Raft, datas: list[bytes]) -> list[Proposal]:
    """Append several proposals at once: one broadcast to the followers for all of them."""
    _check_leader(r, "propose")
    last = append_entries(r, [(EntryKind.NORMAL, data) for data in datas]).index
    bcast_append(r)
    first = last - len(datas) + 1
    return [Proposal(index=first + i, term=r.term) for i in range(len(datas))]


def propose_conf_change(r: Raft, cc: ConfChange) -> Proposal:
    """Membership changes: one at a time, only after the leader committed an entry of its term (thesis §4.1
    and the single-server-change fix), and only if valid against the current configuration."""
    _check_leader(r, "propose conf change", allow_leaving=True)
    if r.pending_conf_index > r.log.applied:
        raise UnavailableError(
            f"propose conf change: change at index {r.pending_conf_index} not applied yet (applied {r.log.applied})"
        )
    if not r.committed_entry_in_current_term():
        raise UnavailableError(f"propose conf change: leader {r.id} has not committed an entry of term {r.term} yet")
    # Dry run: raises InvalidArgumentError if the change is not allowed from the current configuration.
    next_config, _ = confchange.Changer(
        r.tracker.config,
        r.tracker.progress,
        last_index=r.log.last_index(),
        max_inflight_msgs=r.config.max_inflight_msgs,
    ).apply(cc)
    proposal = append_entries(r, [(EntryKind.CONF_CHANGE, cc.encode())])
    r.pending_conf_index = proposal.index
    if r.id not in next_config.voters:
        r.leaving = True
    bcast_append(r)
    return proposal


def leaves_after_log(r: Raft) -> bool:
    """Whether the conf changes in the unapplied part of the log take this replica out of the voters."""
    lo = max(r.log.applied + 1, r.log.first_index())
    entries = r.log.slice(lo, r.log.last_index() + 1, 2**63 - 1) or []
    config, progress = r.tracker.config, r.tracker.progress
    for entry in entries:
        if entry.kind != EntryKind.CONF_CHANGE:
            continue
        changer = confchange.Changer(
            config, progress, last_index=r.log.last_index(), max_inflight_msgs=r.config.max_inflight_msgs
        )
        try:
            config, progress = changer.apply(ConfChange.decode(entry.data))
        except InvalidArgumentError:
            continue  # ignored when applied, too
    return r.id not in config.voters


def hand_off(r: Raft) -> None:
    """A leader removed or demoted by an applied conf change: tell the most caught-up voter to campaign now
    (if one has the whole log), so the cluster does not wait out an election timeout."""
    last = r.log.last_index()
    caught_up = [
        node_id
        for node_id in sorted(r.tracker.config.all_voters())
        if node_id != r.id and r.tracker.progress[node_id].match == last
    ]
    if caught_up:
        _send_timeout_now(r, caught_up[0])


def maybe_auto_leave(r: Raft) -> None:
    """Leave an auto-leave joint configuration once it is applied (thesis §4.3)."""
    if not (r.role == Role.LEADER and r.tracker.config.auto_leave and r.log.applied >= r.pending_conf_index):
        return
    if r.lead_transferee or r.id not in r.tracker.progress:
        return  # retried on a later advance or tick
    proposal = append_entries(r, [(EntryKind.CONF_CHANGE, ConfChange().encode())], force=True)
    r.pending_conf_index = proposal.index
    bcast_append(r)


# -- time -------------------------------------------------------------------------------------------------------


def tick_leader(r: Raft) -> None:
    r.heartbeat_elapsed += 1
    r.election_elapsed += 1
    if r.election_elapsed >= r.config.election_tick:
        r.election_elapsed = 0
        if r.config.check_quorum:
            _check_quorum(r)
        if r.role == Role.LEADER and r.lead_transferee:
            r.lead_transferee = 0  # the transfer did not finish within an election timeout
    if r.role != Role.LEADER:
        return
    for node_id, pr in r.tracker.visit():
        if pr.state == ProgressState.SNAPSHOT and node_id != r.id:
            pr.snapshot_ticks += 1
            if pr.snapshot_ticks >= r.config.snapshot_timeout_tick:
                report_snapshot(r, node_id, failed=True)
    maybe_auto_leave(r)
    if r.heartbeat_elapsed >= r.config.heartbeat_tick:
        r.heartbeat_elapsed = 0
        bcast_heartbeat(r)


def _check_quorum(r: Raft) -> None:
    """Step down if a quorum was not heard from during the last election timeout (thesis §6.2)."""
    own = r.tracker.progress.get(r.id)
    if own is not None:
        own.recent_active = True
    if not r.tracker.quorum_active():
        r.become_follower(r.term, 0)
    for node_id, pr in r.tracker.visit():
        if node_id != r.id:
            pr.recent_active = False


# -- replication ------------------------------------------------------------------------------------------------


def maybe_commit(r: Raft) -> bool:
    return r.log.maybe_commit(r.tracker.committed(), r.term)


def maybe_send_append(r: Raft, to: int, *, send_if_empty: bool, quiet: bool = False) -> bool:
    """Send the follower its next entries (or a snapshot if they are compacted); False if nothing was sent.
    ``quiet``: an empty AppendEntries is marked quiet (see :class:`AppendEntries`)."""
    pr = r.tracker.progress[to]
    if pr.is_paused():
        return False
    prev_index = pr.next - 1
    prev_term = r.log.term(prev_index)
    entries = r.log.entries_from(pr.next, r.config.max_size_per_msg_bytes)
    if prev_term is None or entries is None:
        return _maybe_send_snapshot(r, to, pr)
    if not entries and not send_if_empty:
        return False
    r.send(
        AppendEntries(
            from_id=r.id,
            to_id=to,
            term=r.term,
            prev_log_index=prev_index,
            prev_log_term=prev_term,
            entries=tuple(entries),
            commit=r.log.committed,
            quiet=quiet and not entries,
        )
    )
    pr.on_entries_sent(len(entries), entries[-1].index if entries else prev_index)
    return True


def _maybe_send_snapshot(r: Raft, to: int, pr: Progress) -> bool:
    if not pr.recent_active:
        return False  # do not ship a snapshot to a replica that may be down
    snapshot = r.log.snapshot()
    if snapshot.meta.index == 0:
        raise InternalError(f"leader {r.id}: entries for {to} are compacted but storage has no snapshot")
    pr.become_snapshot(snapshot.meta.index)
    r.send(InstallSnapshot(from_id=r.id, to_id=to, term=r.term, snapshot=snapshot))
    return True


def send_append(r: Raft, to: int) -> None:
    maybe_send_append(r, to, send_if_empty=True)


def bcast_append(r: Raft) -> None:
    for node_id in r.tracker.ids():
        if node_id != r.id:
            send_append(r, node_id)


def bcast_commit(r: Raft) -> None:
    """The commit index moved: tell every follower. One with entries still to send gets them (they carry the
    commit index); one that has been sent everything gets a quiet AppendEntries (no entries, answered only if
    its log does not match) instead of an empty one it would answer to no purpose — half the messages of a
    write when writes come one at a time."""
    last = r.log.last_index()
    for node_id, pr in r.tracker.visit():
        if node_id != r.id:
            maybe_send_append(
                r, node_id, send_if_empty=True, quiet=pr.state == ProgressState.REPLICATE and pr.next > last
            )


def bcast_heartbeat(r: Raft, context: bytes | None = None) -> None:
    if context is None:
        context = r.read_only.heartbeat_context()
    for node_id, pr in r.tracker.visit():
        if node_id == r.id:
            continue
        # Never tell a follower to commit past what it is known to hold.
        commit = min(pr.match, r.log.committed)
        r.send(Heartbeat(from_id=r.id, to_id=node_id, term=r.term, commit=commit, context=context))


def on_config_switched(r: Raft) -> None:
    """After a membership change on the leader: commit what the new quorum allows, probe new replicas."""
    if maybe_commit(r):
        release_pending_reads(r)
        bcast_commit(r)
    else:
        for node_id in r.tracker.ids():
            if node_id != r.id:
                maybe_send_append(r, node_id, send_if_empty=False)
    if r.lead_transferee and r.lead_transferee not in r.tracker.config.all_voters():
        r.lead_transferee = 0


def step_leader(r: Raft, m: Message) -> None:
    if isinstance(m, ReadIndex):
        handle_read_request(r, m.context, m.from_id)
        return
    pr = r.tracker.progress.get(m.from_id)
    if pr is None:
        return
    if isinstance(m, AppendEntriesReply):
        _handle_append_reply(r, pr, m)
    elif isinstance(m, HeartbeatReply):
        _handle_heartbeat_reply(r, pr, m)
    # Other messages at the leader's term are stale (vote replies, ...) and dropped.


def _handle_append_reply(r: Raft, pr: Progress, m: AppendEntriesReply) -> None:
    pr.recent_active = True
    if m.reject:
        next_probe = m.hint_index
        if m.hint_term > 0:
            # The follower's entry at hint_index has term hint_term: skip our entries of later terms too.
            next_probe, _ = r.log.find_conflict_by_term(m.hint_index, m.hint_term)
        if pr.maybe_decrease_to(m.index, next_probe):
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            send_append(r, m.from_id)
        return
    was_paused = pr.is_paused()
    if not (pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE)):
        return
    if pr.state == ProgressState.PROBE:
        pr.become_replicate()
    elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= r.log.first_index():
        # The follower can continue from the log (whatever snapshot it actually installed).
        pr.become_probe()
        pr.become_replicate()
    elif pr.state == ProgressState.REPLICATE:
        pr.inflights.free_le(m.index)
    if maybe_commit(r):
        release_pending_reads(r)
        bcast_commit(r)
    elif was_paused:
        send_append(r, m.from_id)
    while maybe_send_append(r, m.from_id, send_if_empty=False):
        pass
    if m.from_id == r.lead_transferee and pr.match == r.log.last_index():
        _send_timeout_now(r, m.from_id)


def _handle_heartbeat_reply(r: Raft, pr: Progress, m: HeartbeatReply) -> None:
    pr.recent_active = True
    pr.msg_app_flow_paused = False
    if pr.state == ProgressState.REPLICATE and pr.inflights.full():
        # A whole heartbeat interval without acknowledgement: some AppendEntries were probably lost. Free one
        # slot so a new one can go out; the follower's rejection of it resets the stream (bounded window).
        pr.inflights.free_first_one()
    if pr.match < r.log.last_index() or pr.state == ProgressState.PROBE:
        send_append(r, m.from_id)
    if m.context:
        _confirm_reads(r, m.from_id, m.context)


# -- flow-control reports from the driver ------------------------------------------------------------------------


def report_unreachable(r: Raft, node_id: int) -> None:
    pr = r.tracker.progress.get(node_id)
    if pr is not None and pr.state == ProgressState.REPLICATE:
        pr.become_probe()  # messages in flight were probably lost


def report_snapshot(r: Raft, node_id: int, *, failed: bool) -> None:
    pr = r.tracker.progress.get(node_id)
    if pr is None or pr.state != ProgressState.SNAPSHOT:
        return
    if failed:
        pr.pending_snapshot = 0  # probe from match, not from the snapshot that never arrived
    pr.become_probe()
    # Wait for the follower's reply (or the next heartbeat) before sending again.
    pr.msg_app_flow_paused = True


# -- ReadIndex (thesis §6.4) -------------------------------------------------------------------------------------


def handle_read_request(r: Raft, context: bytes, from_id: int) -> None:
    if r.tracker.config.voters == {r.id} and not r.tracker.config.voters_outgoing:
        _respond_read(r, from_id, r.log.committed, context)
        return
    if not r.committed_entry_in_current_term():
        # A new leader's commit index may lag the true one until it commits an entry of its term. Bounded like
        # the confirmed rounds: beyond the bound a request is dropped and its requester retries.
        if len(r.pending_read_requests) < MAX_PENDING_READS:
            r.pending_read_requests.append((context, from_id))
        return
    round_context = r.read_only.add_request(r.log.committed, context, from_id)
    if round_context is None:
        return  # too many reads pending: dropped, the requester retries
    _confirm_reads(r, r.id, round_context)  # the leader's own acknowledgement
    bcast_heartbeat(r, round_context)


def _confirm_reads(r: Raft, node_id: int, round_context: bytes) -> None:
    for status in r.read_only.recv_ack(node_id, round_context, r.tracker.vote_result):
        _respond_read(r, status.from_id, status.index, status.context)


def release_pending_reads(r: Raft) -> None:
    if not r.pending_read_requests or not r.committed_entry_in_current_term():
        return
    pending, r.pending_read_requests = r.pending_read_requests, []
    for context, from_id in pending:
        handle_read_request(r, context, from_id)


def _respond_read(r: Raft, to: int, index: int, context: bytes) -> None:
    if to == r.id:
        r.read_states.append(ReadState(index=index, context=context))
    else:
        r.send(ReadIndexReply(from_id=r.id, to_id=to, term=r.term, index=index, context=context))


# -- leader transfer (thesis §3.10) ------------------------------------------------------------------------------


def transfer_leader(r: Raft, target: int) -> None:
    if r.role != Role.LEADER:
        hint = r.leader_id or None
        raise NotLeaderError(f"transfer leader: replica {r.id} is not the leader (leader {hint})", leader_hint=hint)
    pr = r.tracker.progress.get(target)
    if pr is None or pr.is_learner:
        raise InvalidArgumentError(f"transfer leader to {target}: not a voter")
    if r.lead_transferee:
        if r.lead_transferee == target:
            return
        r.lead_transferee = 0
    if target == r.id:
        return
    # The transfer must finish within an election timeout (tick_leader aborts it otherwise).
    r.election_elapsed = 0
    r.lead_transferee = target
    if pr.match == r.log.last_index():
        _send_timeout_now(r, target)
    else:
        send_append(r, target)


def _send_timeout_now(r: Raft, to: int) -> None:
    r.send(TimeoutNow(from_id=r.id, to_id=to, term=r.term))
