"""LeaderCaller (replica/leader_caller.py) on a manual clock: its deadline and back-off are the injected clock's,
so how many attempts fit in a budget is exact, and no real time passes. The replicas are replaced at the one
call it makes (``Client.call``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from feitian.errors import NotLeaderError, UnavailableError
from feitian.replica.leader_caller import BACKOFF_S, LeaderCaller
from feitian.rpc import Request
from feitian.testing.clock import ManualClock


class Ping(Request[str], frozen=True, tag="test.Ping"):
    pass


class Replicas:
    """``down`` replicas answer UnavailableError (an election); the others redirect to ``leader``."""

    def __init__(self, clock: ManualClock, leader: str | None) -> None:
        self.clock = clock
        self.leader = leader
        self.attempts: list[tuple[float, str, float]] = []

    async def call(self, address: str, request: Any, *, timeout: float, payload: Any = None) -> str:
        self.attempts.append((round(self.clock.monotonic_ns() / 1e9, 3), address, round(timeout, 3)))
        if self.leader is None:
            raise UnavailableError(f"{address}: no leader elected yet")
        if address != self.leader:
            raise NotLeaderError("not the leader", leader_hint=self.leader)
        return "pong"


async def test_the_budget_and_back_off_are_measured_on_the_injected_clock() -> None:
    clock = ManualClock(start_s=0.0)
    replicas = Replicas(clock, leader=None)
    caller = LeaderCaller(replicas, ["a", "b", "c"], timeout_s=1.0, attempt_timeout_s=0.3, clock=clock)  # type: ignore[arg-type]
    call = asyncio.ensure_future(caller.call(Ping()))
    await clock.advance(1.0)
    with pytest.raises(UnavailableError, match=r"Ping: no replica answered within 1s"):
        await call
    assert len(replicas.attempts) == round(1.0 / BACKOFF_S)  # one every back-off until the budget was spent
    assert [a for _, a, _ in replicas.attempts[:4]] == ["a", "b", "c", "a"]
    assert replicas.attempts[0] == (0.0, "a", 0.3) and replicas.attempts[-1][2] == 0.05  # the last gets what is left


async def test_a_redirect_is_followed_at_once_without_a_back_off() -> None:
    clock = ManualClock(start_s=0.0)
    replicas = Replicas(clock, leader="c")
    caller = LeaderCaller(replicas, ["a", "b", "c"], clock=clock)  # type: ignore[arg-type]
    assert await caller.call(Ping()) == "pong"
    assert replicas.attempts == [(0.0, "a", 5.0), (0.0, "c", 5.0)] and caller.leader == "c"
