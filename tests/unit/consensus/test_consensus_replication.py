"""Log replication, commitment and flow control (Raft paper §5.3, §5.4.2, Figure 7/8; etcd's progress
states for pipelining and the in-flight window)."""

from __future__ import annotations

import pytest
from consensus_harness import Cluster, handle, make_node, of_type

from feitian.consensus import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatReply,
    ProgressState,
    RequestVoteReply,
    Role,
    entry_size_bytes,
)
from feitian.consensus.types import ConfChange, ConfChangeSingle, ConfChangeType
from feitian.errors import NotLeaderError, OverloadedError


def _leader(**config: object):  # type: ignore[no-untyped-def]
    node, storage = make_node(1, pre_vote=False, **config)
    node.campaign()
    node.step(RequestVoteReply(from_id=2, to_id=1, term=2, granted=True))
    assert node.role == Role.LEADER
    handle(node, storage)
    return node, storage


def test_leader_appends_proposal_and_replicates_it() -> None:
    """§5.3: the leader appends the command to its log as a new entry, then issues AppendEntries to each
    follower; the entry is committed once a majority stores it, and applied."""
    c = Cluster()
    leader = c.elect(1)
    proposal = leader.propose(b"x")
    out = c.handle(1)
    assert [e.data for e in out.entries] == [b"x"]
    assert sorted(m.to_id for m in of_type(out.messages, AppendEntries)) == [2, 3]
    c.settle()
    for node_id in (1, 2, 3):
        assert c.data_applied(node_id) == [b"x"]
        assert c.applied[node_id][-1].index == proposal.index
        assert c.applied[node_id][-1].term == proposal.term


def test_commit_needs_a_majority() -> None:
    """§5.3: an entry is committed once the leader has replicated it on a majority — not before."""
    node, storage = _leader()
    proposal = node.propose(b"x")
    handle(node, storage)
    assert node.commit_index < proposal.index
    node.step(AppendEntriesReply(from_id=2, to_id=1, term=2, index=proposal.index))
    out = handle(node, storage)
    assert node.commit_index == proposal.index
    assert [e.data for e in out.committed] == [b"", b"x"]  # the leader's no-op, then the proposal


def test_leader_commits_only_entries_of_its_term_by_counting() -> None:
    """§5.4.2 (Figure 8): a leader never commits an entry of an earlier term by counting replicas; it
    commits it indirectly when an entry of its own term is committed."""
    storage_node, storage = make_node(1, pre_vote=False)
    # Replica 1 has an entry of term 2 (from an old leader), then wins term 3.
    storage_node.step(
        AppendEntries(from_id=2, to_id=1, term=2, prev_log_index=1, prev_log_term=1, entries=(Entry(term=2, index=2),))
    )
    handle(storage_node, storage)
    node = storage_node
    node.campaign()  # term 3
    node.step(RequestVoteReply(from_id=3, to_id=1, term=3, granted=True))
    assert node.role == Role.LEADER
    handle(node, storage)  # no-op at index 3, term 3
    # A majority now stores index 2 (term 2), but not index 3.
    node.step(AppendEntriesReply(from_id=3, to_id=1, term=3, index=2))
    handle(node, storage)
    assert node.commit_index == 1
    node.step(AppendEntriesReply(from_id=3, to_id=1, term=3, index=3))
    handle(node, storage)
    assert node.commit_index == 3


def test_follower_rejects_on_log_mismatch_with_conflict_hint() -> None:
    """§5.3: the consistency check — a follower refuses entries whose predecessor it does not hold, and
    (fast backtracking) hints the last index at or below it whose term is at most prev_log_term."""
    node, storage = make_node(2, pre_vote=False)
    node.step(
        AppendEntries(
            from_id=1,
            to_id=2,
            term=3,
            prev_log_index=1,
            prev_log_term=1,
            entries=(Entry(term=2, index=2), Entry(term=3, index=3), Entry(term=3, index=4)),
        )
    )
    handle(node, storage)
    node.step(AppendEntries(from_id=5, to_id=2, term=4, prev_log_index=6, prev_log_term=4))
    reply = of_type(handle(node, storage).messages, AppendEntriesReply)[0]
    assert reply.reject  # type: ignore[attr-defined]
    assert (reply.index, reply.hint_index, reply.hint_term) == (6, 4, 3)  # type: ignore[attr-defined]
    # prev_log_term 2 at index 4: our terms 3 at 3..4 are skipped in one go.
    node.step(AppendEntries(from_id=5, to_id=2, term=4, prev_log_index=4, prev_log_term=2))
    reply = of_type(handle(node, storage).messages, AppendEntriesReply)[0]
    assert (reply.hint_index, reply.hint_term) == (2, 2)  # type: ignore[attr-defined]


def test_follower_deletes_conflicting_suffix() -> None:
    """§5.3: if an existing entry conflicts with a new one (same index, different terms), the follower
    deletes it and all that follow, then appends the leader's entries."""
    node, storage = make_node(2, pre_vote=False)
    node.step(
        AppendEntries(
            from_id=1,
            to_id=2,
            term=2,
            prev_log_index=1,
            prev_log_term=1,
            entries=(Entry(term=2, index=2, data=b"a"), Entry(term=2, index=3, data=b"b")),
        )
    )
    handle(node, storage)
    node.step(
        AppendEntries(
            from_id=3,
            to_id=2,
            term=3,
            prev_log_index=2,
            prev_log_term=2,
            entries=(Entry(term=3, index=3, data=b"c"),),
        )
    )
    out = handle(node, storage)
    assert out.entries == [Entry(term=3, index=3, data=b"c")]
    assert storage.last_index() == 3 and storage.term(3) == 3
    reply = of_type(out.messages, AppendEntriesReply)[0]
    assert not reply.reject and reply.index == 3  # type: ignore[attr-defined]


def test_leader_backs_up_to_divergence_and_repairs_follower() -> None:
    """§5.3 (Figure 7): a follower with a divergent uncommitted tail is repaired: the leader walks back
    with the hints and overwrites the tail."""
    c = Cluster(pre_vote=False, check_quorum=False)
    c.elect(1)
    c.isolate(3)
    for i in range(3):
        c.nodes[1].propose(f"old{i}".encode())
    c.settle()
    # Replica 1 is cut off with uncommitted entries; 2 and 3 elect 2 and commit new ones.
    c.isolate(1)
    c.nodes[1].propose(b"doomed")
    c.settle()
    c.elect(2)
    c.nodes[2].propose(b"new")
    c.settle()
    c.heal()
    c.tick(times=3)
    assert c.data_applied(1) == c.data_applied(2) == c.data_applied(3)
    assert b"doomed" not in c.data_applied(1)
    assert c.data_applied(2)[-1] == b"new"


def test_append_entries_respect_max_size_per_msg() -> None:
    """Batching: one AppendEntries carries entries up to max_size_per_msg_bytes (at least one)."""
    node, storage = _leader(max_size_per_msg_bytes=3 * (entry_size_bytes(Entry(0, 0, data=b"x" * 10))))
    node.step(AppendEntriesReply(from_id=2, to_id=1, term=2, index=2))  # replica 2 -> REPLICATE
    handle(node, storage)
    for i in range(7):
        node.propose(bytes([i]) * 10)
    out = handle(node, storage)
    to2 = [m for m in of_type(out.messages, AppendEntries) if m.to_id == 2]
    sizes = [len(m.entries) for m in to2]  # type: ignore[attr-defined]
    assert sum(sizes) == 7 and max(sizes) <= 3
    assert all(len(m.entries) > 0 for m in to2)  # type: ignore[attr-defined]


def test_inflight_window_bounds_pipelined_appends() -> None:
    """Pipelining with a bounded window: in REPLICATE state the leader streams AppendEntries without
    waiting, up to max_inflight_msgs unacknowledged ones, and resumes as acknowledgements arrive."""
    node, storage = _leader(max_inflight_msgs=2, max_size_per_msg_bytes=1)
    node.step(AppendEntriesReply(from_id=2, to_id=1, term=2, index=2))
    handle(node, storage)
    assert node.status().progress[2].state == ProgressState.REPLICATE
    for i in range(5):
        node.propose(bytes([i]))
    sent = [m for m in of_type(handle(node, storage).messages, AppendEntries) if m.to_id == 2]
    assert [m.entries[0].index for m in sent] == [3, 4]  # type: ignore[attr-defined]
    assert node.status().progress[2].inflight_msgs == 2
    node.step(AppendEntriesReply(from_id=2, to_id=1, term=2, index=3))
    sent = [m for m in of_type(handle(node, storage).messages, AppendEntries) if m.to_id == 2]
    assert [m.entries[0].index for m in sent] == [5]  # type: ignore[attr-defined]


def test_probe_state_sends_one_message_at_a_time() -> None:
    """A follower in PROBE state gets one AppendEntries per round trip (or heartbeat reply)."""
    node, storage = _leader()
    assert node.status().progress[3].state == ProgressState.PROBE
    node.propose(b"a")
    node.propose(b"b")
    sent = [m for m in of_type(handle(node, storage).messages, AppendEntries) if m.to_id == 3]
    assert sent == []  # the no-op probe is still unanswered
    node.step(HeartbeatReply(from_id=3, to_id=1, term=2))
    sent = [m for m in of_type(handle(node, storage).messages, AppendEntries) if m.to_id == 3]
    assert len(sent) == 1


def test_heartbeat_reply_recovers_lost_appends_in_full_window() -> None:
    """A full window whose AppendEntries were all lost recovers: a heartbeat reply frees a slot, the next
    append is rejected by the follower and the leader re-probes from the follower's log end."""
    c = Cluster(max_inflight_msgs=2, max_size_per_msg_bytes=1)
    leader = c.elect(1)
    c.drop = lambda m: isinstance(m, AppendEntries) and m.to_id == 3
    for i in range(6):
        leader.propose(bytes([i]))
    c.settle()
    c.heal()
    c.tick([1], times=3)
    assert c.data_applied(3) == c.data_applied(1) == [bytes([i]) for i in range(6)]


def test_heartbeat_commit_is_capped_at_follower_match() -> None:
    """§5.3: followers learn the commit index from the leader, but never beyond what they hold."""
    c = Cluster()
    leader = c.elect(1)
    c.drop = lambda m: isinstance(m, AppendEntries) and m.to_id == 3
    leader.propose(b"x")
    c.settle()
    leader.tick()
    beats = [m for m in c.handle(1).messages if isinstance(m, Heartbeat)]
    by_id = {m.to_id: m.commit for m in beats}  # type: ignore[attr-defined]
    assert by_id[2] == leader.commit_index
    assert by_id[3] < leader.commit_index


def test_propose_on_follower_raises_not_leader_with_hint() -> None:
    """Proposals are not forwarded: a follower answers NotLeaderError naming the leader it knows."""
    c = Cluster()
    c.elect(2)
    with pytest.raises(NotLeaderError) as info:
        c.nodes[1].propose(b"x")
    assert info.value.leader_hint == 2


def test_uncommitted_bound_rejects_proposals_with_overloaded() -> None:
    """max_uncommitted_size_bytes: past the bound, proposals are refused, not queued."""
    node, storage = _leader(max_uncommitted_size_bytes=100)
    node.propose(b"x" * 60)
    with pytest.raises(OverloadedError):
        node.propose(b"y" * 60)
    node.propose(b"z" * 40)  # still fits
    # Once committed and applied, the budget is released.
    node.step(AppendEntriesReply(from_id=2, to_id=1, term=2, index=node.status().last_index))
    handle(node, storage)
    node.propose(b"y" * 60)


def test_noop_entry_of_new_leader() -> None:
    """§8: a new leader appends a no-op entry of its term to commit entries of earlier terms."""
    node, storage = make_node(1, voters=(1,))
    node.campaign()
    out = handle(node, storage)
    assert [(e.kind, e.term) for e in out.entries] == [(EntryKind.NOOP, 2)]


def test_entries_are_durable_before_acknowledgement() -> None:
    """§5.3 and the Ready contract: a follower's acknowledgement is in the same Ready as the entries it
    acknowledges, so the driver persists them before the reply leaves."""
    node, storage = make_node(2)
    node.step(
        AppendEntries(from_id=1, to_id=2, term=2, prev_log_index=1, prev_log_term=1, entries=(Entry(term=2, index=2),))
    )
    rd = node.ready()
    assert rd is not None
    assert rd.entries == (Entry(term=2, index=2),)
    assert any(isinstance(m, AppendEntriesReply) and m.index == 2 for m in rd.messages)
    assert storage.last_index() == 1  # nothing persisted by the core itself


def test_propose_batch_appends_consecutive_entries_with_one_broadcast() -> None:
    """§5.3 with batching: a batch of proposals becomes consecutive entries of the leader's term, sent to each
    follower in one AppendEntries, and all of them commit and apply in order everywhere."""
    cluster = Cluster()
    leader = cluster.elect(1)
    before = len(cluster.delivered)
    proposals = leader.propose_batch([b"a", b"b", b"c"])
    assert [p.index for p in proposals] == list(range(proposals[0].index, proposals[0].index + 3))
    assert {p.term for p in proposals} == {leader.term}
    cluster.settle()
    sent = [m for m in cluster.delivered[before:] if isinstance(m, AppendEntries) and m.entries]
    assert len(sent) == 2  # one per follower, carrying all three entries
    assert all([e.data for e in m.entries] == [b"a", b"b", b"c"] for m in sent)
    for node_id in cluster.ids:
        assert [e.data for e in cluster.applied[node_id] if e.data][-3:] == [b"a", b"b", b"c"]
    assert leader.propose_batch([]) == []
    with pytest.raises(NotLeaderError):
        cluster.nodes[2].propose_batch([b"x"])


def test_a_leader_may_apply_entries_its_followers_committed_while_its_own_write_is_outstanding() -> None:
    """take_committed: the leader holds a Ready (its own fsync in progress); the followers' acknowledgements
    commit the entries, which are handed out at once and never again."""
    c = Cluster()
    leader = c.elect(1)
    leader.propose(b"a")
    leader.propose(b"b")
    rd = leader.ready()
    assert rd is not None and [e.data for e in rd.entries] == [b"a", b"b"]
    assert leader.take_committed() == ()  # nothing committed yet
    for message in rd.messages:  # replicate while the leader "writes"
        c.nodes[message.to_id].step(message)
        c.handle(message.to_id)
    replies, c.queue = c.queue, []
    for reply in replies:
        leader.step(reply)
    first = leader.take_committed(limit=1)  # bounded: the rest come next (or in a later Ready)
    assert [e.data for e in first] == [b"a"]
    rest = leader.take_committed()
    assert [e.data for e in rest] == [b"b"]  # both followers have them on disk: committed
    taken = first + rest
    assert leader.take_committed() == ()
    c.storages[1].append(rd.entries)  # the leader's own write completes
    leader.advance(rd)
    later = handle(leader, c.storages[1])
    assert all(e.data not in (b"a", b"b") for e in later.committed)  # not handed out twice
    assert leader.applied_index == taken[-1].index


def test_take_committed_needs_an_outstanding_ready_and_stops_at_a_configuration_change() -> None:
    c = Cluster()
    leader = c.elect(1)
    assert leader.take_committed() == ()  # no Ready outstanding
    leader.propose(b"x")
    leader.propose_conf_change(ConfChange(changes=(ConfChangeSingle(ConfChangeType.ADD_LEARNER, 4),)))
    leader.propose(b"y")
    rd = leader.ready()
    assert rd is not None and [e.kind for e in rd.entries] == [
        EntryKind.NORMAL,
        EntryKind.CONF_CHANGE,
        EntryKind.NORMAL,
    ]
    for message in rd.messages:
        c.nodes[message.to_id].step(message)
        c.handle(message.to_id)
    replies, c.queue = c.queue, []
    for reply in replies:
        leader.step(reply)
    assert [e.data for e in leader.take_committed()] == [b"x"]  # the change and what follows wait for advance
    assert leader.take_committed() == ()
    c.storages[1].append(rd.entries)
    leader.advance(rd)
    later = handle(leader, c.storages[1])
    assert [e.kind for e in later.committed] == [EntryKind.CONF_CHANGE, EntryKind.NORMAL]


def test_commit_notices_to_followers_holding_everything_are_quiet_and_not_answered() -> None:
    """When the commit index moves, a follower that has been sent every entry learns it from a quiet
    AppendEntries (no entries), which it does not answer; followers still commit exactly what the leader did."""
    c = Cluster()
    leader = c.elect(1)
    proposal = leader.propose(b"x")
    c.settle()
    acks_before = len(of_type(c.delivered, AppendEntriesReply))
    notices = [m for m in of_type(c.delivered, AppendEntries) if m.quiet]  # type: ignore[attr-defined]
    assert sorted(m.to_id for m in notices if m.commit == proposal.index) == [2, 3]
    assert all(not m.entries for m in notices)  # type: ignore[attr-defined]
    for node_id in (2, 3):
        assert c.nodes[node_id].commit_index == proposal.index
        assert c.data_applied(node_id) == [b"x"]
    # The notices were delivered and nobody answered them: one acknowledgement per follower for the entry.
    leader.propose(b"y")
    c.settle()
    new_acks = of_type(c.delivered, AppendEntriesReply)[acks_before:]
    assert sorted(m.from_id for m in new_acks) == [2, 3]


def test_a_quiet_append_entries_that_does_not_match_is_rejected() -> None:
    """A lost message shows: a follower whose log does not match a commit notice rejects it (so the leader
    probes), and commits nothing it cannot vouch for."""
    node, storage = make_node(2, pre_vote=False)
    committed = node.commit_index
    node.step(AppendEntries(from_id=1, to_id=2, term=2, prev_log_index=4, prev_log_term=2, commit=4, quiet=True))
    replies = of_type(handle(node, storage).messages, AppendEntriesReply)
    assert len(replies) == 1 and replies[0].reject  # type: ignore[attr-defined]
    assert node.commit_index == committed


def test_a_commit_notice_never_commits_past_what_the_follower_acknowledged() -> None:
    """The follower that has not acknowledged the newest entry is sent a notice naming it as previous
    entry; it commits only up to an entry both logs hold."""
    c = Cluster()
    leader = c.elect(1)
    c.drop = lambda m: isinstance(m, AppendEntries) and m.to_id == 3 and bool(m.entries)
    proposal = leader.propose(b"x")
    c.settle()
    assert leader.commit_index == proposal.index
    assert c.nodes[3].commit_index < proposal.index  # it never received the entry
    rejected = [m for m in of_type(c.delivered, AppendEntriesReply) if m.from_id == 3 and m.reject]  # type: ignore[attr-defined]
    assert rejected  # the notice did not match, and said so
    c.heal()
    c.tick([1], times=2)  # the probe after the rejection was lost too; a heartbeat round repairs it
    assert c.data_applied(3) == [b"x"]
