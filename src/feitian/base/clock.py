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


class RandomSource(Protocol):
    """What the cores need from a random generator; ``random.Random`` satisfies it."""

    def random(self) -> float: ...

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...
