"""Pre-vote and check-quorum (Ongaro's thesis §9.6 "Preventing disruptions when a server rejoins", §6.2
leader step-down, §4.2.3 "Disruptive servers")."""

from __future__ import annotations

from consensus_harness import Cluster, handle, make_node, of_type

from feitian.consensus import AppendEntries, AppendEntriesReply, RequestVote, RequestVoteReply, Role


def test_pre_vote_does_not_change_term() -> None:
    """§9.6: a pre-candidate asks whether it could win at term+1 without incrementing its own term or
    voting, so a failed attempt changes nothing durable."""
    node, storage = make_node(1)
    node.campaign()
    assert node.role == Role.PRE_CANDIDATE
    out = handle(node, storage)
    pre_votes = of_type(out.messages, RequestVote)
    assert all(m.pre_vote and m.term == 2 for m in pre_votes)  # type: ignore[attr-defined]
    assert node.term == 1 and storage.hard_state.vote == 0


def test_pre_vote_win_then_real_election() -> None:
    """§9.6: once a majority would vote for it, the pre-candidate runs a real election."""
    node, storage = make_node(1)
    node.campaign()
    handle(node, storage)
    node.step(RequestVoteReply(from_id=2, to_id=1, term=2, granted=True, pre_vote=True))
    assert node.role == Role.CANDIDATE and node.term == 2
    votes = of_type(handle(node, storage).messages, RequestVote)
    assert votes and not any(m.pre_vote for m in votes)  # type: ignore[attr-defined]


def test_pre_vote_rejected_by_voter_with_leader() -> None:
    """§9.6 with §4.2.3: a voter that heard from a leader within the election timeout ignores
    (pre-)vote requests, so an isolated replica cannot win even a pre-vote."""
    c = Cluster()
    c.elect(1)
    # Replica 3 is partitioned away and keeps campaigning; its term must not grow.
    c.isolate(3)
    c.tick([3], times=50)
    assert c.nodes[3].term == c.nodes[1].term
    assert c.nodes[3].role == Role.PRE_CANDIDATE


def test_partitioned_replica_rejoining_does_not_disrupt_leader() -> None:
    """§9.6: with pre-vote, a replica rejoining after a partition does not force the healthy leader out."""
    c = Cluster()
    leader = c.elect(1)
    term = leader.term
    c.isolate(3)
    for _ in range(30):
        c.tick()  # 1 and 2 keep exchanging heartbeats, 3 campaigns alone
    c.heal()
    c.tick(times=5)
    assert c.nodes[1].role == Role.LEADER and c.nodes[1].term == term
    assert c.nodes[3].leader_id == 1
    leader.propose(b"after")
    c.settle()
    assert c.data_applied(3)[-1] == b"after"


def test_without_pre_vote_rejoining_replica_bumps_term() -> None:
    """The disruption pre-vote prevents: without it the isolated replica's term runs ahead, and when it
    rejoins, the leader must step down (the cluster re-elects in a higher term)."""
    c = Cluster(pre_vote=False)
    leader = c.elect(1)
    term = leader.term
    c.isolate(3)
    c.tick([3], times=25)
    assert c.nodes[3].term > term
    c.heal()
    c.tick(times=30)
    new_leader = c.leader()
    assert new_leader is not None and new_leader.term > term


def test_check_quorum_leader_steps_down_without_quorum() -> None:
    """§6.2: a leader that has not heard from a majority for an election timeout steps down, so clients can
    find the real leader."""
    c = Cluster()
    leader = c.elect(1)
    c.isolate(1)
    c.tick([1], times=10)
    c.tick([1], times=10)
    assert leader.role == Role.FOLLOWER


def test_check_quorum_leader_stays_with_quorum() -> None:
    """§6.2: with a majority responsive, the leader keeps leading across many check-quorum rounds."""
    c = Cluster()
    leader = c.elect(1)
    c.isolate(3)
    c.tick([1, 2], times=50)
    assert leader.role == Role.LEADER


def test_follower_in_lease_ignores_higher_term_vote() -> None:
    """§4.2.3: a server that heard from a current leader within the minimum election timeout neither
    updates its term nor grants its vote."""
    node, storage = make_node(2)
    node.step(AppendEntries(from_id=1, to_id=2, term=2, prev_log_index=1, prev_log_term=1))
    handle(node, storage)
    node.step(RequestVote(from_id=3, to_id=2, term=5, last_log_index=9, last_log_term=4))
    out = handle(node, storage)
    assert node.term == 2 and of_type(out.messages, RequestVoteReply) == []
    # After an election timeout without the leader, the vote is considered.
    for _ in range(10):
        node.tick()
    node.step(RequestVote(from_id=3, to_id=2, term=5, last_log_index=9, last_log_term=4))
    out = handle(node, storage)
    assert node.term == 5
    assert of_type(out.messages, RequestVoteReply)[0].granted  # type: ignore[attr-defined]


def test_stale_leader_is_told_the_new_term() -> None:
    """With check-quorum/pre-vote, a replica whose term ran ahead answers a stale leader's append with its
    term, so the stale leader steps down."""
    node, storage = make_node(2)
    node.step(AppendEntriesReply(from_id=3, to_id=2, term=7))  # learns term 7 from somewhere
    handle(node, storage)
    node.step(AppendEntries(from_id=1, to_id=2, term=3, prev_log_index=1, prev_log_term=1))
    replies = of_type(handle(node, storage).messages, AppendEntriesReply)
    assert replies[0].term == 7 and replies[0].to_id == 1
