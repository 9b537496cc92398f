"""The state machine the replica driver applies to: Nuwa's core plus what the service must learn per entry.

:class:`AppliedFeed` implements the driver's ``StateMachine`` protocol around one
:class:`~feitian.coord.core.CoordStateMachine`. After every applied entry it tells the leader's
:class:`~feitian.coord.core.SessionTracker` which sessions started and ended (``observe``, a no-op on followers),
and wakes the long polls of subscribers when the revision moved. The proposer receives the whole
:class:`~feitian.coord.core.Applied` record (result, events, duplicate flag).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from feitian.base.clock import Clock
from feitian.coord.core import Applied, CoordStateMachine, SessionTracker
from feitian.coord.core.snapshot import Restored

__all__ = ["AppliedFeed"]


class AppliedFeed:
    def __init__(self, sm: CoordStateMachine, tracker: SessionTracker, clock: Clock) -> None:
        self.sm = sm
        self.tracker = tracker
        self.clock = clock
        self._waiters: set[asyncio.Future[None]] = set()

    # -- the StateMachine protocol ---------------------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> Applied:
        before = self.sm.revision
        self.sm.apply(index, data)
        applied = self.sm.last_applied
        self.tracker.observe(applied, self.clock.monotonic_ns())
        if self.sm.revision != before:
            self._notify()
        return applied

    def snapshot(self) -> bytes:
        return self.sm.snapshot()

    def restore(self, data: bytes) -> None:
        self.install(self.prepare_restore(data))

    def prepare_restore(self, data: bytes) -> Restored:
        """Decode a snapshot into a new state (on a worker thread: the driver's ``PreparedRestore``)."""
        return self.sm.prepare_restore(data)

    def release(self) -> Iterator[None]:
        return self.sm.release()

    def install(self, restored: Restored) -> None:
        self.sm.install(restored)
        if self.tracker.active:  # only followers install snapshots; a leader would have to take over again
            self.tracker.step_down()
        self._notify()

    # -- waiting for changes ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_changed(self, revision: int, timeout_s: float) -> bool:
        """Wait until the revision differs from ``revision`` (True) or ``timeout_s`` passes (False). A waiter
        wakes in the event-loop step after the change is applied (one future per waiter, no extra task); the
        number of waiters is bounded by the watch lane's concurrency."""
        if self.sm.revision != revision:
            return True
        if timeout_s <= 0:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(timeout_s, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)
        return self.sm.revision != revision


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
