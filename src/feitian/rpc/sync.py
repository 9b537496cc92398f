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

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

from feitian.errors import DeadlineExceededError, InvalidArgumentError
from feitian.rpc.client import Client, Reply
from feitian.rpc.config import ClientConfig
from feitian.rpc.core.messages import Request
from feitian.rpc.resolver import Resolver
from feitian.rpc.security import ClientTls, Credentials
from feitian.rpc.stream import Buffer
from feitian.runtime.eventloop import loop_factory

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
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise InvalidArgumentError(
        "SyncClient used from a thread running an asyncio event loop",
        hint="in async code use feitian.rpc.Client and await its calls",
    )


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
        _refuse_inside_loop()
        self._loop = loop_factory()()
        self._thread = threading.Thread(target=self._loop.run_forever, name="feitian-rpc-sync", daemon=True)
        self._thread.start()
        try:
            self._client: Client = self._submit(self._make(config, resolver, tls, credentials)).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            raise
        self._closed = False

    @staticmethod
    async def _make(
        config: ClientConfig | None, resolver: Resolver | None, tls: ClientTls | None, credentials: Credentials | None
    ) -> Client:
        return Client(config, resolver=resolver, tls=tls, credentials=credentials)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        _refuse_inside_loop()
        if self._closed:
            coro.close()
            raise InvalidArgumentError("SyncClient is closed")
        future = self._submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

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
        if self._closed:
            return
        self._closed = True
        self._submit(self._client.close()).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
