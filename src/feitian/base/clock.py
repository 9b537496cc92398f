"""Injected time and randomness (ARCHITECTURE.md, Invariants: pure cores get time and randomness injected).

Pure cores never read a clock: they take ``now_ns`` as an argument. Drivers get a :class:`Clock` from their
constructor and both read time and wait on it (``await clock.sleep(s)``), never on the event loop's clock, so a
test or a seeded simulation can substitute a virtual one (``feitian.testing.clock.ManualClock``) and run a driver
without real waiting. Periodic work goes through :class:`feitian.runtime.periodic.PeriodicTask`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from feitian.base.units import SECOND_NS


class Clock(Protocol):
    def monotonic_ns(self) -> int:
        """Nanoseconds on a clock that never goes backwards (not wall time)."""
        ...

    def wall_ns(self) -> int:
        """Nanoseconds since the Unix epoch (for expiries shared across machines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock's monotonic timeline (``<= 0``: just yield to the loop once)."""
        ...

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        """Wait until :meth:`monotonic_ns` reaches ``deadline_ns`` (already passed: yield to the loop once)."""
        ...


class MonotonicClock:
    """The real clock; waits are asyncio timers, checked against ``time.monotonic_ns`` so a wake-up is never early
    (a loop whose timers round to milliseconds, as uvloop's do, sleeps again for the rest)."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self.sleep_until_ns(time.monotonic_ns() + int(seconds * SECOND_NS))

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        left = deadline_ns - time.monotonic_ns()
        if left <= 0:
            await asyncio.sleep(0)
            return
        while left > 0:
            await asyncio.sleep(left / SECOND_NS)
            left = deadline_ns - time.monotonic_ns()


class StallAdjustedClock:
    """Monotonic time that stands still while its owner's event loop was stalled (a GC pause, a long callback,
    SIGSTOP): what a lease-keeping leader measures TTLs in, so a session never expires because the *server*
    was unresponsive (Chubby's grace period).

    The owner tells it when it meant to wake up and calls :meth:`woke` when it did: lateness beyond
    ``tolerance_ns`` is counted as stalled time and no longer passes on this clock. The owner must wake up at
    least every few tens of milliseconds for stalls to be seen promptly; while it is overloaded and always late,
    this clock runs slow — deadlines measured on it come later in real time, never sooner."""

    def __init__(self, clock: Clock, tolerance_ns: int = 25_000_000) -> None:
        self.clock = clock
        self.tolerance_ns = tolerance_ns
        self.stalled_ns = 0  # total time not counted
        self.longest_stall_ns = 0

    def monotonic_ns(self) -> int:
        return self.clock.monotonic_ns() - self.stalled_ns

    def wall_ns(self) -> int:
        return self.clock.wall_ns()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await self.clock.sleep(0)
            return
        await self.sleep_until_ns(self.monotonic_ns() + int(seconds * SECOND_NS))

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        """On this clock's timeline: a stall counted while waiting moves the wake-up later by as much."""
        await self.clock.sleep_until_ns(deadline_ns + self.stalled_ns)
        while self.monotonic_ns() < deadline_ns:
            await self.clock.sleep_until_ns(deadline_ns + self.stalled_ns)

    def woke(self, intended_ns: int) -> int:
        """The owner meant to wake at ``intended_ns`` (on the underlying clock) and woke now; returns the stall
        counted (0 when on time)."""
        late = self.clock.monotonic_ns() - intended_ns - self.tolerance_ns
        if late <= 0:
            return 0
        self.stalled_ns += late
        self.longest_stall_ns = max(self.longest_stall_ns, late)
        return late


class RandomSource(Protocol):
    """What the cores need from a random generator; ``random.Random`` satisfies it."""

    def random(self) -> float: ...

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...
