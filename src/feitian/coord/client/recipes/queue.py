"""A queue (NUWA-6): ``put(value)`` appends a persistent sequential node; ``get()`` takes the oldest one — the
delete (at the item's version) decides which consumer wins, so every item is taken by one consumer — or waits for
one. Items survive restarts and failovers (they are persistent nodes)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from feitian.coord.client.recipes.lock import list_all
from feitian.coord.client.watch import Resync
from feitian.coord.core import EventKind
from feitian.errors import ConflictError, DeadlineExceededError, NotFoundError

if TYPE_CHECKING:
    from feitian.coord.client.client import CoordClient

__all__ = ["Queue"]


class Queue:
    def __init__(self, client: CoordClient, path: str) -> None:
        self.client = client
        self.dir = path if path.endswith("/") else path + "/"

    async def put(self, value: bytes) -> str:
        created = await self.client.create(self.dir + "item-", value, sequential=True, parents=True)
        return created.stat.path

    async def get(self, *, timeout_s: float | None = None) -> bytes:
        """Take the oldest item, waiting for one if the queue is empty; DeadlineExceededError if none came within
        ``timeout_s``. The timeout only ever interrupts the wait: a take under way (its delete sent) finishes
        and returns the item. Cancelling ``get()`` instead may lose an item whose delete was already sent —
        it is taken, but nobody receives it."""
        clock = self.client.clock
        give_up_ns = None if timeout_s is None else clock.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            children, values, revision = await list_all(self.client, self.dir, values=True, missing_ok=True)
            for stat, value in zip(children, values, strict=True):
                try:
                    await self.client.delete(stat.path, version=stat.version)
                except (NotFoundError, ConflictError):
                    continue  # another consumer took it
                return value
            left = None if give_up_ns is None else max(0.0, (give_up_ns - clock.monotonic_ns()) / 1e9)
            try:  # the deadline covers the waits only
                async with asyncio.timeout(left), self.client.watch(self.dir, since=revision) as watch:
                    async for event in watch:
                        if isinstance(event, Resync) or event.kind is EventKind.CREATED:
                            break
            except TimeoutError:
                raise DeadlineExceededError(f"queue {self.dir}: no item within {timeout_s}s") from None
