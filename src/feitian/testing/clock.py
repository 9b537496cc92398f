"""Clocks for tests against real processes: real time, with the monotonic side movable forward."""

from __future__ import annotations

import time

__all__ = ["ShiftedClock"]


class ShiftedClock:
    """The real clock (a :class:`feitian.base.clock.Clock`) whose monotonic side a test can move forward, to age
    a lease or a view at once without waiting for it."""

    def __init__(self) -> None:
        self.mono_offset_ns = 0

    def advance(self, seconds: float) -> None:
        self.mono_offset_ns += int(seconds * 1_000_000_000)

    def wall_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns() + self.mono_offset_ns
