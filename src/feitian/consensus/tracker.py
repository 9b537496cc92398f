"""The membership a replica currently uses, with the leader's per-replica :class:`Progress` and vote tally."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from feitian.consensus.progress import Progress
from feitian.consensus.quorum import VoteResult, joint_committed_index, joint_vote_result
from feitian.consensus.types import ConfState


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Membership in set form; ``voters_outgoing`` is non-empty only in a joint configuration."""

    voters: frozenset[int] = frozenset()
    voters_outgoing: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()
    learners_next: frozenset[int] = frozenset()
    auto_leave: bool = False

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)

    def all_voters(self) -> frozenset[int]:
        return self.voters | self.voters_outgoing

    def to_conf_state(self) -> ConfState:
        return ConfState(
            voters=tuple(sorted(self.voters)),
            learners=tuple(sorted(self.learners)),
            voters_outgoing=tuple(sorted(self.voters_outgoing)),
            learners_next=tuple(sorted(self.learners_next)),
            auto_leave=self.auto_leave,
        )

    @classmethod
    def from_conf_state(cls, cs: ConfState) -> TrackerConfig:
        return cls(
            voters=frozenset(cs.voters),
            voters_outgoing=frozenset(cs.voters_outgoing),
            learners=frozenset(cs.learners),
            learners_next=frozenset(cs.learners_next),
            auto_leave=cs.auto_leave,
        )


@dataclass(slots=True)
class ProgressTracker:
    max_inflight_msgs: int
    config: TrackerConfig = field(default_factory=TrackerConfig)
    progress: dict[int, Progress] = field(default_factory=dict)
    votes: dict[int, bool] = field(default_factory=dict)

    def conf_state(self) -> ConfState:
        return self.config.to_conf_state()

    def ids(self) -> list[int]:
        """Every replica with a progress (voters and learners), sorted."""
        return sorted(self.progress)

    def visit(self) -> Iterator[tuple[int, Progress]]:
        for node_id in sorted(self.progress):
            yield node_id, self.progress[node_id]

    def voter_ids(self) -> list[int]:
        return sorted(self.config.all_voters())

    def committed(self) -> int:
        """The largest index held by a (joint) quorum of voters, by their ``match``."""
        match = {node_id: pr.match for node_id, pr in self.progress.items()}
        return joint_committed_index(self.config.voters, self.config.voters_outgoing, match)

    def vote_result(self, votes: dict[int, bool]) -> VoteResult:
        return joint_vote_result(self.config.voters, self.config.voters_outgoing, votes)

    def quorum_active(self) -> bool:
        """Whether a quorum of voters was heard from recently (check-quorum, thesis §6.2)."""
        votes = {nid: pr.recent_active for nid, pr in self.progress.items() if not pr.is_learner}
        return self.vote_result(votes) == VoteResult.WON

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """(granted, rejected, result) over the current voters."""
        granted = rejected = 0
        for node_id in self.config.all_voters():
            vote = self.votes.get(node_id)
            if vote is None:
                continue
            if vote:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.vote_result(self.votes)
