"""No background failure of the client is left for asyncio to report as "exception was never retrieved"
(issue 16, bug 6): a connect task outlives a caller whose deadline passed, and a refused capability leaves the
other presentations of that connection unanswered."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from feitian.deploy.cluster import free_ports
from feitian.errors import UnavailableError
from feitian.rpc import Client, ClientConfig, Health
from feitian.testing.waiting import wait_for_condition


def free_port() -> int:
    (port,) = free_ports(1)
    return port


async def test_connect_task_outliving_its_caller_is_collected() -> None:
    loop_errors: list[dict[str, Any]] = []  # asyncio reports unretrieved failures to the loop's handler
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens: every attempt is refused
    async with Client(ClientConfig(connect_timeout_s=0.5, backoff_max_s=0.05)) as client:
        with pytest.raises(UnavailableError, match="before the deadline"):
            await client.call(address, Health(), timeout=0.05)  # gives up while the connect task goes on
        channel = client._channels[address]
        task = channel._connecting
        assert task is not None and not task.done()
        await wait_for_condition(task.done, timeout_s=10, what="the connect task gave up")
        assert not task.cancelled()  # it failed (its exception is not looked at here: that would collect it)
        # The next call starts a new connect task; the old one is dropped, as a node does it all day long.
        with pytest.raises(UnavailableError):
            await client.call(address, Health(), timeout=0.05)
        assert channel._connecting is not task
    del task, channel
    gc.collect()
    assert [c.get("message") for c in loop_errors] == []
