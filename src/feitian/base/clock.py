"""Injected time and randomness (ARCHITECTURE.md, Invariants: pure cores get time and randomness injected).

Pure cores never read a clock: they take ``now_ns`` as an argument. Drivers get a :class:`Clock` from their
constructor so a seeded simulation can substitute a virtual one.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic_ns(self) -> int:
        """Nanoseconds on a clock that never goes backwards (not wall time)."""
        ...

    def wall_ns(self) -> int:
        """Nanoseconds since the Unix epoch (for expiries shared across machines)."""
        ...


class MonotonicClock:
    """The real clock."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        return time.time_ns()


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
