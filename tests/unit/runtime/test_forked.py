"""``run_in_child``: a function run in a forked copy of the process, the parent's event loop free meanwhile."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from feitian.errors import UnavailableError
from feitian.runtime.forked import run_in_child
from feitian.testing.waiting import wait_for_condition


async def test_the_child_sees_the_state_at_the_fork_and_the_loop_runs_meanwhile(tmp_path: Path) -> None:
    state = {"value": 1}
    out = tmp_path / "out"
    ticks = 0

    def write() -> None:
        time.sleep(0.3)  # the parent changes its state meanwhile; the child's copy does not change
        out.write_text(f"{state['value']} {os.getpid()}")

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.ensure_future(ticker())
    child = asyncio.ensure_future(run_in_child(write, "test"))
    await asyncio.sleep(0)
    state["value"] = 2
    await child
    task.cancel()
    value, pid = out.read_text().split()
    assert value == "1" and int(pid) != os.getpid()
    assert ticks > 10  # the event loop kept running while the child worked


async def test_a_failure_in_the_child_is_reported_with_its_text() -> None:
    def fail() -> None:
        raise ValueError("no room for the snapshot")

    with pytest.raises(UnavailableError, match="no room for the snapshot") as raised:
        await run_in_child(fail, "snapshot at 7")
    assert "snapshot at 7" in raised.value.message


async def test_cancelling_the_wait_kills_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    def hang() -> None:
        pidfile.write_text(str(os.getpid()))
        time.sleep(60)

    task = asyncio.ensure_future(run_in_child(hang, "test"))
    # The file exists before its text is written: wait for the whole pid.
    await wait_for_condition(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 10, "the child started")
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await wait_for_condition(gone, 10, "the child killed and reaped")
