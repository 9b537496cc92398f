"""The leader's session deadlines (NUWA-3): pure, with the time passed in.

Heartbeats go to the leader only and are never logged. The leader keeps each session's deadline here and, when
one passes, proposes :class:`ExpireSessions`; the state machine then deletes the session's ephemerals at one
revision. After a leader change the new leader knows no heartbeat times, so it gives every session a full TTL
from the moment it took over (ZooKeeper's approach): a session can only live longer than its TTL, never less.

Driver contract (see ``docs/coord.md``):

1. On becoming leader, propose ``StartLeaderTerm(epoch=term)``; when it has applied, call
   ``become_leader(epoch, state.session_ttls(), now_ns)``. Until then the driver refuses heartbeats itself (the
   replicated-service kit's NotLeaderError); ``heartbeat`` on an inactive tracker is a driver bug.
2. After every applied command, call ``observe(state.last_applied, now_ns)``.
3. Answer a heartbeat only after ``heartbeat()`` accepted it *and* a leadership confirmation (ReadIndex) that
   started after it arrived has succeeded; a deposed leader must never extend a client's lease.
4. Whenever ``due(now_ns)`` returns a command, propose it; if the proposal fails while still leader, call
   ``expiry_failed(ids)``. Wake up at ``next_deadline_ns()``.
5. On losing leadership call ``step_down()``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from feitian.base.units import MS_NS
from feitian.coord.core.commands import ExpireSessions
from feitian.coord.core.state import Applied
from feitian.errors import InternalError, SessionExpiredError

__all__ = ["SessionTracker"]


class SessionTracker:
    def __init__(self, *, max_expire_batch: int = 1_024) -> None:
        self.max_expire_batch = max_expire_batch
        self.active = False
        self.epoch = 0
        self._deadlines: dict[int, int] = {}  # session id -> deadline (ns)
        self._ttl_ms: dict[int, int] = {}
        self._expiring: set[int] = set()  # proposed for expiry, not yet applied
        self._heap: list[tuple[int, int]] = []  # (deadline, session id); stale entries are skipped

    def __len__(self) -> int:
        return len(self._deadlines)

    def become_leader(self, epoch: int, sessions: Iterable[tuple[int, int]], now_ns: int) -> None:
        """Start tracking ``(session id, ttl_ms)`` pairs, each with a full TTL from ``now_ns``."""
        self.step_down()
        self.active, self.epoch = True, epoch
        for session_id, ttl_ms in sessions:
            self._start(session_id, ttl_ms, now_ns)

    def step_down(self) -> None:
        self.active = False
        self._deadlines.clear()
        self._ttl_ms.clear()
        self._expiring.clear()
        self._heap.clear()

    def observe(self, applied: Applied, now_ns: int) -> None:
        """Follow the session changes of an applied command (a no-op when not leader)."""
        if not self.active:
            return
        for session_id, ttl_ms in applied.sessions_started:
            self._start(session_id, ttl_ms, now_ns)
        for session_id in applied.sessions_ended:
            self._deadlines.pop(session_id, None)
            self._ttl_ms.pop(session_id, None)
            self._expiring.discard(session_id)

    def heartbeat(self, session_id: int, now_ns: int) -> int:
        """Extend ``session_id`` to ``now_ns`` + its TTL and return the TTL (ms). SessionExpiredError when the
        session is unknown, past its deadline or being expired; InternalError when not tracking (the driver refuses
        a heartbeat as "not the leader" before it gets here)."""
        if not self.active:
            raise InternalError("heartbeat: the session tracker is not active (the driver must check first)")
        deadline = self._deadlines.get(session_id)
        if deadline is None:
            raise SessionExpiredError(f"heartbeat: session {session_id:#x} does not exist", session_id=session_id)
        if session_id in self._expiring or now_ns >= deadline:
            raise SessionExpiredError(f"heartbeat: session {session_id:#x} has expired", session_id=session_id)
        ttl_ms = self._ttl_ms[session_id]
        self._set_deadline(session_id, now_ns + ttl_ms * MS_NS)
        return ttl_ms

    def due(self, now_ns: int) -> ExpireSessions | None:
        """The sessions whose deadline has passed (at most ``max_expire_batch``, earliest first), as a command to
        propose; they are marked expiring and not returned again unless ``expiry_failed``."""
        if not self.active:
            return None
        out: list[int] = []
        while self._heap and self._heap[0][0] <= now_ns and len(out) < self.max_expire_batch:
            deadline, session_id = heapq.heappop(self._heap)
            if self._deadlines.get(session_id) == deadline and session_id not in self._expiring:
                self._expiring.add(session_id)
                out.append(session_id)
        return ExpireSessions(session_ids=tuple(out), epoch=self.epoch) if out else None

    def expiry_failed(self, session_ids: Iterable[int]) -> None:
        """A proposed expiry did not commit: those sessions are due again."""
        for session_id in session_ids:
            if session_id in self._expiring:
                self._expiring.discard(session_id)
                heapq.heappush(self._heap, (self._deadlines[session_id], session_id))

    def next_deadline_ns(self) -> int | None:
        """When ``due`` next has something to return (None: nothing tracked)."""
        while self._heap:
            deadline, session_id = self._heap[0]
            if self._deadlines.get(session_id) == deadline and session_id not in self._expiring:
                return deadline
            heapq.heappop(self._heap)
        return None

    def deadline_ns(self, session_id: int) -> int | None:
        return self._deadlines.get(session_id)

    def _start(self, session_id: int, ttl_ms: int, now_ns: int) -> None:
        self._ttl_ms[session_id] = ttl_ms
        self._expiring.discard(session_id)
        self._set_deadline(session_id, now_ns + ttl_ms * MS_NS)

    def _set_deadline(self, session_id: int, deadline: int) -> None:
        self._deadlines[session_id] = deadline
        heapq.heappush(self._heap, (deadline, session_id))
        if len(self._heap) > 2 * len(self._deadlines) + 64:  # drop stale entries left by heartbeats
            self._heap = [(d, s) for s, d in self._deadlines.items() if s not in self._expiring]
            heapq.heapify(self._heap)
