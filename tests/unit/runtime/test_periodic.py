"""PeriodicTask (runtime/periodic.py) driven by a ManualClock: no real waiting, the same run every time."""

from __future__ import annotations

import asyncio
import random

import pytest

from feitian.base.clock import MonotonicClock, StallAdjustedClock
from feitian.errors import InvalidArgumentError, UnavailableError
from feitian.runtime.periodic import PeriodicTask
from feitian.testing.clock import ManualClock

_NS = 1_000_000_000


class Recorder:
    """A body that records when (on the clock) each run started."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.at: list[float] = []

    async def __call__(self) -> None:
        self.at.append(self.clock.monotonic_ns() / _NS)


async def test_runs_once_per_interval_on_the_clock_and_stops_cleanly() -> None:
    clock = ManualClock(start_s=100.0)
    body = Recorder(clock)
    task = PeriodicTask("beat", body, 1.0, clock=clock)
    task.start()
    await clock.advance(10.0)
    assert body.at == [100.0 + i for i in range(11)]
    assert (task.runs, task.errors, task.skipped) == (11, 0, 0)
    await task.stop()
    assert not task.running and clock.sleepers == 0
    await clock.advance(5.0)
    assert len(body.at) == 11  # stopped: no more runs
    await task.stop()  # idempotent


async def test_delay_first_waits_one_interval_before_the_first_run() -> None:
    clock = ManualClock(start_s=0.0)
    body = Recorder(clock)
    task = PeriodicTask("scrub", body, 5.0, clock=clock, delay_first=True)
    task.start()
    await clock.advance(4.9)
    assert body.at == []
    await clock.advance(0.1)
    assert body.at == [5.0]
    await task.stop()


async def test_first_delay_s_sets_the_first_run_then_the_interval_follows() -> None:
    clock = ManualClock(start_s=0.0)
    body = Recorder(clock)
    task = PeriodicTask("renew", body, 5.0, clock=clock, first_delay_s=1.5)
    task.start()
    await clock.advance(1.4)
    assert body.at == []
    await clock.advance(0.1)
    assert body.at == [1.5]
    await clock.advance(5.0)
    assert body.at == [1.5, 6.5]
    await task.stop()


async def test_the_interval_counts_from_the_start_of_a_run() -> None:
    """A run that takes 0.3 s of a 1 s interval: the next starts 1 s after the previous one started."""
    clock = ManualClock(start_s=0.0)
    starts: list[float] = []

    async def slow() -> None:
        starts.append(clock.monotonic_ns() / _NS)
        await clock.sleep(0.3)

    task = PeriodicTask("slow", slow, 1.0, clock=clock)
    task.start()
    await clock.advance(3.0)
    assert starts == [0.0, 1.0, 2.0, 3.0]
    await task.stop()


async def test_a_run_longer_than_the_interval_is_followed_at_once_not_by_a_burst() -> None:
    clock = ManualClock(start_s=0.0)
    starts: list[float] = []

    async def overrun() -> None:
        starts.append(clock.monotonic_ns() / _NS)
        await clock.sleep(2.5 if len(starts) == 1 else 0.1)

    task = PeriodicTask("overrun", overrun, 1.0, clock=clock)
    task.start()
    await clock.advance(4.0)
    assert starts == [0.0, 2.5, 3.5]
    await task.stop()


async def test_jitter_keeps_every_wait_within_its_bounds_and_replays_from_the_seed() -> None:
    def waits(seed: int) -> list[float]:
        clock = ManualClock(start_s=0.0)
        task = PeriodicTask("j", Recorder(clock), 2.0, clock=clock, jitter=0.25, rng=random.Random(seed))
        return [task.next_wait_ns() / _NS for _ in range(500)]

    drawn = waits(7)
    assert all(1.5 <= w <= 2.5 for w in drawn)
    assert min(drawn) < 1.6 and max(drawn) > 2.4  # the whole range is used, not a constant
    assert waits(7) == drawn

    clock = ManualClock(start_s=0.0)
    body = Recorder(clock)
    task = PeriodicTask("j", body, 2.0, clock=clock, jitter=0.25, rng=random.Random(7))
    task.start()
    await clock.advance(100.0)
    gaps = [b - a for a, b in zip(body.at, body.at[1:], strict=False)]
    assert len(gaps) >= 39 and all(1.5 - 1e-9 <= g <= 2.5 + 1e-9 for g in gaps)
    assert len({round(g, 6) for g in gaps}) > 10
    await task.stop()


async def test_a_failing_run_is_counted_and_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(start_s=0.0)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise UnavailableError("master down")
        if calls == 3:
            raise RuntimeError("a bug")

    task = PeriodicTask("flaky", flaky, 1.0, clock=clock)
    task.start()
    await clock.advance(4.0)
    assert calls == 5 and task.runs == 5 and task.errors == 2
    assert isinstance(task.last_error, RuntimeError)
    assert "flaky failed: master down" in caplog.text and "a bug" in caplog.text
    assert task.running
    await task.stop()


async def test_error_delay_and_a_returned_delay_set_the_next_run() -> None:
    clock = ManualClock(start_s=0.0)
    starts: list[float] = []

    async def body() -> float | None:
        starts.append(clock.monotonic_ns() / _NS)
        if len(starts) == 1:
            raise UnavailableError("no answer")
        return 7.0 if len(starts) == 2 else None

    task = PeriodicTask("renew", body, 1.0, clock=clock, error_delay_s=3.0)
    task.start()
    await clock.advance(12.0)
    assert starts == [0.0, 3.0, 10.0, 11.0, 12.0]
    await task.stop()


async def test_stop_during_a_run_cancels_it_and_waits_for_the_task() -> None:
    clock = ManualClock(start_s=0.0)
    entered, cleaned = asyncio.Event(), []

    async def long_run() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # never set: stuck in the middle of a run
        finally:
            cleaned.append(True)

    task = PeriodicTask("long", long_run, 1.0, clock=clock)
    task.start()
    await entered.wait()
    await task.stop()
    assert cleaned == [True] and not task.running and task.runs == 0 and task.errors == 0


async def test_a_task_may_stop_itself_from_its_body() -> None:
    clock = ManualClock(start_s=0.0)
    task: PeriodicTask

    async def once() -> None:
        await task.stop()

    task = PeriodicTask("once", once, 1.0, clock=clock)
    task.start()
    await clock.advance(5.0)
    assert not task.running and task.runs == 1  # the run itself ends (nothing in it awaits after stop)


async def test_a_clock_jump_runs_the_task_once_late_and_counts_the_missed_intervals() -> None:
    clock = ManualClock(start_s=0.0)
    body = Recorder(clock)
    task = PeriodicTask("beat", body, 1.0, clock=clock)
    task.start()
    await clock.advance(2.0)
    await clock.jump(10.0)  # from 2 s straight to 12 s: the run due at 3 s happens at 12 s, once
    assert body.at == [0.0, 1.0, 2.0, 12.0]
    assert task.skipped == 9
    await clock.advance(2.0)
    assert body.at == [0.0, 1.0, 2.0, 12.0, 13.0, 14.0]
    await task.stop()


async def test_bad_settings_are_refused_with_every_problem_named() -> None:
    clock = ManualClock()
    with pytest.raises(InvalidArgumentError, match=r"interval_s must be >= 0.*jitter needs a random source"):
        PeriodicTask("bad", Recorder(clock), -1.0, clock=clock, jitter=0.5)
    with pytest.raises(InvalidArgumentError, match=r"jitter must be in \[0, 1\)"):
        PeriodicTask("bad", Recorder(clock), 1.0, clock=clock, jitter=1.0, rng=random.Random(1))
    task = PeriodicTask("twice", Recorder(clock), 1.0, clock=clock)
    task.start()
    with pytest.raises(InvalidArgumentError, match="already running"):
        task.start()
    await task.stop()


async def test_manual_clock_wakes_sleepers_in_deadline_order_and_skips_cancelled_ones() -> None:
    clock = ManualClock(start_s=0.0, wall_start_s=50.0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("x", 1.5)]]
    await clock.settle()
    assert clock.sleepers == 4 and clock.next_deadline_ns() == 1 * _NS
    tasks[3].cancel()
    await clock.advance(2.5)
    assert woke == ["a", "b"] and clock.sleepers == 1
    assert clock.wall_ns() == int(52.5 * _NS)
    await clock.advance(1.0)
    assert woke == ["a", "b", "c"]
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_real_clocks_wait_on_their_own_timeline() -> None:
    real = MonotonicClock()
    before = real.monotonic_ns()
    await real.sleep_until_ns(before + 20_000_000)
    assert real.monotonic_ns() >= before + 20_000_000  # never early, whatever the loop's timer rounding
    stalled = StallAdjustedClock(real)
    stalled.stalled_ns = 5_000_000_000  # 5 s counted as a stall: its timeline is 5 s behind the real one
    before, real_before = stalled.monotonic_ns(), real.monotonic_ns()
    await stalled.sleep(0.02)
    assert stalled.monotonic_ns() >= before + 20_000_000
    assert real.monotonic_ns() - real_before < 4_000_000_000  # waited 20 ms, not the 5 s offset


async def test_cancel_stops_the_loop_without_waiting() -> None:
    clock = ManualClock(start_s=0.0)
    body = Recorder(clock)
    task = PeriodicTask("c", body, 1.0, clock=clock)
    task.start()
    await clock.advance(1.0)
    handle = task.cancel()
    assert handle is not None and not task.running
    await asyncio.wait({handle})
    assert handle.cancelled() and clock.sleepers == 0
    await clock.advance(3.0)
    assert body.at == [0.0, 1.0]
    assert task.cancel() is None


async def test_wake_runs_now_and_the_schedule_goes_on_from_there() -> None:
    clock = ManualClock(start_s=0.0)
    body = Recorder(clock)
    task = PeriodicTask("w", body, 10.0, clock=clock)
    task.start()
    await clock.advance(3.0)
    task.wake()
    task.wake()  # twice while asleep: one run
    await clock.settle()
    assert body.at == [0.0, 3.0] and task.late_ns == 0
    await clock.advance(10.0)
    assert body.at == [0.0, 3.0, 13.0]  # the interval counts from the woken run
    assert task.running
    await task.stop()


async def test_wake_during_a_run_runs_again_right_after_it() -> None:
    clock = ManualClock(start_s=0.0)
    starts: list[float] = []
    task: PeriodicTask

    async def body() -> None:
        starts.append(clock.monotonic_ns() / _NS)
        if len(starts) == 2:
            task.wake()  # e.g. a change noticed while running
        await clock.sleep(1.0)

    task = PeriodicTask("w", body, 10.0, clock=clock)
    task.start()
    await clock.advance(25.0)
    assert starts == [0.0, 10.0, 11.0, 21.0]
    await task.stop()


async def test_stop_after_wake_still_ends_the_task() -> None:
    clock = ManualClock(start_s=0.0)
    body = Recorder(clock)
    task = PeriodicTask("w", body, 10.0, clock=clock)
    task.start()
    await clock.settle()
    handle = task._task
    task.wake()  # the wait is cancelled for the wake ...
    await task.stop()  # ... and for the stop, before the task ran again: the stop wins
    assert handle is not None and handle.cancelled() and body.at == [0.0]
    task.wake()  # not running: nothing happens
    assert not task.running


async def test_run_is_the_loop_inside_the_calling_task_and_stops_with_it() -> None:
    """What a leader-only task does (LeaderDuties cancels it on step-down): the loop runs while the caller's
    task lives, and cancelling that task stops the loop with it."""
    clock = ManualClock(start_s=0.0)
    body = Recorder(clock)
    periodic = PeriodicTask("maintain", body, 2.0, clock=clock)
    outer = asyncio.get_running_loop().create_task(periodic.run())
    await clock.advance(4.0)
    assert body.at == [0.0, 2.0, 4.0] and periodic.running
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert not periodic.running and clock.sleepers == 0
    await clock.advance(10.0)
    assert len(body.at) == 3  # stopped with its caller


async def test_run_returns_when_the_body_stops_its_own_loop() -> None:
    clock = ManualClock(start_s=0.0)
    periodic: PeriodicTask

    async def body() -> None:
        if periodic.runs == 1:
            await periodic.stop()

    periodic = PeriodicTask("once-more", body, 1.0, clock=clock)
    outer = asyncio.get_running_loop().create_task(periodic.run())
    await clock.advance(3.0)
    assert outer.done() and not outer.cancelled() and periodic.runs == 2  # the second run stopped it
