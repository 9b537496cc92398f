"""Periodic tasks on an injected clock: heartbeats, scrubbers, detection loops, lease renewals.

::

    beat = PeriodicTask("heartbeat", send_heartbeat, 1.0, clock=clock, jitter=0.1, rng=rng)
    beat.start()                  # in the driver's event loop; the first run is now (delay_first=True: after
                                  # one interval)
    ...
    beat.runs, beat.errors        # runs finished (failed ones included), runs that raised
    await beat.stop()             # cancels a run in progress and waits for the task to end
    beat.cancel()                 # the same without waiting (from synchronous code)
    beat.wake()                   # run now (or right after the run under way), not at the next interval

Schedule:

* The interval counts from the **start** of one run to the start of the next (a 1 s heartbeat whose call took
  0.3 s waits 0.7 s). A run that takes longer than the interval is followed at once by the next — never by a
  burst that catches up. The same holds when the clock jumps (a stalled loop, a suspended process): the task
  runs once, late, and :attr:`PeriodicTask.skipped` counts the whole intervals it missed.
* The first run is at once, or one interval after :meth:`PeriodicTask.start` with ``delay_first``, or
  ``first_delay_s`` after it (a renewal whose first due time depends on what it renews).
* ``jitter`` (a fraction below 1) draws each wait uniformly from ``interval * (1 ± jitter)`` with the injected
  :class:`~feitian.base.clock.RandomSource`, so many nodes started together do not beat in step.
* The body may return a number of seconds: the next run is then that long after this run **ends** (a renewal
  that wants to run at half the remaining lifetime, a poll that backs off). ``None`` keeps the interval.
* :meth:`PeriodicTask.wake` cuts the wait short: a loop that waits "until the next deadline or until something
  changed" (a leader change, a new item) is a periodic task whose body returns the time to its next deadline.
* A run that raises is logged (a :class:`~feitian.errors.FeitianError` as one warning line, anything else with
  its traceback) and counted in :attr:`PeriodicTask.errors`; the loop goes on, after ``error_delay_s`` when
  given. Cancellation is never swallowed: :meth:`PeriodicTask.stop` ends the task, even in the middle of a run.

All time is read from and waited on the injected clock, never the event loop's, so a test drives the task with
:class:`feitian.testing.clock.ManualClock` without real waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from feitian.base.clock import Clock, RandomSource
from feitian.base.units import SECOND_NS
from feitian.errors import FeitianError, InvalidArgumentError

__all__ = ["PeriodicTask"]


Body = Callable[[], Awaitable[float | None]]


class PeriodicTask:
    """See the module docstring. ``name`` names the asyncio task and the log lines."""

    def __init__(
        self,
        name: str,
        body: Body,
        interval_s: float,
        *,
        clock: Clock,
        jitter: float = 0.0,
        rng: RandomSource | None = None,
        delay_first: bool = False,
        first_delay_s: float | None = None,
        error_delay_s: float | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        problems = []
        if interval_s < 0:
            problems.append(f"interval_s must be >= 0, got {interval_s}")
        if not 0 <= jitter < 1:
            problems.append(f"jitter must be in [0, 1), got {jitter}")
        if jitter > 0 and rng is None:
            problems.append("jitter needs a random source (rng)")
        if first_delay_s is not None and first_delay_s < 0:
            problems.append(f"first_delay_s must be >= 0, got {first_delay_s}")
        if error_delay_s is not None and error_delay_s < 0:
            problems.append(f"error_delay_s must be >= 0, got {error_delay_s}")
        if problems:
            raise InvalidArgumentError(f"periodic task {name}: " + "; ".join(problems), task=name)
        self.name = name
        self.body = body
        self.interval_s = interval_s
        self.clock = clock
        self.jitter = jitter
        self.rng = rng
        self.delay_first = delay_first
        self.first_delay_s = first_delay_s  # the first run this long after start (instead of now or one interval)
        self.error_delay_s = error_delay_s
        self.log = logger or logging.getLogger(__name__)
        self.runs = 0  # runs finished, failed ones included
        self.errors = 0  # runs that raised
        self.skipped = 0  # whole intervals missed because a run started that late (a stall, a clock jump)
        self.last_error: Exception | None = None
        self.last_started_ns: int | None = None  # on the clock's monotonic timeline
        self.late_ns = 0  # how much later than due the current (or last) run started
        self._task: asyncio.Task[None] | None = None
        self._sleeping = False  # the task waits for its next run
        self._wake_sent = False  # wake() cancelled that wait (told apart from stop() by Task.uncancel)
        self._wake_asked = False  # wake() came during a run: the next run follows at once

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop in the running event loop (a second start while running is refused)."""
        if self.running:
            raise InvalidArgumentError(f"periodic task {self.name} is already running", task=self.name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def run(self) -> None:
        """Run the loop as part of the calling task: start it, wait until it ends, and stop it when the caller is
        cancelled. For a loop that is itself one task of something larger, e.g. a leader-only task of
        ``feitian.replica.LeaderDuties`` (cancelled on step-down)."""
        self.start()
        task = self._task
        assert task is not None
        try:
            await asyncio.wait({task})
        finally:
            await self.stop()

    def cancel(self) -> asyncio.Task[None] | None:
        """Cancel the loop without waiting for it to end (for synchronous code, e.g. a ``__del__``); returns the
        task, if one was running."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def stop(self) -> None:
        """Cancel the loop (a run in progress included) and wait until it has ended; idempotent. Called from the
        task's own body, it only cancels (the body ends at its next await)."""
        task = self.cancel()
        if task is None or task is asyncio.current_task():
            return
        await asyncio.wait({task})  # a cancellation of the caller still reaches the caller
        if not task.cancelled() and task.exception() is not None:
            self.log.error("periodic task %s ended: %r", self.name, task.exception())

    def wake(self) -> None:
        """Run now instead of at the next due time; during a run, run again as soon as it ends. The schedule
        goes on from that run's start. No effect when the task is not running."""
        task = self._task
        if task is None or task.done():
            return
        if not self._sleeping:
            self._wake_asked = True
        elif not self._wake_sent:
            self._wake_sent = True
            task.cancel()  # the wait ends; _wait() takes this cancellation back

    def next_wait_ns(self) -> int:
        """One interval, with the jitter drawn."""
        interval_ns = int(self.interval_s * SECOND_NS)
        if self.jitter and self.rng is not None:
            interval_ns = int(interval_ns * (1 + self.jitter * (2 * self.rng.random() - 1)))
        return interval_ns

    async def _run(self) -> None:
        clock = self.clock
        if self.first_delay_s is not None:
            first_ns = int(self.first_delay_s * SECOND_NS)
        else:
            first_ns = self.next_wait_ns() if self.delay_first else 0
        due = clock.monotonic_ns() + first_ns
        while True:
            await self._wait(due)
            started = clock.monotonic_ns()
            self.last_started_ns = started
            self.late_ns = max(0, started - due)
            interval_ns = int(self.interval_s * SECOND_NS)
            if interval_ns > 0 and started - due >= interval_ns:
                self.skipped += (started - due) // interval_ns
            after: float | None
            try:
                after = await self.body()
            except asyncio.CancelledError:
                raise
            except FeitianError as exc:
                self._failed(exc)
                self.log.warning("%s failed: %s", self.name, exc)
                after = self.error_delay_s
            except Exception as exc:
                self._failed(exc)
                self.log.exception("%s failed", self.name)
                after = self.error_delay_s
            self.runs += 1
            if after is not None:
                due = clock.monotonic_ns() + int(max(0.0, after) * SECOND_NS)
            else:
                due = started + self.next_wait_ns()

    async def _wait(self, due_ns: int) -> None:
        if self._wake_asked:
            self._wake_asked = False
            await asyncio.sleep(0)  # a turn for the rest of the loop, as any wait gives
            return
        self._sleeping = True
        try:
            await self.clock.sleep_until_ns(due_ns)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # Only wake()'s own cancellation is taken back: a stop() (or any other cancel) still ends the task.
            if not self._wake_sent or task is None or task.uncancel() > 0:
                raise
        finally:
            self._sleeping = False
            self._wake_sent = False

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = exc
