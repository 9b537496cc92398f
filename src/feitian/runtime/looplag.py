"""How late the event loop runs: the longest stall a process's loop has had.

::

    lag = LoopLag()          # in the process's event loop
    lag.start()
    ...
    lag.max_ms               # the latest any timer of this loop fired, since start (or reset())
    lag.reset()              # e.g. once a node serves: a slow start is not a stall of the service
    lag.detail()             # the same as strings, for a node's health reply
    await lag.stop()

A task sleeps ``interval_s`` again and again and records by how much it woke up late. While the loop is blocked
(a long callback, a garbage collection, a large encode on the loop), every timer and ready callback waits with
it: the lateness of this one timer is what a heartbeat or an election timer suffered at that moment. A stall
of S seconds is seen as a lateness of between S - interval_s and S. Times are the loop's own clock
(``loop.time()``), the clock its timers run on; the cost is one wake-up every ``interval_s``.
"""

from __future__ import annotations

import asyncio
import collections
import time

__all__ = ["DEFAULT_INTERVAL_S", "RECENT_STALLS", "STALL_MS", "LoopLag"]

DEFAULT_INTERVAL_S = 0.025
STALL_MS = 100.0  # lateness counted as a stall (``stalls``)
RECENT_STALLS = 32  # the stalls remembered with their times (the newest; older ones are dropped)
BUSY_SHARE = 0.75  # a stall with the process on a CPU at least this share of the time is its own work


class LoopLag:
    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.max_ms = 0.0  # the longest lateness since start
        self.max_at = 0.0  # loop time when it ended (0 before the first)
        self.stalls = 0  # wake-ups at least STALL_MS late
        self.samples = 0
        # The longest stall during which the process was on a CPU most of the time: its own work (a long
        # callback, a collection), as opposed to waiting for a machine busy with other processes.
        self.max_busy_ms = 0.0
        self.recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=RECENT_STALLS)  # (at, ms)
        self._task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """Forget what was seen so far (the figures then count from now)."""
        self.max_ms, self.max_at, self.stalls, self.max_busy_ms = 0.0, 0.0, 0, 0.0
        self.recent.clear()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_s
        while True:
            started, cpu = loop.time(), time.process_time()
            due = started + interval
            await asyncio.sleep(interval)
            now = loop.time()
            busy = (time.process_time() - cpu) / max(now - started, 1e-9)
            self.observe(max(0.0, (now - due) * 1000), now, busy)

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
        a caller can tell the stalls of the last minute from older ones."""
        now = asyncio.get_running_loop().time()
        ago = f"{now - self.max_at:.1f}" if self.max_ms > 0 else ""
        recent = " ".join(f"{now - at:.1f}:{ms:.0f}" for at, ms in self.recent)
        return {
            "loop_lag_max_ms": f"{self.max_ms:.1f}",
            "loop_lag_max_ago_s": ago,
            "loop_stalls": str(self.stalls),
            "loop_stalls_recent": recent,
            "loop_lag_max_busy_ms": f"{self.max_busy_ms:.1f}",
        }

    @staticmethod
    def parse_recent(text: str) -> list[tuple[float, float]]:
        """``loop_stalls_recent`` back into (seconds ago, ms) pairs."""
        out = []
        for pair in text.split():
            ago, _, ms = pair.partition(":")
            out.append((float(ago), float(ms)))
        return out
