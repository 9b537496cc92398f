"""How late the event loop runs: the longest stall a process's loop has had.

::

    lag = LoopLag()          # in the process's event loop
    lag.start()
    ...
    lag.max_ms               # the latest any timer of this loop fired, since start (or reset())
    lag.reset()              # e.g. once a node serves: a slow start is not a stall of the service
    lag.detail()             # the same as strings, for a node's health reply
    await lag.stop()

A :class:`~feitian.runtime.periodic.PeriodicTask` wakes every ``interval_s`` and records by how much it woke up
late. While the loop is blocked (a long callback, a garbage collection, a large encode on the loop), every timer
and ready callback waits with it: the lateness of this one timer is what a heartbeat or an election timer
suffered at that moment. A stall of S seconds is seen as a lateness of between S - interval_s and S. Times are
the injected clock's (the real monotonic clock by default, the one the loop's timers run on); the cost is one
wake-up every ``interval_s``.
"""

from __future__ import annotations

import collections
import gc
import time
from typing import Any

from feitian.base.clock import Clock, MonotonicClock
from feitian.runtime.periodic import PeriodicTask

__all__ = ["DEFAULT_INTERVAL_S", "RECENT_STALLS", "STALL_MS", "GcPauses", "LoopLag"]

DEFAULT_INTERVAL_S = 0.025
STALL_MS = 100.0  # lateness counted as a stall (``stalls``)
RECENT_STALLS = 32  # the stalls remembered with their times (the newest; older ones are dropped)
BUSY_SHARE = 0.75  # a stall with the process on a CPU at least this share of the time is its own work


class GcPauses:
    """The cyclic garbage collector's pauses in this process (``gc.callbacks``): the longest, and how many full
    (generation 2) collections ran — so a loop stall can be told to be a collection or something else."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or MonotonicClock()
        self.max_ms = 0.0
        self.max_full_ms = 0.0  # the longest full collection
        self.full = 0  # full collections
        self.total_ms = 0.0
        self._started = 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock.monotonic_ns()
            return
        ms = (self.clock.monotonic_ns() - self._started) / 1e6
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        if info.get("generation") == 2:
            self.full += 1
            self.max_full_ms = max(self.max_full_ms, ms)

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def reset(self) -> None:
        self.max_ms = self.max_full_ms = self.total_ms = 0.0
        self.full = 0


class LoopLag:
    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, *, clock: Clock | None = None) -> None:
        self.interval_s = interval_s
        self.clock = clock or MonotonicClock()
        self.max_ms = 0.0  # the longest lateness since start
        self.max_at = 0.0  # clock time (monotonic seconds) when it ended (0 before the first)
        self.stalls = 0  # wake-ups at least STALL_MS late
        self.samples = 0
        # The longest stall during which the process was on a CPU most of the time: its own work (a long
        # callback, a collection), as opposed to waiting for a machine busy with other processes.
        self.max_busy_ms = 0.0
        self.recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=RECENT_STALLS)  # (at, ms)
        self.gc = GcPauses(self.clock)
        self._task = PeriodicTask("loop-lag", self._wake, interval_s, clock=self.clock)
        self._cpu = 0.0  # process CPU time at the previous wake-up

    def reset(self) -> None:
        """Forget what was seen so far (the figures then count from now)."""
        self.max_ms, self.max_at, self.stalls, self.max_busy_ms = 0.0, 0.0, 0, 0.0
        self.recent.clear()
        self.gc.reset()

    def start(self) -> None:
        self._cpu = time.process_time()
        self.gc.start()
        self._task.start()

    async def stop(self) -> None:
        self.gc.stop()
        await self._task.stop()

    async def _wake(self) -> None:
        task, cpu = self._task, time.process_time()
        previous, self._cpu = self._cpu, cpu
        if task.runs == 0:
            return  # the first run is at start: nothing was waited for yet
        now_ns = task.last_started_ns or self.clock.monotonic_ns()
        busy = (cpu - previous) / max((self.interval_s * 1e9 + task.late_ns) / 1e9, 1e-9)
        self.observe(task.late_ns / 1e6, now_ns / 1e9, busy)

    def observe(self, late_ms: float, now: float, busy: float = 1.0) -> None:
        """Record one wake-up ``late_ms`` late at loop time ``now``; ``busy``: the share of that time this process
        was running on a CPU (about 1: its own work held the loop; well below: it waited for the machine)."""
        self.samples += 1
        if late_ms >= STALL_MS:
            self.stalls += 1
            self.recent.append((now, late_ms))
            if busy >= BUSY_SHARE:
                self.max_busy_ms = max(self.max_busy_ms, late_ms)
        if late_ms > self.max_ms:
            self.max_ms = late_ms
            self.max_at = now

    def detail(self) -> dict[str, str]:
        """The figures as a health reply's detail: ``loop_lag_max_ms`` (since start or reset),
        ``loop_lag_max_ago_s`` (how long ago it ended; empty before any wake-up), ``loop_stalls`` (wake-ups >=
        STALL_MS late) and ``loop_stalls_recent``: the newest stalls as ``AGO_S:MS`` pairs, space-separated, so
        a caller can tell the stalls of the last minute from older ones; ``gc_pause_max_ms``, ``gc_full_max_ms``
        and ``gc_full_collections``: the garbage collector's share (:class:`GcPauses`)."""
        now = self.clock.monotonic_ns() / 1e9
        ago = f"{now - self.max_at:.1f}" if self.max_ms > 0 else ""
        recent = " ".join(f"{now - at:.1f}:{ms:.0f}" for at, ms in self.recent)
        return {
            "loop_lag_max_ms": f"{self.max_ms:.1f}",
            "loop_lag_max_ago_s": ago,
            "loop_stalls": str(self.stalls),
            "loop_stalls_recent": recent,
            "loop_lag_max_busy_ms": f"{self.max_busy_ms:.1f}",
            "gc_pause_max_ms": f"{self.gc.max_ms:.1f}",
            "gc_full_max_ms": f"{self.gc.max_full_ms:.1f}",
            "gc_full_collections": str(self.gc.full),
        }

    @staticmethod
    def parse_recent(text: str) -> list[tuple[float, float]]:
        """``loop_stalls_recent`` back into (seconds ago, ms) pairs."""
        out = []
        for pair in text.split():
            ago, _, ms = pair.partition(":")
            out.append((float(ago), float(ms)))
        return out
