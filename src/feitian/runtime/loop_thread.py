"""An event loop in a thread of its own: what feitian's synchronous clients (for scripts) are built on.

:class:`LoopThread` runs one loop (uvloop where available) in a daemon thread; :meth:`LoopThread.run` hands it a
coroutine and blocks for the result. Blocking is refused in a thread that runs an asyncio loop itself: there it
would stall that loop (and a call whose answer that loop produces would never finish) — async code uses the
async clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from feitian.errors import InvalidArgumentError
from feitian.runtime.eventloop import loop_factory

T = TypeVar("T")


def refuse_inside_loop(what: str = "a synchronous feitian client") -> None:
    """Raise InvalidArgumentError if the calling thread runs an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise InvalidArgumentError(
        f"{what} used from a thread running an asyncio event loop",
        hint="in async code use the async client and await its calls",
    )


class LoopThread:
    def __init__(self, name: str) -> None:
        refuse_inside_loop(name)
        self.name = name
        self.loop = loop_factory()()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"feitian-{name}", daemon=True)
        self._thread.start()
        self.closed = False

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop; returns at once."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (Ctrl-C cancels it)."""
        refuse_inside_loop(self.name)
        if self.closed:
            coro.close()
            raise InvalidArgumentError(f"{self.name} is closed")
        future = self.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop and its thread (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
