"""Waiting for conditions in tests: poll with a deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class ConditionTimeout(AssertionError):
    pass


async def wait_for_condition(
    predicate: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` (sync or async) until it is true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise ConditionTimeout(f"{what} did not hold within {timeout_s}s")
        await asyncio.sleep(0.005)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Blocking variant for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise ConditionTimeout(f"{what} did not hold within {timeout_s}s")
        time.sleep(0.005)
