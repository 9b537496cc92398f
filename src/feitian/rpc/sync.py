"""A synchronous Kuafu client for scripts (KUAFU-3), built on the asynchronous one.

The client runs its own event loop in one background thread and hands each call to it. It refuses to be used
from a thread that is running an asyncio event loop: there, blocking would stall that loop (and a call whose
reply is produced by that same loop would never finish) — use :class:`feitian.rpc.Client` with ``await``
instead. From plain threads, any number of threads may share one SyncClient.

Supported patterns:

* ``client.call(addr, req)`` — blocks until the reply (or the call's error).
* ``handle = client.start(addr, req)`` — returns at once; ``handle.result(timeout)`` collects the reply later;
  ``handle.cancel()`` cancels it (the server is told).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

from feitian.errors import DeadlineExceededError
from feitian.rpc.client import Client, Reply
from feitian.rpc.config import ClientConfig
from feitian.rpc.core.messages import Request
from feitian.rpc.resolver import Resolver
from feitian.rpc.security import ClientTls, Credentials
from feitian.rpc.stream import Buffer
from feitian.runtime.loop_thread import LoopThread, refuse_inside_loop

R = TypeVar("R")
T = TypeVar("T")


class SyncCall(Generic[R]):
    """A call started with :meth:`SyncClient.start`."""

    def __init__(self, future: concurrent.futures.Future[Reply[R]]) -> None:
        self._future = future

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> R:
        """Wait up to ``timeout`` seconds for the reply (None: as long as the call lasts)."""
        return self.reply(timeout).value

    def reply(self, timeout: float | None = None) -> Reply[R]:
        _refuse_inside_loop()
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise DeadlineExceededError(f"no reply within {timeout}s (the call goes on)") from None

    def cancel(self) -> None:
        self._future.cancel()


def _refuse_inside_loop() -> None:
    refuse_inside_loop("SyncClient")


class SyncClient:
    """See module docstring. Close it (or use ``with``) to stop its thread."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        resolver: Resolver | None = None,
        tls: ClientTls | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._thread = LoopThread("SyncClient")
        try:
            self._client: Client = self._thread.run(self._make(config, resolver, tls, credentials))
        except BaseException:
            self._thread.stop()
            raise

    @staticmethod
    async def _make(
        config: ClientConfig | None, resolver: Resolver | None, tls: ClientTls | None, credentials: Credentials | None
    ) -> Client:
        return Client(config, resolver=resolver, tls=tls, credentials=credentials)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return self._thread.submit(coro)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._thread.run(coro)

    def call(
        self, address: str, request: Request[R], *, timeout: float | None = None, payload: Buffer | None = None
    ) -> R:
        return self._run(self._client.call(address, request, timeout=timeout, payload=payload))

    def call_full(
        self, address: str, request: Request[R], *, timeout: float | None = None, payload: Buffer | None = None
    ) -> Reply[R]:
        return self._run(self._client.call_full(address, request, timeout=timeout, payload=payload))

    def start(
        self, address: str, request: Request[R], *, timeout: float | None = None, payload: Buffer | None = None
    ) -> SyncCall[R]:
        _refuse_inside_loop()
        return SyncCall(self._submit(self._client.call_full(address, request, timeout=timeout, payload=payload)))

    def call_text(self, address: str, method: str, text: str, *, timeout: float | None = None) -> str:
        return self._run(self._client.call_text(address, method, text, timeout=timeout))

    def call_map(
        self, address: str, method: str, mapping: dict[str, str], *, timeout: float | None = None
    ) -> dict[str, str]:
        return self._run(self._client.call_map(address, method, mapping, timeout=timeout))

    def close(self) -> None:
        if self._thread.closed:
            return
        self._thread.run(self._client.close())
        self._thread.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
