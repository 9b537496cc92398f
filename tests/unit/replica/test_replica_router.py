"""The kit's one router (replica/router.py): its retry rules, against a fake transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from feitian.coord.messages import SetRequest, StatusRequest
from feitian.errors import (
    ConnectionLostError,
    DeadlineExceededError,
    NotFoundError,
    NotLeaderError,
    UnavailableError,
)
from feitian.replica.router import Router
from feitian.rpc.context import current_deadline


class Transport:
    """Answers per target: a list of outcomes (an exception to raise or a value), the last one repeating."""

    def __init__(self, plan: dict[str, list[Any]]) -> None:
        self.plan = plan
        self.sent: list[tuple[str, str, float]] = []

    async def call(self, target: str, request: object, timeout: float, payload: Any = None) -> Any:
        self.sent.append((target, type(request).__name__, timeout))
        await asyncio.sleep(0)
        outcomes = self.plan[target]
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def router(transport: Transport, **kw: Any) -> Router:
    return Router(transport, list(transport.plan), **kw)  # type: ignore[arg-type]


WRITE = SetRequest(path="/k", value=b"v", client_id="c", request_seq=1)


async def test_a_hint_is_followed_at_once_and_the_leader_remembered() -> None:
    t = Transport({"a": [NotLeaderError("no", leader_hint="b")], "b": ["ok"]})
    r = router(t)
    r.leader = "a"
    assert await r.call(WRITE) == "ok"
    assert [s[0] for s in t.sent] == ["a", "b"] and r.leader == "b"
    assert await r.call(WRITE) == "ok" and t.sent[-1][0] == "b"


async def test_an_unavailable_replica_is_skipped_for_another() -> None:
    t = Transport({"a": [UnavailableError("election")], "b": ["ok"]})
    r = router(t, timeout_s=2)
    r.leader = "a"
    assert await r.call(WRITE) == "ok"
    assert t.sent[-1][0] == "b"


async def test_errors_of_the_service_itself_are_raised_at_once() -> None:
    t = Transport({"a": [NotFoundError("no such node")], "b": ["ok"]})
    r = router(t)
    r.leader = "a"
    with pytest.raises(NotFoundError):
        await r.call(WRITE)
    assert len(t.sent) == 1


async def test_a_fatal_reason_is_raised_at_once() -> None:
    t = Transport({"a": [UnavailableError("disk full", reason="disk_full")], "b": ["ok"]})
    r = router(t, fatal_reasons=("disk_full",))
    r.leader = "a"
    with pytest.raises(UnavailableError, match="disk full"):
        await r.call(WRITE)
    assert len(t.sent) == 1


async def test_a_lost_connection_is_not_resent_without_retry_lost() -> None:
    t = Transport({"a": [ConnectionLostError("connection lost")], "b": ["ok"]})
    r = router(t)
    r.leader = "a"
    with pytest.raises(ConnectionLostError):
        await r.call(WRITE, retry_lost=False)
    assert len(t.sent) == 1
    r.leader = "a"
    assert await r.call(WRITE) == "ok"  # retry_lost (the default): sent again elsewhere


async def test_a_write_whose_attempt_may_have_applied_gives_up_as_unknown_and_a_read_does_not() -> None:
    t = Transport({"a": [DeadlineExceededError("no answer")], "b": [NotLeaderError("no", leader_hint="")]})
    r = router(t, timeout_s=0.3, attempt_timeout_s=0.05)
    with pytest.raises(UnavailableError) as write:
        await r.call(WRITE)
    assert write.value.fields.get("outcome") == "unknown" and "may still be applied" in write.value.message
    with pytest.raises(UnavailableError) as read:
        await r.call(StatusRequest())
    assert "outcome" not in read.value.fields


async def test_the_deadline_of_the_call_being_handled_bounds_the_router() -> None:
    """Inside a handler whose caller allowed 0.2 s, a router with a 30 s timeout gives up within about 0.2 s."""
    t = Transport({"a": [NotLeaderError("no", leader_hint="")], "b": [NotLeaderError("no", leader_hint="")]})
    r = router(t, timeout_s=30)
    loop = asyncio.get_running_loop()
    token = current_deadline.set(loop.time() + 0.2)
    try:
        started = loop.time()
        with pytest.raises(UnavailableError, match="no leader"):
            await r.call(WRITE)
        assert loop.time() - started < 2.0
        assert all(timeout <= 0.2 for _, _, timeout in t.sent)
    finally:
        current_deadline.reset(token)


async def test_reads_stick_to_one_replica_and_move_on_when_it_fails() -> None:
    t = Transport({"a": [ConnectionLostError("gone")], "b": ["ok"]})
    r = router(t)
    r.current = "a"
    assert await r.call(StatusRequest(), leader=False) == "ok"
    assert r.current == "b"
    assert await r.call(StatusRequest(), leader=False) == "ok" and t.sent[-1][0] == "b"
