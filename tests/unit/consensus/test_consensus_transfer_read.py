"""Leader transfer (Ongaro's thesis §3.10) and linearizable reads with ReadIndex (thesis §6.4)."""

from __future__ import annotations

import pytest
from consensus_harness import Cluster, handle, make_node, of_type

from feitian.consensus import (
    AppendEntriesReply,
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    Heartbeat,
    HeartbeatReply,
    ReadIndex,
    ReadIndexReply,
    ReadState,
    RequestVote,
    RequestVoteReply,
    Role,
    TimeoutNow,
)
from feitian.consensus.quorum import VoteResult
from feitian.consensus.read_only import ReadOnly, encode_round
from feitian.errors import InvalidArgumentError, NotLeaderError

# -- leader transfer -------------------------------------------------------------------------------------------


def test_transfer_to_up_to_date_follower() -> None:
    """§3.10: the leader sends TimeoutNow to a caught-up target, which campaigns at once (no pre-vote, past
    the voters' check-quorum lease) and wins."""
    c = Cluster()
    leader = c.elect(1)
    term = leader.term
    leader.transfer_leader(2)
    c.settle()
    assert any(isinstance(m, TimeoutNow) and m.to_id == 2 for m in c.delivered)
    votes = [m for m in c.delivered if isinstance(m, RequestVote) and m.from_id == 2]
    assert votes and all(m.leader_transfer and not m.pre_vote for m in votes)
    assert c.nodes[2].role == Role.LEADER and c.nodes[2].term == term + 1
    assert leader.role == Role.FOLLOWER


def test_transfer_to_lagging_follower_catches_it_up_first() -> None:
    """§3.10: if the target lacks entries, the leader first replicates them, then sends TimeoutNow."""
    c = Cluster()
    leader = c.elect(1)
    c.isolate(3)
    for i in range(3):
        leader.propose(bytes([i]))
    c.settle()
    c.heal()
    leader.transfer_leader(3)
    out = c.handle(1)
    assert not of_type(out.messages, TimeoutNow)
    c.settle()
    assert c.nodes[3].role == Role.LEADER
    assert c.data_applied(3) == [bytes([i]) for i in range(3)]


def test_proposals_refused_during_transfer() -> None:
    """§3.10: the old leader stops accepting client requests while the transfer is in progress."""
    c = Cluster()
    leader = c.elect(1)
    c.isolate(3)
    leader.propose(b"x")
    c.settle()
    leader.transfer_leader(3)
    with pytest.raises(NotLeaderError) as info:
        leader.propose(b"y")
    assert info.value.leader_hint == 3


def test_transfer_aborts_after_election_timeout() -> None:
    """§3.10: if the transfer does not complete within an election timeout, the leader resumes."""
    c = Cluster()
    leader = c.elect(1)
    c.isolate(3)
    leader.transfer_leader(3)
    c.tick([1, 2], times=10)
    assert leader.role == Role.LEADER
    leader.propose(b"resumed")


def test_transfer_to_learner_is_refused() -> None:
    """§3.10: only a voter can take over leadership."""
    c = Cluster(ids=(1, 2, 3, 4), voters=(1, 2, 3))
    leader = c.elect(1)
    leader.propose_conf_change(ConfChange(changes=(ConfChangeSingle(ConfChangeType.ADD_LEARNER, 4),)))
    c.settle()
    with pytest.raises(InvalidArgumentError):
        leader.transfer_leader(4)


# -- ReadIndex -------------------------------------------------------------------------------------------------


def test_leader_read_index_confirmed_by_heartbeat_quorum() -> None:
    """§6.4: the leader records its commit index, confirms it is still leader with a heartbeat round
    (acknowledged by a majority), and only then releases the read at that index."""
    c = Cluster()
    leader = c.elect(1)
    leader.propose(b"x")
    c.settle()
    leader.read_index(b"r1")
    out = c.handle(1)
    beats = of_type(out.messages, Heartbeat)
    # The heartbeat names the leader's own round for the read, never the requester's context.
    assert beats and all(m.context == encode_round(1) for m in beats)  # type: ignore[attr-defined]
    assert out.read_states == []
    leader.step(HeartbeatReply(from_id=2, to_id=1, term=leader.term, context=encode_round(1)))
    out = c.handle(1)
    assert out.read_states == [ReadState(index=leader.commit_index, context=b"r1")]


def test_read_index_not_released_without_quorum() -> None:
    """§6.4: a deposed leader that cannot reach a majority never answers the read."""
    c = Cluster()
    leader = c.elect(1)
    c.isolate(1)
    leader.read_index(b"r")
    c.tick([1], times=5)
    assert c.read_states[1] == []


def test_new_leader_defers_reads_until_commit_in_term() -> None:
    """§6.4: a new leader's commit index may be stale until it commits an entry of its own term (its
    no-op); reads wait for that."""
    node, storage = make_node(1, pre_vote=False)
    node.campaign()
    node.step(RequestVoteReply(from_id=2, to_id=1, term=2, granted=True))
    handle(node, storage)
    node.read_index(b"r")
    out = handle(node, storage)
    assert not [m for m in of_type(out.messages, Heartbeat) if m.context]  # type: ignore[attr-defined]
    node.step(AppendEntriesReply(from_id=2, to_id=1, term=2, index=2))  # the no-op commits
    out = handle(node, storage)
    assert [m for m in of_type(out.messages, Heartbeat) if m.context == encode_round(1)]  # type: ignore[attr-defined]


def test_follower_read_index_is_forwarded_to_leader() -> None:
    """§6.4: a follower asks the leader for the read index, then serves the read locally once it has
    applied up to it."""
    c = Cluster()
    leader = c.elect(1)
    leader.propose(b"x")
    c.settle()
    c.nodes[2].read_index(b"f")
    c.settle()
    assert any(isinstance(m, ReadIndex) and m.from_id == 2 for m in c.delivered)
    assert any(isinstance(m, ReadIndexReply) and m.to_id == 2 for m in c.delivered)
    assert c.read_states[2] == [ReadState(index=leader.commit_index, context=b"f")]
    assert c.nodes[2].applied_index >= leader.commit_index


def test_read_index_without_known_leader_raises() -> None:
    """§6.4: a replica that knows no leader cannot forward a read; the client retries elsewhere."""
    node, _ = make_node(1)
    with pytest.raises(NotLeaderError):
        node.read_index(b"r")
    with pytest.raises(InvalidArgumentError):
        node.read_index(b"")


def test_single_voter_reads_immediately() -> None:
    """§6.4: with one voter there is nobody to confirm leadership with."""
    node, storage = make_node(1, voters=(1,))
    node.campaign()
    handle(node, storage)
    node.read_index(b"r")
    assert handle(node, storage).read_states == [ReadState(index=node.commit_index, context=b"r")]


def test_later_heartbeat_ack_confirms_earlier_reads() -> None:
    """§6.4: reads are answered in order; a quorum for a later read confirms the earlier ones."""
    c = Cluster()
    leader = c.elect(1)
    leader.read_index(b"a")
    leader.read_index(b"b")
    c.handle(1)
    leader.step(HeartbeatReply(from_id=3, to_id=1, term=leader.term, context=encode_round(2)))
    out = c.handle(1)
    assert [rs.context for rs in out.read_states] == [b"a", b"b"]


def test_equal_contexts_from_two_replicas_are_both_answered() -> None:
    """Requesters name their reads as they like; two replicas using the same bytes at once must both be
    answered (the leader used to drop the second as a duplicate, and it waited out its timeout)."""
    c = Cluster()
    leader = c.elect(1)
    leader.propose(b"x")
    c.settle()
    leader.read_index(b"\x01")
    c.nodes[3].read_index(b"\x01")
    c.settle()
    assert c.read_states[1] == [ReadState(index=leader.commit_index, context=b"\x01")]
    assert c.read_states[3] == [ReadState(index=leader.commit_index, context=b"\x01")]


def test_ack_of_an_earlier_heartbeat_never_confirms_a_later_read() -> None:
    """§6.4's safety argument: only a heartbeat sent after the read was registered proves leadership for it.
    A late (or duplicated) reply to an earlier round, even with the same requester context, counts for nothing."""
    c = Cluster()
    leader = c.elect(1)
    leader.propose(b"x")
    c.settle()
    leader.read_index(b"same")
    c.handle(1)
    leader.step(HeartbeatReply(from_id=2, to_id=1, term=leader.term, context=encode_round(1)))
    assert [rs.context for rs in c.handle(1).read_states] == [b"same"]
    leader.read_index(b"same")  # round 2
    c.handle(1)
    for _ in range(2):  # replica 3's reply to round 1 arrives late, twice
        leader.step(HeartbeatReply(from_id=3, to_id=1, term=leader.term, context=encode_round(1)))
    leader.step(HeartbeatReply(from_id=2, to_id=1, term=leader.term, context=encode_round(1)))
    assert c.handle(1).read_states == []
    leader.step(HeartbeatReply(from_id=3, to_id=1, term=leader.term, context=encode_round(2)))
    assert [rs.context for rs in c.handle(1).read_states] == [b"same"]


def test_heartbeat_context_that_is_not_a_round_is_ignored() -> None:
    """A reply echoing garbage, or a round this leader never sent, confirms nothing."""
    c = Cluster()
    leader = c.elect(1)
    leader.read_index(b"r")
    c.handle(1)
    for context in (b"r", b"\x00" * 7, encode_round(99)):
        leader.step(HeartbeatReply(from_id=2, to_id=1, term=leader.term, context=context))
    assert c.handle(1).read_states == []


def test_pending_reads_are_bounded() -> None:
    """Beyond MAX_PENDING_READS a request is dropped (its requester times out and retries); the others
    are still answered."""
    read_only = ReadOnly(max_pending=2)
    assert read_only.add_request(5, b"a", 1) == encode_round(1)
    assert read_only.add_request(5, b"b", 2) == encode_round(2)
    assert read_only.add_request(5, b"c", 3) is None
    won = lambda votes: VoteResult.WON if len(votes) >= 2 else VoteResult.PENDING  # noqa: E731
    assert read_only.recv_ack(1, encode_round(2), won) == []
    assert [s.context for s in read_only.recv_ack(2, encode_round(2), won)] == [b"a", b"b"]
    assert len(read_only) == 0
