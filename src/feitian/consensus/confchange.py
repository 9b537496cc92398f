"""Membership changes: turn a :class:`ConfChange` into the next :class:`TrackerConfig` (thesis §4.3).

Three transitions, as in etcd-io/raft:

* **simple**: at most one voter is added or removed (any number of learners). Any majority of the old voters
  overlaps any majority of the new ones, so no joint phase is needed.
* **enter joint**: the current voters become the outgoing half, the changes are applied to the incoming half;
  decisions (elections, commitment) then need a majority of *both* halves.
* **leave joint**: the outgoing half is dropped; voters demoted during the joint phase (``learners_next``)
  become learners.

The changer works on copies: a rejected change leaves the tracker untouched. Changes take effect when the
entry carrying them is *applied*, on every replica alike.
"""

from __future__ import annotations

import dataclasses

from feitian.consensus.progress import Inflights, Progress
from feitian.consensus.tracker import TrackerConfig
from feitian.consensus.types import ConfChange, ConfChangeSingle, ConfChangeType, ConfState
from feitian.errors import InvalidArgumentError


class _Draft:
    """Mutable working copy of a config and progress map."""

    def __init__(self, config: TrackerConfig, progress: dict[int, Progress]) -> None:
        self.voters = set(config.voters)
        self.outgoing = set(config.voters_outgoing)
        self.learners = set(config.learners)
        self.learners_next = set(config.learners_next)
        self.auto_leave = config.auto_leave
        self.progress = dict(progress)  # Progress objects are replaced, never mutated (copy on write)

    def freeze(self) -> TrackerConfig:
        return TrackerConfig(
            voters=frozenset(self.voters),
            voters_outgoing=frozenset(self.outgoing),
            learners=frozenset(self.learners),
            learners_next=frozenset(self.learners_next),
            auto_leave=self.auto_leave,
        )

    def set_learner_flag(self, node_id: int, is_learner: bool) -> None:
        pr = self.progress[node_id]
        if pr.is_learner != is_learner:
            self.progress[node_id] = dataclasses.replace(pr, is_learner=is_learner)


class Changer:
    """Computes configurations; ``last_index`` is the log's last index, where new replicas are probed from."""

    def __init__(
        self, config: TrackerConfig, progress: dict[int, Progress], *, last_index: int, max_inflight_msgs: int
    ) -> None:
        self._config = config
        self._progress = progress
        self._last_index = last_index
        self._max_inflight = max_inflight_msgs

    def apply(self, cc: ConfChange) -> tuple[TrackerConfig, dict[int, Progress]]:
        """Dispatch on the kind of change; raises InvalidArgumentError if it is not allowed."""
        if cc.leaves_joint():
            return self.leave_joint()
        joint, auto_leave = cc.enters_joint()
        if joint:
            return self.enter_joint(auto_leave, cc.changes)
        return self.simple(cc.changes)

    def enter_joint(
        self, auto_leave: bool, changes: tuple[ConfChangeSingle, ...]
    ) -> tuple[TrackerConfig, dict[int, Progress]]:
        draft = self._draft()
        if draft.outgoing:
            raise InvalidArgumentError("conf change: configuration is already joint")
        if not draft.voters:
            raise InvalidArgumentError("conf change: cannot make a configuration without voters joint")
        draft.outgoing = set(draft.voters)
        self._apply_changes(draft, changes)
        draft.auto_leave = auto_leave
        return self._check(draft)

    def leave_joint(self) -> tuple[TrackerConfig, dict[int, Progress]]:
        draft = self._draft()
        if not draft.outgoing:
            raise InvalidArgumentError("conf change: cannot leave a configuration that is not joint")
        for node_id in draft.learners_next:
            draft.learners.add(node_id)
            draft.set_learner_flag(node_id, True)
        draft.learners_next = set()
        for node_id in draft.outgoing:
            if node_id not in draft.voters and node_id not in draft.learners:
                del draft.progress[node_id]
        draft.outgoing = set()
        draft.auto_leave = False
        return self._check(draft)

    def simple(self, changes: tuple[ConfChangeSingle, ...]) -> tuple[TrackerConfig, dict[int, Progress]]:
        draft = self._draft()
        if draft.outgoing:
            raise InvalidArgumentError("conf change: a simple change is not allowed in a joint configuration")
        self._apply_changes(draft, changes)
        changed = len(set(self._config.voters) ^ draft.voters)
        if changed > 1:
            raise InvalidArgumentError(
                f"conf change: {changed} voters changed at once; use a joint configuration (transition)"
            )
        return self._check(draft)

    # -- internals ------------------------------------------------------------------------------------------

    def _draft(self) -> _Draft:
        draft = _Draft(self._config, self._progress)
        _check_invariants(draft)
        return draft

    def _apply_changes(self, draft: _Draft, changes: tuple[ConfChangeSingle, ...]) -> None:
        for change in changes:
            if change.node_id <= 0:
                raise InvalidArgumentError(f"conf change: invalid replica id {change.node_id}")
            if change.type == ConfChangeType.ADD_VOTER:
                self._make_voter(draft, change.node_id)
            elif change.type == ConfChangeType.ADD_LEARNER:
                self._make_learner(draft, change.node_id)
            elif change.type == ConfChangeType.REMOVE:
                self._remove(draft, change.node_id)
            else:  # pragma: no cover - enum is closed
                raise InvalidArgumentError(f"conf change: unknown change type {change.type}")
        if not draft.voters:
            raise InvalidArgumentError("conf change: removes every voter")

    def _make_voter(self, draft: _Draft, node_id: int) -> None:
        if node_id not in draft.progress:
            self._init_progress(draft, node_id, is_learner=False)
            return
        draft.set_learner_flag(node_id, False)
        draft.learners.discard(node_id)
        draft.learners_next.discard(node_id)
        draft.voters.add(node_id)

    def _make_learner(self, draft: _Draft, node_id: int) -> None:
        if node_id not in draft.progress:
            self._init_progress(draft, node_id, is_learner=True)
            return
        if draft.progress[node_id].is_learner:
            return
        pr = draft.progress[node_id]
        self._remove(draft, node_id)
        draft.progress[node_id] = pr  # keep the progress
        if node_id in draft.outgoing:
            # Still a voter in the outgoing half: becomes a learner when the joint config is left.
            draft.learners_next.add(node_id)
        else:
            draft.set_learner_flag(node_id, True)
            draft.learners.add(node_id)

    def _remove(self, draft: _Draft, node_id: int) -> None:
        if node_id not in draft.progress:
            return
        draft.voters.discard(node_id)
        draft.learners.discard(node_id)
        draft.learners_next.discard(node_id)
        if node_id not in draft.outgoing:
            del draft.progress[node_id]

    def _init_progress(self, draft: _Draft, node_id: int, *, is_learner: bool) -> None:
        if is_learner:
            draft.learners.add(node_id)
        else:
            draft.voters.add(node_id)
        draft.progress[node_id] = Progress(
            match=0,
            next=max(self._last_index, 1),
            inflights=Inflights(self._max_inflight),
            is_learner=is_learner,
            # A new replica counts as active so check-quorum does not fire before it had a chance to answer.
            recent_active=True,
        )

    def _check(self, draft: _Draft) -> tuple[TrackerConfig, dict[int, Progress]]:
        _check_invariants(draft)
        return draft.freeze(), draft.progress


def _check_invariants(draft: _Draft) -> None:
    problems: list[str] = []
    for node_id in draft.voters | draft.outgoing | draft.learners | draft.learners_next:
        if node_id not in draft.progress:
            problems.append(f"no progress for {node_id}")
    for node_id in draft.learners_next:
        if node_id not in draft.outgoing:
            problems.append(f"{node_id} is in learners_next but not an outgoing voter")
        elif draft.progress[node_id].is_learner:
            problems.append(f"{node_id} is in learners_next but already marked as learner")
    for node_id in draft.learners:
        if node_id in draft.outgoing or node_id in draft.voters:
            problems.append(f"{node_id} is both a learner and a voter")
        elif node_id in draft.progress and not draft.progress[node_id].is_learner:
            problems.append(f"{node_id} is a learner but not marked as learner")
    if not draft.outgoing:
        if draft.learners_next:
            problems.append("learners_next must be empty outside a joint configuration")
        if draft.auto_leave:
            problems.append("auto_leave must be false outside a joint configuration")
    if problems:
        raise InvalidArgumentError("conf change: invalid configuration: " + "; ".join(problems))


def restore(cs: ConfState, *, last_index: int, max_inflight_msgs: int) -> tuple[TrackerConfig, dict[int, Progress]]:
    """The configuration and fresh progress map described by a persisted :class:`ConfState`."""
    config = TrackerConfig.from_conf_state(cs)
    progress: dict[int, Progress] = {}
    learners = config.learners
    for node_id in sorted(config.all_voters() | learners | config.learners_next):
        progress[node_id] = Progress(
            match=0,
            next=last_index + 1,
            inflights=Inflights(max_inflight_msgs),
            is_learner=node_id in learners,
            recent_active=True,
        )
    draft = _Draft(config, progress)
    _check_invariants(draft)
    return config, progress
