"""Leader election, driven message by message (Raft paper §5.2, §5.4.1; thesis §9.6 pre-vote, §6.2 and
§4.2.3 check-quorum)."""

from __future__ import annotations

from consensus_harness import Cluster, handle, make_node, of_type

from feitian.consensus import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    Heartbeat,
    RequestVote,
    RequestVoteReply,
    Role,
)


def test_follower_starts_election_after_election_timeout() -> None:
    """§5.2: a follower that hears nothing for an election timeout becomes candidate, increments its term,
    votes for itself and asks every other voter for its vote."""
    node, storage = make_node(1, pre_vote=False)
    for _ in range(2 * 10):
        node.tick()
    assert node.role == Role.CANDIDATE
    assert node.term == 2  # bootstrap is term 1
    out = handle(node, storage)
    votes = of_type(out.messages, RequestVote)
    assert sorted(m.to_id for m in votes) == [2, 3]
    assert all(m.term == 2 and not m.pre_vote for m in votes)
    assert storage.hard_state.vote == 1 and storage.hard_state.term == 2


def test_election_timeout_is_randomized_in_one_to_two_timeouts() -> None:
    """§5.2: election timeouts are chosen randomly from [T, 2T) so split votes are rare."""
    timeouts = set()
    for seed in range(30):
        node, _ = make_node(1, seed=seed, pre_vote=False)
        ticks = 0
        while node.role == Role.FOLLOWER:
            node.tick()
            ticks += 1
        assert 10 <= ticks < 20
        timeouts.add(ticks)
    assert len(timeouts) > 3


def test_candidate_wins_with_majority_and_sends_heartbeats() -> None:
    """§5.2: a candidate that receives votes from a majority becomes leader and asserts authority with
    AppendEntries (here, its no-op entry)."""
    node, storage = make_node(1, pre_vote=False)
    node.campaign()
    handle(node, storage)
    node.step(RequestVoteReply(from_id=2, to_id=1, term=2, granted=True))
    assert node.role == Role.LEADER
    out = handle(node, storage)
    appends = of_type(out.messages, AppendEntries)
    assert sorted(m.to_id for m in appends) == [2, 3]
    assert out.entries[-1].term == 2  # the no-op of the new term


def test_candidate_loses_with_majority_of_rejections() -> None:
    """§5.2: a candidate whose vote is rejected by a majority returns to follower."""
    node, _storage = make_node(1, pre_vote=False)
    node.campaign()
    node.step(RequestVoteReply(from_id=2, to_id=1, term=2, granted=False))
    assert node.role == Role.CANDIDATE
    node.step(RequestVoteReply(from_id=3, to_id=1, term=2, granted=False))
    assert node.role == Role.FOLLOWER


def test_candidate_steps_down_on_append_entries_of_its_term() -> None:
    """§5.2: while waiting for votes, a candidate that hears from a leader of its term becomes follower."""
    node, _storage = make_node(1, pre_vote=False)
    node.campaign()
    node.step(AppendEntries(from_id=2, to_id=1, term=2, prev_log_index=1, prev_log_term=1))
    assert node.role == Role.FOLLOWER
    assert node.leader_id == 2


def test_higher_term_turns_anyone_into_follower() -> None:
    """§5.1: a server that sees a larger term adopts it and reverts to follower."""
    c = Cluster(pre_vote=False)
    leader = c.elect(1)
    leader.step(AppendEntriesReply(from_id=2, to_id=1, term=9))
    assert leader.role == Role.FOLLOWER
    assert leader.term == 9


def test_stale_term_message_is_rejected() -> None:
    """§5.1: a request with a stale term is rejected; the reply carries the current term."""
    node, storage = make_node(1)
    node.step(Heartbeat(from_id=2, to_id=1, term=5))
    handle(node, storage)
    node.step(AppendEntries(from_id=3, to_id=1, term=3, prev_log_index=1, prev_log_term=1))
    out = handle(node, storage)
    replies = of_type(out.messages, AppendEntriesReply)
    assert len(replies) == 1 and replies[0].term == 5
    assert node.leader_id == 2


def test_vote_at_most_once_per_term() -> None:
    """§5.2: each server votes for at most one candidate per term, first come first served, and the vote
    survives a restart because it is persisted before the reply is sent."""
    node, storage = make_node(1, pre_vote=False)
    node.step(RequestVote(from_id=2, to_id=1, term=2, last_log_index=1, last_log_term=1))
    granted = of_type(handle(node, storage).messages, RequestVoteReply)
    assert granted[0].granted  # type: ignore[attr-defined]
    assert storage.hard_state.vote == 2
    restarted, _ = make_node(1, storage=storage, pre_vote=False)
    restarted.step(RequestVote(from_id=3, to_id=1, term=2, last_log_index=1, last_log_term=1))
    rejected = of_type(handle(restarted, storage).messages, RequestVoteReply)
    assert not rejected[0].granted  # type: ignore[attr-defined]
    # The same candidate asking again (a retransmission) gets the vote again.
    restarted.step(RequestVote(from_id=2, to_id=1, term=2, last_log_index=1, last_log_term=1))
    again = of_type(handle(restarted, storage).messages, RequestVoteReply)
    assert again[0].granted  # type: ignore[attr-defined]


def test_vote_requires_up_to_date_log() -> None:
    """§5.4.1: a voter denies its vote to a candidate whose log is less up to date: the later last term
    wins; with equal last terms, the longer log wins."""
    node, storage = make_node(1, pre_vote=False, check_quorum=False)
    node.step(
        AppendEntries(
            from_id=2,
            to_id=1,
            term=3,
            prev_log_index=1,
            prev_log_term=1,
            entries=(Entry(term=3, index=2), Entry(term=3, index=3)),
        )
    )
    handle(node, storage)
    cases = [
        (4, 2, 3, False),  # shorter log, same last term
        (4, 9, 2, False),  # longer log, older last term
        (5, 3, 3, True),  # equal
        (6, 2, 4, True),  # newer last term
    ]
    for term, last_index, last_term, expected in cases:
        node.step(RequestVote(from_id=3, to_id=1, term=term, last_log_index=last_index, last_log_term=last_term))
        reply = of_type(handle(node, storage).messages, RequestVoteReply)[0]
        assert reply.granted is expected, (term, last_index, last_term)  # type: ignore[attr-defined]


def test_single_voter_elects_itself() -> None:
    """§5.2: a one-voter cluster becomes leader on its own and commits its no-op immediately."""
    node, storage = make_node(1, voters=(1,))
    node.campaign()
    assert node.role == Role.LEADER
    out = handle(node, storage)
    assert [e.index for e in out.committed] == [2]


def test_split_vote_resolves_with_new_term() -> None:
    """§5.2: when votes split, candidates time out and a new election in a later term picks a leader."""
    c = Cluster(ids=(1, 2, 3, 4), pre_vote=False)
    c.nodes[1].campaign()
    c.nodes[2].campaign()
    # Replica 3 hears only from 1, replica 4 only from 2: two votes each, three needed.
    c.drop = lambda m: isinstance(m, RequestVote) and (m.from_id, m.to_id) in {(1, 4), (2, 3), (1, 2), (2, 1)}
    c.settle()
    assert c.leader() is None
    c.heal()
    for _ in range(100):
        c.tick()
        if c.leader() is not None:
            break
    leader = c.leader()
    assert leader is not None and leader.term >= 3


def test_stale_candidate_learns_current_term_from_rejection() -> None:
    """Figure 2 (RequestVote results carry currentTerm "for candidate to update itself"): a candidate behind
    the voters' term is refused with their term and catches up, instead of campaigning unheard forever while
    a disruptive replica keeps the voters' term ahead of it."""
    voter, storage = make_node(1, pre_vote=False)
    voter.step(RequestVote(from_id=4, to_id=1, term=9, last_log_index=0, last_log_term=0))  # disruptive
    handle(voter, storage)
    candidate, cstorage = make_node(2, pre_vote=False)
    candidate.campaign()
    vote = of_type(handle(candidate, cstorage).messages, RequestVote)[0]
    voter.step(vote)
    reply = of_type(handle(voter, storage).messages, RequestVoteReply)[0]
    assert reply.term == 9 and not reply.granted  # type: ignore[attr-defined]
    candidate.step(reply)
    assert candidate.term == 9 and candidate.role == Role.FOLLOWER
    candidate.campaign()  # now at term 10, ahead of the voter
    vote = of_type(handle(candidate, cstorage).messages, RequestVote)[0]
    voter.step(vote)
    assert of_type(handle(voter, storage).messages, RequestVoteReply)[0].granted  # type: ignore[attr-defined]
