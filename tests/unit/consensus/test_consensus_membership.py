"""Membership changes: learners, single-server changes, joint consensus (Ongaro's thesis §4.1-§4.3; the
"leader commits an entry of its term first" fix for single-server changes, raft-dev 2015)."""

from __future__ import annotations

import pytest
from consensus_harness import Cluster, handle, make_node

from feitian.consensus import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    RequestVoteReply,
    Role,
    Snapshot,
    SnapshotMeta,
)
from feitian.consensus.confchange import Changer, restore
from feitian.consensus.tracker import TrackerConfig
from feitian.errors import InvalidArgumentError, NotLeaderError, UnavailableError

ADD_VOTER = ConfChangeType.ADD_VOTER
ADD_LEARNER = ConfChangeType.ADD_LEARNER
REMOVE = ConfChangeType.REMOVE


def cc(
    *changes: tuple[ConfChangeType, int], transition: ConfChangeTransition = ConfChangeTransition.AUTO
) -> ConfChange:
    return ConfChange(changes=tuple(ConfChangeSingle(t, n) for t, n in changes), transition=transition)


def _changer(cs: ConfState) -> Changer:
    config, progress = restore(cs, last_index=10, max_inflight_msgs=4)
    return Changer(config, progress, last_index=10, max_inflight_msgs=4)


def test_add_learner_then_promote() -> None:
    """§4.2.1: a new server joins as a non-voting learner, catches up, then is promoted to voter."""
    c = Cluster(ids=(1, 2, 3))
    leader = c.elect(1)
    leader.propose(b"before")
    c.settle()
    c.add(4)  # empty storage: it learns everything from the leader
    leader.propose_conf_change(cc((ADD_LEARNER, 4)))
    c.settle()
    c.tick([1], times=2)
    assert leader.conf_state.learners == (4,)
    assert c.nodes[4].applied_index == leader.applied_index
    assert c.nodes[4].conf_state.learners == (4,)
    # A learner never campaigns.
    c.tick([4], times=50)
    assert c.nodes[4].role == Role.FOLLOWER
    leader.propose_conf_change(cc((ADD_VOTER, 4)))
    c.settle()
    assert leader.conf_state.voters == (1, 2, 3, 4)
    assert c.nodes[4].conf_state.voters == (1, 2, 3, 4)


def test_learner_does_not_count_for_commit() -> None:
    """§4.2.1: learners receive the log but are not part of any majority."""
    c = Cluster(ids=(1, 2, 3), voters=(1,))
    leader = c.elect(1)
    leader.propose_conf_change(cc((ADD_LEARNER, 2)))
    c.settle()
    leader.propose_conf_change(cc((ADD_LEARNER, 3)))
    c.settle()
    c.isolate(2, 3)
    proposal = leader.propose(b"x")
    c.settle()
    assert leader.commit_index == proposal.index  # the single voter commits alone


def test_remove_follower() -> None:
    """§4.1: removing a voter shrinks the majority; the removed replica stops receiving entries."""
    c = Cluster()
    leader = c.elect(1)
    leader.propose_conf_change(cc((REMOVE, 3)))
    c.settle()
    assert leader.conf_state.voters == (1, 2)
    c.isolate(3)
    c.isolate(2)  # with 3 removed, 1 and 2 form the whole cluster: cutting 2 stalls commits
    proposal = leader.propose(b"y")
    c.settle()
    assert leader.commit_index < proposal.index
    c.heal()
    c.tick([1])
    assert leader.commit_index >= proposal.index


def test_removed_leader_hands_off_and_steps_down() -> None:
    """§4.2.2: a leader removed from the configuration stops leading once the change applies, and the
    remaining voters carry on (here, with a TimeoutNow to the caught-up voter)."""
    c = Cluster()
    leader = c.elect(1)
    leader.propose_conf_change(cc((REMOVE, 1)))
    with pytest.raises(NotLeaderError):
        leader.propose(b"after my removal")  # nothing after its own removal
    c.settle()
    assert leader.role == Role.FOLLOWER
    new_leader = c.leader()
    assert new_leader is not None and new_leader.id in (2, 3)
    assert new_leader.conf_state.voters == (2, 3)
    new_leader.propose(b"z")
    c.settle()
    assert c.data_applied(2)[-1] == b"z"


def test_one_conf_change_at_a_time() -> None:
    """§4.1: a leader does not start a change until the previous one is applied."""
    c = Cluster()
    leader = c.elect(1)
    leader.propose_conf_change(cc((ADD_LEARNER, 4)))
    with pytest.raises(UnavailableError):
        leader.propose_conf_change(cc((ADD_LEARNER, 5)))


def test_conf_change_waits_for_commit_in_leader_term() -> None:
    """The single-server-change safety fix: a new leader may change membership only after committing an
    entry of its own term (otherwise an uncommitted change of an old leader could be overridden)."""
    node, storage = make_node(1, voters=(1, 2, 3), pre_vote=False)
    node.campaign()
    node.step(RequestVoteReply(from_id=2, to_id=1, term=2, granted=True))
    handle(node, storage)
    assert node.role == Role.LEADER
    with pytest.raises(UnavailableError, match="not committed an entry of term"):
        node.propose_conf_change(cc((ADD_LEARNER, 4)))


def test_joint_consensus_auto_leave() -> None:
    """§4.3: replacing voters goes through the joint configuration C_old,new, in which decisions need both
    majorities; the leader then moves to C_new on its own."""
    c = Cluster(ids=(1, 2, 3, 4, 5), voters=(1, 2, 3))
    leader = c.elect(1)
    leader.propose_conf_change(cc((ADD_LEARNER, 4)))
    c.settle()
    leader.propose_conf_change(cc((ADD_LEARNER, 5)))
    c.settle()
    leader.propose_conf_change(cc((REMOVE, 2), (REMOVE, 3), (ADD_VOTER, 4), (ADD_VOTER, 5)))
    c.settle()
    c.tick([1], times=2)
    for node_id in (1, 4, 5):
        assert c.nodes[node_id].conf_state == ConfState(voters=(1, 4, 5))


def test_joint_consensus_needs_both_majorities() -> None:
    """§4.3: in C_old,new an entry commits only with a majority of C_old *and* of C_new."""
    c = Cluster(ids=(1, 2, 3, 4, 5), voters=(1, 2, 3))
    leader = c.elect(1)
    for n in (4, 5):
        leader.propose_conf_change(cc((ADD_LEARNER, n)))
        c.settle()
    leader.propose_conf_change(
        cc((REMOVE, 2), (REMOVE, 3), (ADD_VOTER, 4), (ADD_VOTER, 5), transition=ConfChangeTransition.JOINT_EXPLICIT)
    )
    c.settle()
    assert leader.conf_state.voters_outgoing == (1, 2, 3)
    # Old voters 2 and 3 unreachable: C_new = {1,4,5} has a majority, C_old = {1,2,3} does not.
    c.isolate(2, 3)
    proposal = leader.propose(b"x")
    c.settle()
    assert leader.commit_index < proposal.index
    c.heal()
    c.tick([1])
    assert leader.commit_index >= proposal.index
    # Explicit transition: the application leaves the joint configuration.
    leader.propose_conf_change(ConfChange())
    c.settle()
    assert leader.conf_state == ConfState(voters=(1, 4, 5))


def test_demote_voter_to_learner_through_joint() -> None:
    """§4.3 (etcd's learners_next): a voter demoted in a joint change keeps voting in C_old until the joint
    configuration is left, then becomes a learner."""
    ch = _changer(ConfState(voters=(1, 2, 3)))
    config, _ = ch.apply(cc((ADD_LEARNER, 3), (ADD_VOTER, 4), transition=ConfChangeTransition.JOINT_IMPLICIT))
    assert config.voters == {1, 2, 4} and config.voters_outgoing == {1, 2, 3}
    assert config.learners_next == {3} and config.auto_leave
    config2, progress2 = Changer(config, _, last_index=10, max_inflight_msgs=4).leave_joint()
    assert config2.to_conf_state() == ConfState(voters=(1, 2, 4), learners=(3,))
    assert progress2[3].is_learner


@pytest.mark.parametrize(
    ("start", "change", "message"),
    [
        (ConfState(voters=(1,)), cc((REMOVE, 1)), "removes every voter"),
        (ConfState(voters=(1, 2, 3)), ConfChange(), "not joint"),
        (
            ConfState(voters=(1, 2), voters_outgoing=(1, 2, 3), auto_leave=True),
            cc((ADD_VOTER, 5)),
            "joint",
        ),
    ],
)
def test_invalid_conf_changes_are_refused(start: ConfState, change: ConfChange, message: str) -> None:
    """§4.1/§4.3: changes that would leave no voters, change several voters without a joint phase, or
    nest joint configurations are refused."""
    with pytest.raises(InvalidArgumentError, match=message):
        _changer(start).apply(change)


def test_simple_change_of_two_voters_is_refused() -> None:
    """§4.1: without a joint phase, at most one voter may change at a time (AUTO turns multi-voter
    changes into joint ones; the simple path refuses them)."""
    with pytest.raises(InvalidArgumentError, match="2 voters changed"):
        _changer(ConfState(voters=(1, 2, 3))).simple(cc((REMOVE, 2), (REMOVE, 3)).changes)
    config, _ = _changer(ConfState(voters=(1, 2, 3))).apply(cc((REMOVE, 2), (REMOVE, 3)))
    assert config.voters == {1} and config.voters_outgoing == {1, 2, 3} and config.auto_leave


def test_invalid_conf_change_refused_at_propose() -> None:
    """A leader validates a change against its configuration before appending it."""
    c = Cluster()
    leader = c.elect(1)
    with pytest.raises(InvalidArgumentError, match="not joint"):
        leader.propose_conf_change(ConfChange())
    assert leader.status().last_index == leader.commit_index  # nothing was appended


def test_changer_leaves_input_untouched_on_error() -> None:
    """The changer works on copies: a refused change leaves the tracker as it was."""
    config, progress = restore(ConfState(voters=(1, 2), learners=(3,)), last_index=5, max_inflight_msgs=4)
    before = {k: (v.is_learner, v.match) for k, v in progress.items()}
    with pytest.raises(InvalidArgumentError):
        Changer(config, progress, last_index=5, max_inflight_msgs=4).apply(
            cc((ADD_VOTER, 3), (REMOVE, 1), (REMOVE, 2), (REMOVE, 3))
        )
    assert {k: (v.is_learner, v.match) for k, v in progress.items()} == before
    assert config == TrackerConfig(voters=frozenset({1, 2}), learners=frozenset({3}))


def test_conf_change_encoding_roundtrip() -> None:
    """CONF_CHANGE entries carry an encoded ConfChange."""
    change = cc((ADD_VOTER, 4), (REMOVE, 2), transition=ConfChangeTransition.JOINT_EXPLICIT)
    assert ConfChange.decode(change.encode()) == change


def _storage_at(
    conf: ConfState, snapshot_index: int, snapshot_term: int, entries: list[Entry], hard_state: HardState
) -> MemoryStorage:
    storage = MemoryStorage()
    storage.apply_snapshot(Snapshot(meta=SnapshotMeta(index=snapshot_index, term=snapshot_term, conf=conf)))
    storage.append(entries)
    storage.set_hard_state(hard_state)
    return storage


def test_candidate_with_lost_commit_learns_it_from_a_demoted_voter() -> None:
    """Seed 42 of the simulator: voters {1, 3} demote 1 to a learner through a joint configuration. Replica 1
    applied the leave-joint entry 7 (it is a learner now and never campaigns) and holds entry 8 of a leader of
    term 6 that crashed before writing it. Replica 3 lost its unsynced commit index: it is still in the joint
    configuration, where it needs 1's vote, which 1 refuses (1's log is longer). 1's refusal carries its commit
    index, so 3 learns that entry 7 — which it holds — is committed, applies it and, the only voter left, wins."""
    leave = Entry(term=4, index=7, kind=EntryKind.CONF_CHANGE, data=ConfChange().encode())
    joint = ConfState(voters=(3,), voters_outgoing=(1, 3), learners_next=(1,), auto_leave=True)
    s3 = _storage_at(joint, 6, 4, [leave], HardState(term=6, vote=3, commit=6))
    s1 = _storage_at(
        ConfState(voters=(3,), learners=(1,)), 7, 4, [Entry(term=6, index=8)], HardState(term=6, vote=3, commit=7)
    )
    c = Cluster(ids=(), pre_vote=True, check_quorum=True)
    c.add(1, s1)
    c.add(3, s3)
    for _ in range(100):
        c.tick()
        if c.leader() is not None:
            break
    leader = c.leader()
    assert leader is not None and leader.id == 3
    assert leader.status().conf_state == ConfState(voters=(3,), learners=(1,))


def test_refused_vote_teaches_commit_only_to_a_matching_log() -> None:
    """The commit index in a refusal is adopted only if the candidate holds the same entry (index and term):
    Log Matching (§5.3) then makes the whole prefix the committed one. A candidate whose entry at that index is
    of another term learns nothing."""
    for entry_term, expected_commit in ((4, 7), (5, 6)):
        s = _storage_at(
            ConfState(voters=(1, 2, 3)), 6, 4, [Entry(term=entry_term, index=7)], HardState(term=6, commit=6)
        )
        node, _ = make_node(3, storage=s)
        node.step(RequestVoteReply(from_id=1, to_id=3, term=6, granted=False, pre_vote=True, commit=7, commit_term=4))
        assert node.status().commit == expected_commit


def test_candidate_that_learns_a_commit_stops_campaigning() -> None:
    """What a refusal's commit index commits may change the configuration the campaign counts votes in (here
    it removes the candidate): the candidate steps down, applies it, and a late vote elects nobody."""
    removal = Entry(term=4, index=7, kind=EntryKind.CONF_CHANGE, data=cc((REMOVE, 3)).encode())
    s = _storage_at(ConfState(voters=(1, 2, 3)), 6, 4, [removal], HardState(term=6, commit=6))
    node, _ = make_node(3, storage=s, pre_vote=False)
    node.campaign()
    handle(node, s)
    node.step(RequestVoteReply(from_id=1, to_id=3, term=7, granted=False, commit=7, commit_term=4))
    assert node.role == Role.FOLLOWER
    handle(node, s)
    assert node.status().conf_state == ConfState(voters=(1, 2))
    node.step(RequestVoteReply(from_id=2, to_id=3, term=7, granted=True))
    assert node.role == Role.FOLLOWER
