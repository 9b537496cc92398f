"""The state machine the replica driver applies to: Nuwa's core plus what the service must learn per entry.

:class:`AppliedFeed` implements the driver's ``StateMachine`` protocol around one
:class:`~feitian.coord.core.CoordStateMachine`. After every applied entry it tells the leader's
:class:`~feitian.coord.core.SessionTracker` which sessions started and ended (``observe``, a no-op on followers),
and wakes the long polls of subscribers when the revision moved. The proposer receives the whole
:class:`~feitian.coord.core.Applied` record (result, events, duplicate flag).
"""

from __future__ import annotations

import asyncio
import contextlib

from feitian.base.clock import Clock
from feitian.coord.core import Applied, CoordStateMachine, SessionTracker

__all__ = ["AppliedFeed"]


class AppliedFeed:
    def __init__(self, sm: CoordStateMachine, tracker: SessionTracker, clock: Clock) -> None:
        self.sm = sm
        self.tracker = tracker
        self.clock = clock
        self._changed: asyncio.Event | None = None

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
        self.sm.restore(data)
        if self.tracker.active:  # only followers install snapshots; a leader would have to take over again
            self.tracker.step_down()
        self._notify()

    # -- waiting for changes ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def wait_changed(self, revision: int, timeout_s: float) -> bool:
        """Wait until the revision differs from ``revision`` (True) or ``timeout_s`` passes (False)."""
        if self.sm.revision != revision:
            return True
        if timeout_s <= 0:
            return False
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout_s)
        return self.sm.revision != revision
