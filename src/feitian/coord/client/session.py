"""A Nuwa client's session (NUWA-3): the lease, jeopardy, and the guarantee that the client knows first.

A :class:`Session` is kept alive by a task that heartbeats the leader. Its :class:`ClientLease` (``core/lease.py``)
counts from when the newest *acknowledged* heartbeat was **sent**, on this process's monotonic clock:

========== ================ ===========================================================================
state      since that send  what happens
========== ================ ===========================================================================
SAFE       < ttl/3          heartbeat every ttl/6
JEOPARDY   ttl/3 … 2/3·ttl  listeners are told; heartbeat every ttl/12; each failed attempt moves to
                            another replica (connection management is separate from the session)
EXPIRED    ≥ 2/3·ttl        the session is lost for good: listeners are told, ``lost`` is set, every lock
                            and leadership held under it is given up; a new session is made on demand
========== ================ ===========================================================================

The server expires a session ``ttl`` after the last heartbeat the leader *received* (or after a new leader
took over), which is later than the send, so the client always gives up first. A SessionExpiredError from the
server (it did expire the session) loses it at once too. The client never revives a lost session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from feitian.base.clock import Clock
from feitian.base.units import SECOND_NS
from feitian.coord.core import ClientLease, LeaseState, SessionTiming
from feitian.coord.messages import CloseSessionRequest, HeartbeatRequest
from feitian.errors import (
    FeitianError,
    PermissionDeniedError,
    SessionExpiredError,
)
from feitian.replica import Router

log = logging.getLogger(__name__)

__all__ = ["Session"]

MIN_ATTEMPT_S = 0.1  # the shortest wait for one heartbeat's answer

StateListener = Callable[["Session", LeaseState], None]


class Session:
    """A live (or lost) session. Made by ``CoordClient.session()``; see the module docstring."""

    def __init__(self, router: Router, session_id: int, ttl_ms: int, sent_ns: int, clock: Clock) -> None:
        self.router = router
        self.session_id = session_id
        self.ttl_ms = ttl_ms
        self.timing = SessionTiming(ttl_ms)
        self.clock = clock
        self.lease = ClientLease(ttl_ms, sent_ns)
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.heartbeats_sent = 0
        self.heartbeats_acked = 0
        self._state = LeaseState.SAFE
        self._listeners: list[StateListener] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Session({self.session_id:#x}, ttl_ms={self.ttl_ms}, state={self.state.value})"

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def state(self) -> LeaseState:
        if self.lost.is_set():
            return LeaseState.EXPIRED
        return self.lease.state(self.clock.monotonic_ns())

    @property
    def alive(self) -> bool:
        return self.state is not LeaseState.EXPIRED

    def check(self) -> None:
        """Raise SessionExpiredError if the session is lost (its ephemerals and locks are gone)."""
        if not self.alive:
            self._lose(self.lost_reason or "no heartbeat was acknowledged within the client lease")
            raise SessionExpiredError(
                f"session {self.session_id:#x}: lost ({self.lost_reason})",
                session_id=self.session_id,
                hint="its ephemeral nodes and locks are gone; operations start a new session",
            )

    def on_state_change(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener(session, state)`` on every change of state (SAFE, JEOPARDY, EXPIRED); returns an
        unsubscribe function. A listener added after the loss is called at once."""
        self._listeners.append(listener)
        if self.lost.is_set():
            listener(self, LeaseState.EXPIRED)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    async def wait_lost(self) -> None:
        await self.lost.wait()

    def _publish(self, state: LeaseState) -> None:
        if state is self._state:
            return
        self._state = state
        if state is LeaseState.JEOPARDY:
            log.warning(
                "nuwa session %#x in jeopardy: no heartbeat acknowledged for %d ms; trying other replicas",
                self.session_id,
                self.timing.jeopardy_after_ms,
            )
        for listener in list(self._listeners):
            try:
                listener(self, state)
            except Exception:  # a listener's bug must not stop the keeper
                log.exception("session state listener failed")

    def _lose(self, reason: str, *, closing: bool = False) -> None:
        if self.lost.is_set():
            return
        self.lease.on_session_expired()
        self.lost_reason = reason
        self.lost.set()
        log.log(logging.INFO if closing else logging.WARNING, "nuwa session %#x ended: %s", self.session_id, reason)
        self._publish(LeaseState.EXPIRED)

    # -- the keeper ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep(), name=f"nuwa-session-{self.session_id}")

    async def _keep(self) -> None:
        last_sent = self.lease.acked_sent_ns
        try:
            while not self.lost.is_set():
                now = self.clock.monotonic_ns()
                state = self.lease.state(now)
                self._publish(state)
                if state is LeaseState.EXPIRED:
                    self._lose(f"no heartbeat acknowledged within the client lease of {self.timing.client_lease_ms} ms")
                    break
                due = self.lease.next_heartbeat_ns(last_sent, now)
                if now < due:
                    wake = min(due, self.lease.jeopardy_at_ns if state is LeaseState.SAFE else self.lease.expires_at_ns)
                    await self.clock.sleep_until_ns(wake)
                    continue
                last_sent = await self._heartbeat()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: the session cannot be kept, so it must be treated as lost
            log.exception("nuwa session keeper failed")
            self._lose(f"keeper failed: {exc!r}")
        if self.lost.is_set() and not self._closed:
            await self._close_quietly()

    async def _heartbeat(self) -> int:
        sent = self.clock.monotonic_ns()
        remaining_s = max(MIN_ATTEMPT_S, (self.lease.expires_at_ns - sent) / SECOND_NS)
        # One attempt may take up to a heartbeat interval (a busy leader answers late, and an answer is worth
        # having as long as the lease lasts); then the router tries another replica, until the lease runs out.
        attempt_s = max(MIN_ATTEMPT_S, min(self.timing.heartbeat_interval_ms / 1000, remaining_s))
        self.heartbeats_sent += 1
        try:
            await self.router.call(
                HeartbeatRequest(self.session_id), leader=True, timeout_s=remaining_s, attempt_timeout_s=attempt_s
            )
        except SessionExpiredError as exc:
            self._lose(f"the service expired it: {exc.message}")
        except PermissionDeniedError as exc:
            self._lose(f"the service refused it: {exc.message}")
        except FeitianError as exc:
            log.info("nuwa session %#x: heartbeat unanswered: %s", self.session_id, exc.message)
        else:
            self.heartbeats_acked += 1
            state = self.lease.on_ack(sent, self.clock.monotonic_ns())
            if state is LeaseState.EXPIRED:
                self._lose("a heartbeat was acknowledged after the client lease had run out")
            else:
                self._publish(state)
        return sent

    async def _close_quietly(self) -> None:
        """Tell the service the session is over (best effort: its locks go sooner than at expiry)."""
        with contextlib.suppress(FeitianError):
            await self.router.call(
                CloseSessionRequest(session_id=self.session_id), leader=True, timeout_s=self.ttl_ms / 1000
            )

    async def close(self) -> None:
        """End the session now: the service deletes its ephemeral nodes (and so releases its locks)."""
        if self._closed:
            return
        self._closed = True
        self._lose("closed by the client", closing=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close_quietly()
