"""ReadIndex bookkeeping on the leader: linearizable reads without writing the log (thesis §6.4).

A read request records the leader's commit index when it arrived; the leader then broadcasts a heartbeat,
and once a quorum has acknowledged a heartbeat *sent after the request was registered*, the leader knows it was
still leader when the request arrived, so the recorded index is at least as large as any write acknowledged
before the read started.

The leader never keys its bookkeeping by the requesters' contexts (two replicas may well use the same bytes):
each request gets a *round* number of this leader's own, increasing within its term, and every heartbeat carries
the newest round (as ``ROUND_CONTEXT_BYTES`` big-endian bytes). A reply echoing round ``k`` acknowledges every
request of round ``<= k``: those were registered before that heartbeat left. An acknowledgement of an earlier
heartbeat — delayed, duplicated, or from before a pause — carries a smaller round and so can never confirm a
later request. Replies of another term never get here (the core drops messages of other terms), and a new term
starts a new ``ReadOnly``. Requests are confirmed in round order, which is arrival order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from feitian.consensus.quorum import VoteResult

# Heartbeat contexts are round numbers in this many big-endian bytes.
ROUND_CONTEXT_BYTES = 8
# Bound on the reads a leader confirms at once; a request beyond it is dropped (its requester times out and
# retries). Drivers share rounds between concurrent reads, so a replica has only one or two pending at a time.
MAX_PENDING_READS = 4096


class ReadState(msgspec.Struct, frozen=True):
    """A confirmed read: serve the read named ``context`` once the state machine has applied ``index``."""

    index: int
    context: bytes


@dataclass(slots=True)
class ReadIndexStatus:
    index: int  # the leader's commit index when the request arrived
    context: bytes  # the requester's name for the read, echoed back to it
    from_id: int  # who asked: this replica, or a follower that forwarded it
    round: int  # this leader's number for the request


VoteFn = Callable[[dict[int, bool]], VoteResult]


def encode_round(round_: int) -> bytes:
    return round_.to_bytes(ROUND_CONTEXT_BYTES, "big")


def decode_round(context: bytes) -> int | None:
    """The round a heartbeat context names, or None if it is not one (an older leader's format, garbage)."""
    if len(context) != ROUND_CONTEXT_BYTES:
        return None
    return int.from_bytes(context, "big")


class ReadOnly:
    def __init__(self, max_pending: int = MAX_PENDING_READS) -> None:
        self._max_pending = max_pending
        self._queue: deque[ReadIndexStatus] = deque()
        self._last_round = 0
        self._acked: dict[int, int] = {}  # replica id -> newest round it acknowledged

    def __len__(self) -> int:
        return len(self._queue)

    def add_request(self, index: int, context: bytes, from_id: int) -> bytes | None:
        """Register a read; returns the heartbeat context that confirms it, or None if the bound is reached."""
        if len(self._queue) >= self._max_pending:
            return None
        self._last_round += 1
        self._queue.append(ReadIndexStatus(index=index, context=context, from_id=from_id, round=self._last_round))
        return encode_round(self._last_round)

    def heartbeat_context(self) -> bytes:
        """What a heartbeat sent now carries: the newest round while reads are pending, else nothing."""
        return encode_round(self._last_round) if self._queue else b""

    def recv_ack(self, node_id: int, context: bytes, vote_result: VoteFn) -> list[ReadIndexStatus]:
        """``node_id`` answered a heartbeat carrying ``context``; returns the requests now confirmed by a quorum
        (``vote_result`` decides what a quorum is), in arrival order."""
        round_ = decode_round(context)
        if round_ is None or round_ > self._last_round or round_ <= self._acked.get(node_id, 0):
            return []  # not ours, or it adds nothing to what this replica acknowledged already
        self._acked[node_id] = round_
        confirmed: list[ReadIndexStatus] = []
        while self._queue:
            head = self._queue[0].round
            votes = {voter: True for voter, acked in self._acked.items() if acked >= head}
            if vote_result(votes) != VoteResult.WON:
                break
            confirmed.append(self._queue.popleft())
        return confirmed
