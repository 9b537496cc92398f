"""A queue (NUWA-6): ``put(value)`` appends a persistent sequential node; ``get()`` takes the oldest one — the
delete (at the item's version) decides which consumer wins, so every item is taken exactly once — or waits for
one. Items survive restarts and failovers (they are persistent nodes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feitian.coord.core import EventKind
from feitian.coord.recipes.lock import list_all
from feitian.coord.watch import Resync
from feitian.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from feitian.coord.client import CoordClient

__all__ = ["Queue"]


class Queue:
    def __init__(self, client: CoordClient, path: str) -> None:
        self.client = client
        self.dir = path if path.endswith("/") else path + "/"

    async def put(self, value: bytes) -> str:
        created = await self.client.create(self.dir + "item-", value, sequential=True, parents=True)
        return created.stat.path

    async def get(self) -> bytes:
        """Take the oldest item, waiting for one if the queue is empty."""
        while True:
            try:
                children, values, revision = await list_all(self.client, self.dir, values=True)
            except NotFoundError:
                children, values, revision = [], [], (await self.client.exists(self.dir)).revision
            for stat, value in zip(children, values, strict=True):
                try:
                    await self.client.delete(stat.path, version=stat.version)
                except (NotFoundError, ConflictError):
                    continue  # another consumer took it
                return value
            async with self.client.watch(self.dir, since=revision) as watch:
                async for event in watch:
                    if isinstance(event, Resync) or event.kind is EventKind.CREATED:
                        break
