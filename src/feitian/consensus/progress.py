"""What the leader knows about each follower's log, and the flow control of AppendEntries to it.

A follower's :class:`Progress` is in one of three states (as in etcd-io/raft):

* ``PROBE``: the leader does not know where the follower's log ends. It sends one AppendEntries at a time and
  waits for the answer (or the next heartbeat reply) before sending another; rejections walk ``next`` back
  using the follower's conflict hint (paper §5.3, "fast backtracking").
* ``REPLICATE``: the follower is known to match up to ``match``. The leader streams AppendEntries
  optimistically (pipelining), advancing ``next`` as it sends, bounded by :class:`Inflights` — at most
  ``max_inflight_msgs`` unacknowledged AppendEntries per follower.
* ``SNAPSHOT``: the entries the follower needs are compacted away; an InstallSnapshot is in flight and nothing
  else is sent until it is acknowledged, reported (``report_snapshot``) or times out.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from feitian.errors import InternalError


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The last index of each AppendEntries sent but not yet acknowledged, oldest first; at most ``capacity``."""

    __slots__ = ("_capacity", "_indexes")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._indexes: deque[int] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._indexes)

    def full(self) -> bool:
        return len(self._indexes) >= self._capacity

    def add(self, last_index: int) -> None:
        if self.full():
            raise InternalError(f"inflights: window of {self._capacity} messages is full")
        if self._indexes and last_index < self._indexes[-1]:
            raise InternalError(f"inflights: index {last_index} below {self._indexes[-1]}")
        self._indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget every message whose last index is <= ``index`` (they are acknowledged)."""
        while self._indexes and self._indexes[0] <= index:
            self._indexes.popleft()

    def free_first_one(self) -> None:
        if self._indexes:
            self._indexes.popleft()

    def reset(self) -> None:
        self._indexes.clear()


@dataclass(slots=True)
class Progress:
    """Invariant: ``match < next``. ``match`` only grows while the leader keeps its term."""

    match: int
    next: int
    inflights: Inflights
    is_learner: bool = False
    state: ProgressState = ProgressState.PROBE
    # The index of the snapshot in flight (SNAPSHOT state), to resume probing after it.
    pending_snapshot: int = 0
    # Heard from this follower since the last check-quorum round.
    recent_active: bool = False
    # PROBE only: a probe is in flight; wait for its answer or the next heartbeat reply.
    msg_app_flow_paused: bool = False
    # Leader ticks spent in SNAPSHOT state; past a bound the snapshot is presumed lost.
    snapshot_ticks: int = field(default=0)

    def _reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            # Probe from the snapshot's index: the follower probably has it now.
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged ``index``; True if that is news."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.msg_app_flow_paused = False
        self.next = max(self.next, index + 1)
        return updated

    def on_entries_sent(self, count: int, last_index: int) -> None:
        """An AppendEntries carrying ``count`` entries up to ``last_index`` went out."""
        if self.state == ProgressState.REPLICATE:
            if count > 0:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            if count > 0:
                self.msg_app_flow_paused = True
        else:
            raise InternalError(f"sending entries in state {self.state}")

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an AppendEntries whose previous index was ``rejected``.

        ``match_hint`` is the leader's guess of the largest index the logs may share. False if the rejection is
        stale (an answer to an older message).
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        # Probing sends one message at a time: anything but an answer to the last probe is stale.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.msg_app_flow_paused = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader must hold back AppendEntries to this follower."""
        if self.state == ProgressState.PROBE:
            return self.msg_app_flow_paused
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True
