"""Property tests for the quorum math (paper §5.3 commitment rule, §5.2 election; thesis §4.3 joint
consensus) and the in-flight window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feitian.consensus.progress import Inflights
from feitian.consensus.quorum import (
    UNBOUNDED_INDEX,
    VoteResult,
    joint_committed_index,
    joint_vote_result,
    majority_committed_index,
    majority_vote_result,
)

voter_sets = st.sets(st.integers(min_value=1, max_value=9), min_size=1, max_size=7)
indexes = st.integers(min_value=0, max_value=1000)


@st.composite
def voters_and_match(draw: st.DrawFn) -> tuple[frozenset[int], dict[int, int]]:
    voters = frozenset(draw(voter_sets))
    known = draw(st.sets(st.sampled_from(sorted(voters)) | st.integers(10, 12)))
    return voters, {v: draw(indexes) for v in known}


@given(voters_and_match())
def test_committed_index_is_largest_index_held_by_a_majority(case: tuple[frozenset[int], dict[int, int]]) -> None:
    """§5.3: an index is committed when a majority of voters store it; the committed index is the largest
    such index — the (n/2+1)-th largest match index (the "median"). Non-voters never count."""
    voters, match = case
    committed = majority_committed_index(voters, match)
    quorum = len(voters) // 2 + 1
    holding = sum(1 for v in voters if match.get(v, 0) >= committed)
    assert holding >= quorum
    assert sum(1 for v in voters if match.get(v, 0) >= committed + 1) < quorum
    assert committed == sorted((match.get(v, 0) for v in voters), reverse=True)[quorum - 1]


@given(voters_and_match(), st.integers(min_value=1, max_value=9), indexes)
def test_committed_index_is_monotonic_in_match(
    case: tuple[frozenset[int], dict[int, int]], voter: int, bump: int
) -> None:
    """Acknowledgements only raise match indexes, so the committed index never goes down."""
    voters, match = case
    before = majority_committed_index(voters, match)
    raised = dict(match)
    raised[voter] = max(raised.get(voter, 0), bump)
    assert majority_committed_index(voters, raised) >= before


@given(voters_and_match(), voter_sets)
def test_joint_committed_index_needs_both_majorities(
    case: tuple[frozenset[int], dict[int, int]], outgoing: set[int]
) -> None:
    """Thesis §4.3: in C_old,new an index is committed only with a majority of each; an empty outgoing half
    changes nothing."""
    incoming, match = case
    joint = joint_committed_index(incoming, outgoing, match)
    assert joint == min(majority_committed_index(incoming, match), majority_committed_index(outgoing, match))
    assert joint_committed_index(incoming, (), match) == majority_committed_index(incoming, match)
    assert majority_committed_index((), match) == UNBOUNDED_INDEX


@given(voter_sets, st.data())
def test_vote_result(voters: set[int], data: st.DataObject) -> None:
    """§5.2: won with a majority of yes, lost once a majority of yes is impossible, else pending."""
    votes = {v: data.draw(st.booleans()) for v in voters if data.draw(st.booleans())}
    result = majority_vote_result(voters, votes)
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    quorum = len(voters) // 2 + 1
    if yes >= quorum:
        assert result == VoteResult.WON
    elif len(voters) - no < quorum:
        assert result == VoteResult.LOST
    else:
        assert result == VoteResult.PENDING


@given(voter_sets, voter_sets, st.data())
def test_joint_vote_result(incoming: set[int], outgoing: set[int], data: st.DataObject) -> None:
    """Thesis §4.3: a joint election is won only if both halves are won, lost if either is lost."""
    everyone = sorted(incoming | outgoing)
    votes = {v: data.draw(st.booleans()) for v in everyone if data.draw(st.booleans())}
    r1, r2 = majority_vote_result(incoming, votes), majority_vote_result(outgoing, votes)
    result = joint_vote_result(incoming, outgoing, votes)
    if VoteResult.LOST in (r1, r2):
        assert result == VoteResult.LOST
    elif r1 == r2 == VoteResult.WON:
        assert result == VoteResult.WON
    else:
        assert result == VoteResult.PENDING


@given(st.integers(min_value=1, max_value=8), st.lists(st.integers(min_value=0, max_value=5), max_size=40))
def test_inflights_window_never_exceeds_capacity(capacity: int, ops: list[int]) -> None:
    """The per-follower window holds at most max_inflight_msgs entries and frees in order."""
    inflights = Inflights(capacity)
    last = 0
    for op in ops:
        if op == 0:
            inflights.free_le(last - 2)
        elif op == 1:
            inflights.free_first_one()
        elif not inflights.full():
            last += op
            inflights.add(last)
        assert len(inflights) <= capacity
