"""The kit's service base (replica/service.py): how long a handler may wait for its proposal or read."""

from __future__ import annotations

import asyncio

from feitian.replica.service import DEADLINE_MARGIN_S, remaining_s
from feitian.rpc import CallContext
from feitian.rpc.context import PeerInfo, current_deadline


def _ctx(deadline: float | None) -> CallContext:
    return CallContext("kv.Put", 1, PeerInfo("unix", "test"), deadline, b"")


async def test_the_callers_deadline_bounds_the_wait_and_the_default_applies_without_one() -> None:
    now = asyncio.get_running_loop().time()
    assert remaining_s(_ctx(None), 10.0) == 10.0
    assert remaining_s(_ctx(now + 2.0), 10.0) <= 2.0 - DEADLINE_MARGIN_S
    assert remaining_s(_ctx(now + 100.0), 10.0) == 10.0
    assert remaining_s(_ctx(now - 1.0), 10.0) == 0.01  # already past: the shortest wait, which then times out


async def test_without_a_context_the_deadline_of_the_call_being_handled_applies() -> None:
    assert remaining_s(None, 10.0) == 10.0
    token = current_deadline.set(asyncio.get_running_loop().time() + 1.0)
    try:
        assert remaining_s(None, 10.0) <= 1.0
    finally:
        current_deadline.reset(token)
