"""A barrier (NUWA-6): ``await Barrier(client, "/barriers/stage-1/", parties=3).wait("worker-2")`` returns
once ``parties`` members have entered. Members are ephemeral nodes: a member that dies leaves the barrier."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from feitian.coord.recipes.lock import list_all
from feitian.errors import AlreadyExistsError

if TYPE_CHECKING:
    from feitian.coord.client import CoordClient

__all__ = ["Barrier"]


class Barrier:
    def __init__(self, client: CoordClient, path: str, parties: int) -> None:
        self.client = client
        self.dir = path if path.endswith("/") else path + "/"
        self.parties = parties

    async def wait(self, member: str) -> int:
        """Enter as ``member``; return the number of members once at least ``parties`` have entered."""
        with contextlib.suppress(AlreadyExistsError):
            await self.client.create(self.dir + member, ephemeral=True, parents=True)
        while True:
            children, _, revision = await list_all(self.client, self.dir)
            if len(children) >= self.parties:
                return len(children)
            async with self.client.watch(self.dir, since=revision) as watch:
                await watch.__anext__()
