"""The node's security agent (security/authority/agent.py) on a manual clock: its first fetch gives up, its long polls
retry and its capability renewals come at half the remaining lifetime — all on the injected clock, without real
waiting. The authority is replaced at the one call the agent makes (``Client.call``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from feitian.errors import UnavailableError
from feitian.security import KeyPair, RevocationList, RevocationView
from feitian.security.authority.agent import SecurityAgent
from feitian.security.authority.messages import GetRevocations, Issue, IssueReply, RevocationsReply
from feitian.security.core.capability import issue_capability
from feitian.security.kuafu import CapabilitySet
from feitian.testing.clock import ManualClock

_NS = 1_000_000_000
AUTHORITY = KeyPair.generate("authority")
NODE = KeyPair.generate("node-1")


def chain(clock: ManualClock, ttl_s: float) -> bytes:
    return issue_capability(
        AUTHORITY,
        holder_key=NODE.public_key,
        holder_name=NODE.name,
        resources=("coord:/apps",),
        rights=("read",),
        now_ns=clock.wall_ns(),
        ttl_ns=int(ttl_s * _NS),
    ).to_bytes()


class Authority:
    """Answers like the authority: long polls return at once here; ``down`` makes every call fail."""

    def __init__(self, clock: ManualClock, ttl_s: float) -> None:
        self.clock = clock
        self.ttl_s = ttl_s
        self.down = False
        self.polls: list[float] = []
        self.issued: list[float] = []

    async def call(self, address: str, request: Any, *, timeout: float | None = None) -> Any:
        now = self.clock.monotonic_ns() / _NS
        if isinstance(request, GetRevocations):
            self.polls.append(now)
            if self.down:
                raise UnavailableError(f"connect {address}: refused")
            await self.clock.sleep(request.wait_s)  # the long poll: an answer at least every wait_s
            return RevocationsReply(0, RevocationList().to_bytes())
        assert isinstance(request, Issue)
        self.issued.append(now)
        if self.down:
            raise UnavailableError(f"connect {address}: refused")
        return IssueReply([chain(self.clock, self.ttl_s)])

    async def refresh_credentials(self) -> None:
        return None


def agent_on(clock: ManualClock, authority: Authority, credentials: CapabilitySet) -> SecurityAgent:
    return SecurityAgent(
        client=authority,  # type: ignore[arg-type]
        credentials=credentials,
        view=RevocationView(),
        authority="10.0.0.1:7000",
        clock=clock,
        refresh_s=10.0,
    )


async def test_the_first_fetch_gives_up_after_its_timeout_on_the_clock() -> None:
    clock = ManualClock(start_s=0.0)
    authority = Authority(clock, ttl_s=3600)
    authority.down = True
    agent = agent_on(clock, authority, CapabilitySet())
    starting = asyncio.ensure_future(agent.start(timeout_s=5.0))
    await clock.advance(6.0)
    with pytest.raises(UnavailableError, match=r"no revocation list from the authority at 10\.0\.0\.1:7000 within 5s"):
        await starting
    assert authority.polls == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # one a second until the 5 s were up


async def test_polls_retry_after_a_second_and_renewals_come_at_half_the_remaining_lifetime() -> None:
    clock = ManualClock(start_s=0.0)
    authority = Authority(clock, ttl_s=400)
    credentials = CapabilitySet([chain(clock, ttl_s=400)], clock=clock)
    agent = agent_on(clock, authority, credentials)
    await agent.start()
    try:
        await clock.advance(35.0)
        assert authority.polls == [0.0, 0.0, 10.0, 20.0, 30.0]  # the first fetch, then a long poll after another
        authority.down = True
        await clock.advance(10.0)  # the poll waiting since 30 s answers at 40 s; the next fails, and so on
        assert authority.polls[5:] == [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]
        assert agent.fetch_failures == 6 and agent.poller.running
        authority.down = False
        # 400 s capabilities from 0 s: renewed at 200 s; the fresh ones expire at 600 s: renewed at 400 s
        await clock.advance(400.0 - 45.0)
        assert authority.issued == [200.0, 400.0] and agent.renewals == 2
        authority.down = True
        await clock.advance(250.0)  # due at 600 s; failing: retried every 10 s
        assert authority.issued[2:] == [600.0, 610.0, 620.0, 630.0, 640.0, 650.0]
        assert agent.renewer.errors == 6 and agent.renewer.running
        authority.down = False
        await clock.advance(10.0)
        assert authority.issued[-1] == 660.0 and agent.renewals == 3
    finally:
        await agent.stop()
    assert not agent.poller.running and not agent.renewer.running and clock.sleepers == 0
