"""The kit's Router (replica/router.py) on a manual clock: its deadline, back-off pauses and the time a failed
replica is skipped are the injected clock's, so the give-up time is exact and no real time passes. The replicas
are replaced at the one call it makes (``Client.call``)."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest

from feitian.errors import NotLeaderError, UnavailableError
from feitian.replica.router import MAX_RETRY_PAUSE_S, Router
from feitian.rpc import Request
from feitian.testing.clock import ManualClock


class Ping(Request[str], frozen=True, tag="test.Ping"):
    pass


class Replicas:
    """With no ``leader`` every replica answers UnavailableError (an election); otherwise the others redirect."""

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
    router = Router(
        replicas,  # type: ignore[arg-type]
        ["a", "b", "c"],
        timeout_s=3.0,
        attempt_timeout_s=0.3,
        clock=clock,
        rng=random.Random(1),
    )
    call = asyncio.ensure_future(router.call(Ping()))
    await clock.advance(3.0)
    with pytest.raises(UnavailableError, match=r"Ping: no leader: quorum lost\? 3 of 3 replicas answered within 3s"):
        await call
    times = [t for t, _, _ in replicas.attempts]
    assert times[:3] == [0.0, 0.0, 0.0]  # one round at once, then a pause before each next round
    assert all(later >= earlier for earlier, later in itertools.pairwise(times))
    rounds = [times[i] for i in range(0, len(times), 3)]
    gaps = [b - a for a, b in itertools.pairwise(rounds)]
    assert gaps and all(0 < gap <= MAX_RETRY_PAUSE_S + 1e-9 for gap in gaps)
    assert max(times) <= 3.0 and replicas.attempts[0][2] == 0.3


async def test_a_redirect_is_followed_at_once_without_a_back_off() -> None:
    clock = ManualClock(start_s=0.0)
    replicas = Replicas(clock, leader="c")
    router = Router(replicas, ["a", "b", "c"], attempt_timeout_s=5.0, clock=clock, rng=random.Random(2))  # type: ignore[arg-type]
    assert await router.call(Ping()) == "pong"
    assert replicas.attempts[-1] == (0.0, "c", 5.0) and router.leader == "c"
    assert all(t == 0.0 for t, _, _ in replicas.attempts) and len(replicas.attempts) <= 2
