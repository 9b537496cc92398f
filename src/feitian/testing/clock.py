"""Clocks for tests (both are :class:`feitian.base.clock.Clock`).

* :class:`ShiftedClock` — the real clock whose monotonic side a test can move forward, for tests against real
  processes: age a lease or a view at once without waiting for it.
* :class:`ManualClock` — time that moves only when the test says so: drivers that wait on it
  (``await clock.sleep(s)``, :class:`feitian.runtime.periodic.PeriodicTask`) run without real waiting, and
  :meth:`ManualClock.advance` wakes them in deadline order, deterministically::

      clock = ManualClock()
      task = PeriodicTask("beat", beat, 1.0, clock=clock)
      task.start()
      await clock.advance(10.0)   # ten intervals pass: the task has run eleven times (at 0, 1, ... 10 s)
      await clock.jump(60.0)      # the clock jumps (a stall, SIGSTOP): every due sleeper wakes once, late
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

from feitian.base.units import SECOND_NS

__all__ = ["SETTLE_ROUNDS", "ManualClock", "ShiftedClock"]

SETTLE_ROUNDS = 20  # turns of the event loop a woken task gets to run and go back to sleep (ManualClock.settle)


class ShiftedClock:
    """The real clock whose monotonic side a test can move forward, to age a lease or a view at once without
    waiting for it. A sleeper waits real time: :meth:`advance` does not wake it early (use :class:`ManualClock`
    for that)."""

    def __init__(self) -> None:
        self.mono_offset_ns = 0

    def advance(self, seconds: float) -> None:
        self.mono_offset_ns += int(seconds * SECOND_NS)

    def wall_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns() + self.mono_offset_ns

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        await asyncio.sleep(max(0.0, (deadline_ns - self.monotonic_ns()) / SECOND_NS))


class ManualClock:
    """Virtual time for tests: starts at ``start_s`` (monotonic) and ``wall_start_s`` (wall), and moves only by
    :meth:`advance` and :meth:`jump`. Sleepers are woken in deadline order (ties: in the order they went to
    sleep), each at its own deadline, so a run is the same every time.

    After waking a sleeper the clock lets the event loop run :data:`SETTLE_ROUNDS` turns, enough for a woken
    task that only awaits other virtual waits or in-memory work to run and go back to sleep; a task that waits
    for real I/O (a socket, a thread) needs :func:`feitian.testing.waiting.wait_until` as well."""

    def __init__(self, start_s: float = 1000.0, wall_start_s: float = 1_700_000_000.0) -> None:
        self.now_ns = int(start_s * SECOND_NS)
        self.wall_offset_ns = int(wall_start_s * SECOND_NS) - self.now_ns
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    # -- the Clock protocol
    def monotonic_ns(self) -> int:
        return self.now_ns

    def wall_ns(self) -> int:
        return self.now_ns + self.wall_offset_ns

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until_ns(self.now_ns + max(0, int(seconds * SECOND_NS)))

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        if deadline_ns <= self.now_ns:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline_ns, next(self._order), waiter))
        await waiter  # cancelling the sleeper cancels the future: advance() skips it

    # -- moving time
    @property
    def sleepers(self) -> int:
        """Tasks waiting on this clock now."""
        return sum(1 for _, _, w in self._sleepers if not w.done())

    def next_deadline_ns(self) -> int | None:
        """The earliest deadline a task waits for, or None when nobody sleeps."""
        for deadline, _, waiter in sorted(self._sleepers):
            if not waiter.done():
                return deadline
        return None

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass smoothly: time stops at every sleeper's deadline on the way, wakes it and lets it
        run (so a periodic task runs once per interval, on time), then settles at the end."""
        target = self.now_ns + int(seconds * SECOND_NS)
        await self.settle()  # tasks just started get to go to sleep first
        while self._sleepers and self._sleepers[0][0] <= target:
            self.now_ns = max(self.now_ns, self._sleepers[0][0])
            self._wake_due()
            await self.settle()
        self.now_ns = target
        await self.settle()

    async def jump(self, seconds: float) -> None:
        """The clock jumps ``seconds`` at once (a stalled loop, a suspended process): every sleeper due by then
        wakes once, late, and sees the new time."""
        await self.settle()
        self.now_ns += int(seconds * SECOND_NS)
        self._wake_due()
        await self.settle()

    async def settle(self) -> None:
        """Let the event loop run :data:`SETTLE_ROUNDS` turns without moving time."""
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self.now_ns:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)
