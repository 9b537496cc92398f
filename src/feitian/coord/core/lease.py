"""Session timing (NUWA-3): the numbers both sides use, and the client's lease as a pure object.

The server expires a session ``ttl_ms`` after the last heartbeat the leader received (or after a new leader
took over). The client measures from when it *sent* the newest acknowledged heartbeat, which is earlier, and
gives up after only ``client_lease_ms`` (2/3 of the TTL), so it always learns its session is lost before the
server expires it; the remaining third absorbs differences in clock rates. See ``docs/coord.md``.
"""

from __future__ import annotations

import enum

import msgspec

from feitian.base.units import MS_NS

__all__ = ["DEFAULT_SESSION_TTL_MS", "ClientLease", "LeaseState", "SessionTiming"]

DEFAULT_SESSION_TTL_MS = 8_000  # lock failover (TTL + expiry) stays under 10 s (seed: 锁failover在10s以内)


class SessionTiming(msgspec.Struct, frozen=True):
    """The derived intervals of a session with ``ttl_ms`` (integer milliseconds)."""

    ttl_ms: int

    @property
    def heartbeat_interval_ms(self) -> int:
        """How often the client sends a heartbeat while all is well."""
        return self.ttl_ms // 6

    @property
    def jeopardy_after_ms(self) -> int:
        """No acknowledgement for a heartbeat sent in this long: the session is in jeopardy."""
        return self.ttl_ms // 3

    @property
    def client_lease_ms(self) -> int:
        """No acknowledgement for a heartbeat sent in this long: the client considers the session lost."""
        return self.ttl_ms * 2 // 3


class LeaseState(enum.StrEnum):
    SAFE = "safe"
    JEOPARDY = "jeopardy"  # acknowledgements are late: warn, switch servers, heartbeat faster
    EXPIRED = "expired"  # the client must act as if the session, its ephemerals and its locks are gone


class ClientLease:
    """The client's view of its session, from its own monotonic clock.

    Call ``on_ack(sent_ns, now_ns)`` when the server acknowledges a heartbeat (or the session creation) that was
    sent at ``sent_ns``. Once expired the lease stays expired: create a new session.
    """

    def __init__(self, ttl_ms: int, sent_ns: int) -> None:
        self.timing = SessionTiming(ttl_ms)
        self.acked_sent_ns = sent_ns  # send time of the newest acknowledged request
        self._lost = False

    @property
    def jeopardy_at_ns(self) -> int:
        return self.acked_sent_ns + self.timing.jeopardy_after_ms * MS_NS

    @property
    def expires_at_ns(self) -> int:
        return self.acked_sent_ns + self.timing.client_lease_ms * MS_NS

    def state(self, now_ns: int) -> LeaseState:
        if self._lost or now_ns >= self.expires_at_ns:
            return LeaseState.EXPIRED
        if now_ns >= self.jeopardy_at_ns:
            return LeaseState.JEOPARDY
        return LeaseState.SAFE

    def on_ack(self, sent_ns: int, now_ns: int) -> LeaseState:
        """Extend the lease by an acknowledgement of a request sent at ``sent_ns``; returns the new state."""
        if self.state(now_ns) is LeaseState.EXPIRED:
            self._lost = True
            return LeaseState.EXPIRED
        self.acked_sent_ns = max(self.acked_sent_ns, min(sent_ns, now_ns))
        return self.state(now_ns)

    def on_session_expired(self) -> None:
        """The server answered SessionExpiredError."""
        self._lost = True

    def next_heartbeat_ns(self, last_sent_ns: int, now_ns: int) -> int:
        """When to send the next heartbeat: every interval, twice as often in jeopardy."""
        interval = self.timing.heartbeat_interval_ms * MS_NS
        if self.state(now_ns) is LeaseState.JEOPARDY:
            interval //= 2
        return last_sent_ns + max(interval, 1)
