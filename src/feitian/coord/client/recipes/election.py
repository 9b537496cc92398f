"""Leader election (NUWA-6): campaign, observe the current leader, resign — leadership tied to a session.

::

    election = client.election("scheduler")
    async with election.campaign(b"tcp://10.0.0.5:7000") as leadership:   # blocks until elected
        ...                       # cancelled (and SessionExpiredError raised) if the session is lost
    leader = await election.leader()                 # Leader(value, path, token) or None
    async for leader in election.observe(): ...     # every change of leader (None: nobody leads)

Candidates are ephemeral sequential nodes ``/elections/<name>/candidate-N`` holding their value; the lowest
leads (it is the lock recipe with the candidate's value in its node). ``leadership.token`` grows with every
new leader: use it to fence what the leader writes. Resign by leaving the block or ``leadership.resign()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import msgspec

from feitian.coord.client.recipes.lock import Lock, contenders, list_all

if TYPE_CHECKING:
    from feitian.coord.client.client import CoordClient

__all__ = ["ELECTIONS_ROOT", "Election", "Leader"]

ELECTIONS_ROOT = "/elections/"
CANDIDATE = "candidate-"


class Leader(msgspec.Struct, frozen=True, kw_only=True):
    value: bytes
    path: str
    token: int  # the leader node's create_revision
    revision: int  # read at


class Election:
    def __init__(self, client: CoordClient, name: str, *, root: str = ELECTIONS_ROOT) -> None:
        self.client = client
        self.name = name
        self.dir = f"{root}{name}/"

    def campaign(self, value: bytes) -> Lock:
        """A candidacy: ``async with`` it (or ``await ….acquire()``) to wait for leadership."""
        return Lock(self.client, self.dir, value=value, prefix=CANDIDATE)

    async def leader(self) -> Leader | None:
        """The current leader (a linearizable read), or None."""
        return (await self._lookup())[0]

    async def _lookup(self) -> tuple[Leader | None, int]:
        children, values, revision = await list_all(self.client, self.dir, values=True, missing_ok=True)
        value_of = {c.path: v for c, v in zip(children, values, strict=True)}
        ranked = [c for c in contenders(self.dir, children) if c[1] == "candidate"]
        if not ranked:
            return None, revision
        stat = ranked[0][2]
        return Leader(
            value=value_of[stat.path], path=stat.path, token=stat.create_revision, revision=revision
        ), revision

    async def observe(self) -> AsyncIterator[Leader | None]:
        """The current leader, then each change of leader (subscribed to the election's directory from the
        revision the current leader was read at, so no change is missed)."""
        current, since = await self._lookup()
        yield current
        async with self.client.watch(self.dir, since=since) as watch:
            async for _ in watch:
                now, _ = await self._lookup()
                if (now is None) != (current is None) or (
                    now is not None and current is not None and now.path != current.path
                ):
                    current = now
                    yield current
