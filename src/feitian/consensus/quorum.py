"""Quorum math: which index a majority has, and whether a vote is won (paper §5.2, §5.3; thesis §4.3).

A *majority config* is a set of voter ids; a *joint config* is two of them (incoming, outgoing) and needs a
majority of each. The functions are pure and total: an empty majority config agrees to everything, so a joint
config whose outgoing half is empty behaves exactly like its incoming half.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

# What an empty majority config "commits": larger than any real index, so min() picks the other half.
UNBOUNDED_INDEX = 2**63 - 1


class VoteResult(enum.Enum):
    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority_committed_index(voters: Collection[int], match: Mapping[int, int]) -> int:
    """The largest index that a majority of ``voters`` has (``match`` maps id -> matched index; absent = 0)."""
    if not voters:
        return UNBOUNDED_INDEX
    indexes = sorted(match.get(v, 0) for v in voters)
    quorum = len(indexes) // 2 + 1
    # In ascending order, the element at n - quorum is held by exactly `quorum` voters or more.
    return indexes[len(indexes) - quorum]


def joint_committed_index(incoming: Collection[int], outgoing: Collection[int], match: Mapping[int, int]) -> int:
    return min(majority_committed_index(incoming, match), majority_committed_index(outgoing, match))


def majority_vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """Won once a majority said yes, lost once a majority can no longer say yes, pending otherwise."""
    if not voters:
        return VoteResult.WON
    yes = missing = 0
    for v in voters:
        vote = votes.get(v)
        if vote is None:
            missing += 1
        elif vote:
            yes += 1
    quorum = len(voters) // 2 + 1
    if yes >= quorum:
        return VoteResult.WON
    if yes + missing >= quorum:
        return VoteResult.PENDING
    return VoteResult.LOST


def joint_vote_result(incoming: Collection[int], outgoing: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    r1 = majority_vote_result(incoming, votes)
    r2 = majority_vote_result(outgoing, votes)
    if r1 == r2:
        return r1
    if VoteResult.LOST in (r1, r2):
        return VoteResult.LOST
    return VoteResult.PENDING
