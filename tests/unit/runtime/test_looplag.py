"""The loop-lag monitor: a blocked event loop shows as the lateness of its timer (issue 15)."""

from __future__ import annotations

import time

from feitian.runtime.looplag import STALL_MS, LoopLag
from feitian.testing.waiting import wait_for_condition


def test_observe_keeps_the_longest_and_counts_stalls() -> None:
    lag = LoopLag()
    for late_ms, now in ((3.0, 1.0), (250.0, 2.0), (120.0, 3.0), (1.0, 4.0)):
        lag.observe(late_ms, now)
    assert (lag.max_ms, lag.max_at, lag.stalls, lag.samples) == (250.0, 2.0, 2, 4)
    assert 250.0 > STALL_MS > 3.0


async def test_a_blocked_loop_is_seen() -> None:
    lag = LoopLag(interval_s=0.01)
    lag.start()
    try:
        await wait_for_condition(lambda: lag.samples >= 2, what="the monitor runs")
        time.sleep(0.3)  # noqa: ASYNC251 - blocking the loop is the point: the stall to be measured
        seen = lag.samples
        await wait_for_condition(lambda: lag.samples > seen, what="the monitor woke after the stall")
        assert lag.max_ms >= 250, lag.max_ms
        assert lag.stalls >= 1
        detail = lag.detail()
        assert float(detail["loop_lag_max_ms"]) == round(lag.max_ms, 1)
        assert detail["loop_stalls"] == str(lag.stalls)
        assert float(detail["loop_lag_max_ago_s"]) >= 0
    finally:
        await lag.stop()


async def test_recent_stalls_are_reported_with_their_age_and_reset_forgets() -> None:
    lag = LoopLag()
    for late_ms, now in ((150.0, 1.0), (5.0, 2.0), (400.0, 3.0)):
        lag.observe(late_ms, now)
    assert list(lag.recent) == [(1.0, 150.0), (3.0, 400.0)]
    recent = LoopLag.parse_recent(lag.detail()["loop_stalls_recent"])
    assert [ms for _, ms in recent] == [150.0, 400.0]
    assert recent[0][0] > recent[1][0]  # the older one is further ago
    lag.reset()
    assert (lag.max_ms, lag.stalls, list(lag.recent)) == (0.0, 0, [])
    assert lag.detail()["loop_stalls_recent"] == ""


async def test_a_stall_counts_as_the_process_own_only_when_it_was_running() -> None:
    lag = LoopLag()
    lag.observe(300.0, 1.0, busy=0.1)  # late, but the process hardly ran: it waited for the machine
    lag.observe(250.0, 2.0, busy=0.95)  # late while running: its own work held the loop
    assert lag.max_ms == 300.0 and lag.max_busy_ms == 250.0
    assert lag.detail()["loop_lag_max_busy_ms"] == "250.0"


async def test_on_a_manual_clock_a_jump_is_a_stall_of_the_jump_less_one_interval() -> None:
    from feitian.testing.clock import ManualClock

    clock = ManualClock(start_s=0.0)
    lag = LoopLag(interval_s=0.025, clock=clock)
    lag.start()
    try:
        await clock.advance(0.1)
        assert lag.samples == 4 and lag.max_ms == 0.0 and lag.stalls == 0  # every wake-up on time
        await clock.jump(0.3)  # the loop "stood still" for 300 ms: the timer due 25 ms in fired 275 ms late
        assert lag.samples == 5 and round(lag.max_ms, 3) == 275.0 and lag.stalls == 1
        assert lag.max_at == 0.4
        await clock.advance(0.5)
        assert lag.detail()["loop_lag_max_ago_s"] == "0.5"
    finally:
        await lag.stop()


def test_garbage_collections_are_timed_while_started() -> None:
    import gc

    from feitian.runtime.looplag import GcPauses

    pauses = GcPauses()
    pauses.start()
    try:
        pauses.start()  # once only
        assert gc.callbacks.count(pauses._callback) == 1
        junk = [[i] for i in range(200_000)]  # something for a full collection to walk
        gc.collect()
        assert pauses.full >= 1 and pauses.max_full_ms > 0 and pauses.max_ms >= pauses.max_full_ms
        del junk
    finally:
        pauses.stop()
    assert pauses._callback not in gc.callbacks
    full = pauses.full
    gc.collect()
    assert pauses.full == full  # stopped: no longer counted
