"""The leader's side of sessions (NUWA-3): taking over, heartbeats, expiry — the driver checklist of docs/coord.md.

It runs on the replicated-service kit's leadership duties (:class:`feitian.replica.LeaderDuties`):

1. the duties propose ``StartLeaderTerm(epoch=T)`` on becoming leader of term T; once that entry has applied,
   every entry of earlier leaders has too, and (``on_ready``) the :class:`SessionTracker` starts with every live
   session at a full TTL from that moment. On losing leadership (or a new term) the duties call
   ``step_down()``;
2. ``AppliedFeed`` reports every applied entry to the tracker (sessions started and ended);
3. :meth:`heartbeat` checks the session's owner, extends its deadline, confirms leadership with a ReadIndex
   round that began after the heartbeat arrived, and only then answers — a deposed leader that does not know it
   yet never extends a client's lease;
4. a leader-only task (:meth:`run`) proposes ``ExpireSessions`` at the tracker's next deadline; if that proposal
   fails while still leader, the sessions are due again (``expiry_failed``).

``ExpireSessions`` and ``StartLeaderTerm`` are proposed only here: no client request can carry them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from feitian.base.clock import StallAdjustedClock
from feitian.base.units import SECOND_NS
from feitian.coord.core import (
    CoordStateMachine,
    ExpireSessions,
    SessionTracker,
    StartLeaderTerm,
    encode_command,
)
from feitian.coord.messages import HeartbeatReply
from feitian.errors import FeitianError, PermissionDeniedError
from feitian.replica import LeaderDuties

log = logging.getLogger(__name__)

EXPIRY_POLL_S = 0.05  # the expiry loop wakes at least this often (a stall is seen within about this long)
STALL_LOG_NS = 200_000_000  # stalls longer than this are logged


def start_leader_term(term: int) -> bytes:
    """The start-of-term entry the duties propose."""
    return encode_command(StartLeaderTerm(epoch=term))


class LeaderSessions:
    def __init__(
        self, duties: LeaderDuties, sm: CoordStateMachine, tracker: SessionTracker, clock: StallAdjustedClock
    ) -> None:
        self.duties = duties
        self.replica = duties.replica
        self.sm = sm
        self.tracker = tracker
        # Session time, shared with the AppliedFeed: it stands still while this process's event loop was stalled,
        # which only the run loop below can see (StallAdjustedClock.woke).
        self.clock = clock
        self._wake = asyncio.Event()
        self._expiring: set[asyncio.Task[None]] = set()
        self.expired_sessions = 0  # sessions this replica expired while leader
        self.polls = 0  # iterations of the run loop
        duties.on_ready(self._became_ready)
        duties.on_step_down(self._stepped_down)
        duties.add_task(self.run)

    def _became_ready(self, term: int) -> None:
        self.tracker.become_leader(term, self.sm.session_ttls(), self.clock.monotonic_ns())
        log.info("coord: leader of term %d tracks %d session(s)", term, len(self.tracker))

    def _stepped_down(self) -> None:
        if self.tracker.active:
            log.info("coord: stepping down from session tracking (epoch %d)", self.tracker.epoch)
        self.tracker.step_down()

    # -- the expiry loop (a leader-only task) ------------------------------------------------------------------

    async def run(self) -> None:
        real = self.clock.clock
        try:
            while True:
                self._expire_due()
                self.polls += 1
                timeout = EXPIRY_POLL_S
                deadline = self.tracker.next_deadline_ns() if self.tracker.active else None
                if deadline is not None:
                    timeout = min(timeout, max(0.0, (deadline - self.clock.monotonic_ns()) / SECOND_NS))
                intended = real.monotonic_ns() + int(timeout * SECOND_NS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                if not self._wake.is_set():  # the timer fired: was it late? (a stall counts before any expiry)
                    stalled = self.clock.woke(intended)
                    if stalled > STALL_LOG_NS:
                        log.warning(
                            "coord: the event loop stalled for %.0f ms; session deadlines move on by as much",
                            stalled / 1e6,
                        )
                self._wake.clear()
        finally:
            for task in list(self._expiring):
                task.cancel()
            await asyncio.gather(*self._expiring, return_exceptions=True)

    def _expire_due(self) -> None:
        command = self.tracker.due(self.clock.monotonic_ns())
        if command is not None:
            task = asyncio.get_running_loop().create_task(self._expire(command))
            self._expiring.add(task)
            task.add_done_callback(self._expiring.discard)

    async def _expire(self, command: ExpireSessions) -> None:
        try:
            await self.replica.propose(encode_command(command))
        except FeitianError as exc:
            log.warning("coord: expiring sessions %s failed: %s", command.session_ids, exc.message)
            if self.tracker.active and self.tracker.epoch == command.epoch:
                self.tracker.expiry_failed(command.session_ids)
            return
        self.expired_sessions += len(command.session_ids)
        log.info("coord: expired session(s) %s", ", ".join(f"{s:#x}" for s in command.session_ids))

    # -- heartbeats ------------------------------------------------------------------------------------------

    async def heartbeat(self, session_id: int, principal: str, timeout_s: float) -> HeartbeatReply:
        arrived_ns = self.clock.monotonic_ns()
        what = f"heartbeat {session_id:#x}"
        # Until the tracker is active (this leader has applied its StartLeaderTerm entry, so every session
        # committed before it) a session missing from the state machine may only be one it has not applied yet:
        # the answer is "not the leader yet", never "expired".
        if not self.replica.is_leader or not self.tracker.active:
            raise self.duties.not_leader(what)
        owner = self.sm.session_owner(session_id)  # SessionExpiredError when it is gone
        if owner != principal:
            raise PermissionDeniedError(f"{what}: the session belongs to another principal", session_id=session_id)
        ttl_ms = self.tracker.heartbeat(session_id, arrived_ns)
        epoch = self.tracker.epoch
        # Confirm leadership with a ReadIndex round that starts now, after the heartbeat arrived.
        await self.replica.read_barrier(timeout=timeout_s)
        node = self.replica.node
        if not (
            self.replica.is_leader
            and node is not None
            and node.term == epoch
            and self.tracker.active
            and self.tracker.epoch == epoch
        ):
            raise self.duties.not_leader(what)
        return HeartbeatReply(session_id=session_id, ttl_ms=ttl_ms, epoch=epoch)
