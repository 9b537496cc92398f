"""A barrier (NUWA-6): ``await Barrier(client, "/barriers/stage-1/", parties=3).wait("worker-2")`` returns
once ``parties`` members have entered.

Members are ephemeral nodes in the barrier's directory: a member that dies before the barrier opens leaves it.
The first member to see ``parties`` members opens the barrier for good by creating the persistent node
``ready`` there; members still waiting pass on seeing it, even if members that passed already left (closed
their sessions). A barrier opens once: use a new directory (or delete this one) for the next round."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from feitian.coord.client.recipes.lock import list_all
from feitian.errors import AlreadyExistsError, InvalidArgumentError

if TYPE_CHECKING:
    from feitian.coord.client.client import CoordClient

__all__ = ["READY", "Barrier"]

READY = "ready"  # the node that marks an open barrier (not a member name)


class Barrier:
    def __init__(self, client: CoordClient, path: str, parties: int) -> None:
        if parties < 1:
            raise InvalidArgumentError(f"barrier {path}: parties must be >= 1, not {parties}")
        self.client = client
        self.dir = path if path.endswith("/") else path + "/"
        self.parties = parties

    async def wait(self, member: str) -> int:
        """Enter as ``member``; return once the barrier is open: the number of members present when this one
        passed (at least ``parties`` if it opened the barrier; fewer if others had left since it opened)."""
        if member == READY or "/" in member:
            raise InvalidArgumentError(
                f"barrier {self.dir}: {member!r} cannot be a member name", hint=f"not {READY!r}, and no '/'"
            )
        with contextlib.suppress(AlreadyExistsError):
            await self.client.create(self.dir + member, ephemeral=True, parents=True)
        while True:
            children, _, revision = await list_all(self.client, self.dir)
            names = {c.path[len(self.dir) :] for c in children}
            members = len(names - {READY})
            if READY in names:
                return members
            if members >= self.parties:
                with contextlib.suppress(AlreadyExistsError):
                    await self.client.create(self.dir + READY)
                return members
            async with self.client.watch(self.dir, since=revision) as watch:
                await watch.__anext__()
