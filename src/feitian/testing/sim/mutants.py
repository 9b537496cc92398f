"""Deliberately broken variants of the consensus core, for showing that the simulator's checks catch them.

A mutant replaces one piece of the real code for the length of one simulation run (``applied``); it is never
used outside the simulator. ``python -m feitian.testing.sim consensus --mutant NAME`` runs one.

* ``colliding-reads``: the ReadIndex bookkeeping as it was before it keyed reads by the leader's own rounds.
  Pending reads are keyed by the requester's context and a heartbeat echoes that context, so a reply to an
  earlier round carrying the same bytes — delayed, duplicated, or from before a pause — confirms a later read;
  and the requesters number their reads 1, 2, 3... from their last start, so equal contexts are common.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

from feitian.consensus import ReadIndexStatus, VoteFn, VoteResult
from feitian.consensus import raft as raft_module
from feitian.errors import InvalidArgumentError

COLLIDING_READS = "colliding-reads"
MUTANTS = (COLLIDING_READS,)


class CollidingReadOnly:
    """The old ``ReadOnly``: keyed by the requester's context; acknowledgements count whenever they arrive."""

    def __init__(self) -> None:
        self._pending: dict[bytes, ReadIndexStatus] = {}
        self._acks: dict[bytes, dict[int, bool]] = {}
        self._queue: list[bytes] = []

    def __len__(self) -> int:
        return len(self._queue)

    def add_request(self, index: int, context: bytes, from_id: int) -> bytes | None:
        if context in self._pending:
            return None  # silently dropped: the requester waits out its timeout
        self._pending[context] = ReadIndexStatus(index=index, context=context, from_id=from_id, round=0)
        self._acks[context] = {}
        self._queue.append(context)
        return context

    def heartbeat_context(self) -> bytes:
        return self._queue[-1] if self._queue else b""

    def recv_ack(self, node_id: int, context: bytes, vote_result: VoteFn) -> list[ReadIndexStatus]:
        acks = self._acks.get(context)
        if acks is None:
            return []
        acks[node_id] = True
        if vote_result(acks) != VoteResult.WON:
            return []
        position = self._queue.index(context)
        done, self._queue = self._queue[: position + 1], self._queue[position + 1 :]
        for c in done:
            self._acks.pop(c, None)
        return [self._pending.pop(c) for c in done]


@contextlib.contextmanager
def applied(name: str | None) -> Iterator[None]:
    """Run the block with mutant ``name`` in place of the real code (nothing when ``name`` is None)."""
    if name is None:
        yield
        return
    if name != COLLIDING_READS:
        raise InvalidArgumentError(f"unknown mutant {name!r}; known: {', '.join(MUTANTS)}")
    with mock.patch.object(raft_module, "ReadOnly", CollidingReadOnly):
        yield
