"""How late the event loop runs: the longest stall a process's loop has had.

::

    lag = LoopLag()          # in the process's event loop
    lag.start()
    ...
    lag.max_ms               # the latest any timer of this loop fired, since start
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

__all__ = ["DEFAULT_INTERVAL_S", "STALL_MS", "LoopLag"]

DEFAULT_INTERVAL_S = 0.025
STALL_MS = 100.0  # lateness counted as a stall (``stalls``)


class LoopLag:
    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.max_ms = 0.0  # the longest lateness since start
        self.max_at = 0.0  # loop time when it ended (0 before the first)
        self.stalls = 0  # wake-ups at least STALL_MS late
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

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
            due = loop.time() + interval
            await asyncio.sleep(interval)
            now = loop.time()
            self.observe(max(0.0, (now - due) * 1000), now)

    def observe(self, late_ms: float, now: float) -> None:
        """Record one wake-up ``late_ms`` late at loop time ``now``."""
        self.samples += 1
        if late_ms >= STALL_MS:
            self.stalls += 1
        if late_ms > self.max_ms:
            self.max_ms = late_ms
            self.max_at = now

    def detail(self) -> dict[str, str]:
        """The figures as a health reply's detail: ``loop_lag_max_ms`` (since start), ``loop_lag_max_ago_s``
        (how long ago it ended; empty before any wake-up), ``loop_stalls`` (wake-ups >= STALL_MS late)."""
        ago = ""
        if self.max_ms > 0:
            ago = f"{asyncio.get_running_loop().time() - self.max_at:.1f}"
        return {"loop_lag_max_ms": f"{self.max_ms:.1f}", "loop_lag_max_ago_s": ago, "loop_stalls": str(self.stalls)}
