"""The replicated session table (NUWA-3): which sessions exist, their TTL and owner.

Only creation, close and expiry are replicated. Heartbeats are not: the leader's :class:`SessionTracker`
(``tracker.py``) keeps the deadlines and proposes ``ExpireSessions`` when one passes.
"""

from __future__ import annotations

import msgspec

from feitian.coord.core.limits import CoordLimits
from feitian.errors import OverloadedError, PermissionDeniedError, SessionExpiredError

__all__ = ["SessionRecord", "SessionTable"]


class SessionRecord(msgspec.Struct, frozen=True, array_like=True):
    session_id: int
    ttl_ms: int
    owner: str  # the principal that created it; only it may use or close the session


class SessionTable:
    def __init__(self, limits: CoordLimits) -> None:
        self.limits = limits
        self.sessions: dict[int, SessionRecord] = {}
        self.next_id = 1  # ids are never reused

    def __contains__(self, session_id: int) -> bool:
        return session_id in self.sessions

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, session_id: int) -> SessionRecord | None:
        return self.sessions.get(session_id)

    def create(self, owner: str, ttl_ms: int) -> SessionRecord:
        if len(self.sessions) >= self.limits.max_sessions:
            raise OverloadedError(f"create session: {len(self.sessions)} sessions are open (the limit)")
        record = SessionRecord(self.next_id, ttl_ms, owner)
        self.sessions[record.session_id] = record
        self.next_id += 1
        return record

    def require(self, op: str, session_id: int, principal: str) -> SessionRecord:
        """The live session ``session_id`` if ``principal`` owns it."""
        record = self.sessions.get(session_id)
        if record is None:
            state = "never existed" if session_id >= self.next_id else "expired or was closed"
            raise SessionExpiredError(f"{op}: session {session_id:#x} {state}", session_id=session_id)
        if record.owner != principal:
            raise PermissionDeniedError(
                f"{op}: session {session_id:#x} belongs to another principal", session_id=session_id
            )
        return record

    def remove(self, session_id: int) -> SessionRecord | None:
        return self.sessions.pop(session_id, None)
