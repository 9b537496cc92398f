"""ReadIndex bookkeeping on the leader: linearizable reads without writing the log (thesis §6.4).

A read request records the leader's commit index when it arrived; the leader then broadcasts a heartbeat
carrying the request's context. Once a quorum has acknowledged that heartbeat, the leader knows it was still
leader when the request arrived, so the recorded index is at least as large as any write acknowledged before
the read started. Requests are answered in arrival order: a quorum ack for a later request confirms all
earlier ones too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec


class ReadState(msgspec.Struct, frozen=True):
    """A confirmed read: serve the read named ``context`` once the state machine has applied ``index``."""

    index: int
    context: bytes


@dataclass(slots=True)
class ReadIndexStatus:
    index: int
    context: bytes
    from_id: int  # who asked: this replica, or a follower that forwarded it
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    def __init__(self) -> None:
        self._pending: dict[bytes, ReadIndexStatus] = {}
        self._queue: list[bytes] = []

    def __len__(self) -> int:
        return len(self._queue)

    def add_request(self, index: int, context: bytes, from_id: int) -> bool:
        """Start confirming a read; False if one with the same context is pending already."""
        if context in self._pending:
            return False
        self._pending[context] = ReadIndexStatus(index=index, context=context, from_id=from_id)
        self._queue.append(context)
        return True

    def recv_ack(self, node_id: int, context: bytes) -> dict[int, bool] | None:
        """Record that ``node_id`` acknowledged the heartbeat for ``context``; the acks so far (None if unknown)."""
        status = self._pending.get(context)
        if status is None:
            return None
        status.acks[node_id] = True
        return status.acks

    def advance(self, context: bytes) -> list[ReadIndexStatus]:
        """Pop and return every request up to and including ``context`` (all confirmed by its quorum)."""
        if context not in self._pending:
            return []
        position = self._queue.index(context)
        done_contexts = self._queue[: position + 1]
        del self._queue[: position + 1]
        return [self._pending.pop(c) for c in done_contexts]

    def last_pending_context(self) -> bytes:
        return self._queue[-1] if self._queue else b""
