"""Resumable subscriptions (NUWA-5): a :class:`Watch` yields every event of a selector, across failovers.

::

    async with client.watch("/apps/", recursive=True) as watch:   # from now; or since=REVISION
        async for item in watch:
            if isinstance(item, Resync):     # the history after watch.revision was compacted:
                reload(item.nodes)           #   the current state, at item.revision; events follow from there
            else:
                print(item.revision, item.kind, item.path)

The watch long-polls one replica (``coord.Watch``: a read barrier, then the events after its revision, or a
wait for the next one). It keeps the last revision it has fully delivered (``watch.revision``); when a replica
fails it asks another one from that revision, so no event is lost or repeated. If the events it missed were
compacted away it yields a :class:`Resync` — a clear signal plus the current state — never a silent gap.
Events carry no values: read the node (at or after ``event.revision``) to see it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import msgspec

from feitian.coord.core import Compacted, Event, NodeStat, Selector
from feitian.coord.messages import SelectRequest, WatchRequest
from feitian.errors import InvalidArgumentError

if TYPE_CHECKING:
    from feitian.coord.client.client import CoordClient

__all__ = ["Resync", "Watch", "selector_for"]

DEFAULT_WAIT_MS = 10_000


class Resync(msgspec.Struct, frozen=True, kw_only=True):
    """Events after ``compacted.since`` are gone; ``nodes`` is the current state the selector covers, read from
    ``revision`` on (a large state is read in pages, the later ones at later revisions); events continue after
    ``revision``, so a change made while the pages were read may appear both in ``nodes`` and as an event."""

    compacted: Compacted
    nodes: tuple[NodeStat, ...]
    revision: int


def selector_for(target: str | Selector, *, recursive: bool = False) -> Selector:
    """A selector from a path: a file → its node; a directory (``/a/``) → its entries, or with ``recursive``
    its whole subtree."""
    if isinstance(target, Selector):
        return target
    if target.endswith("/"):
        return Selector.subtree(target) if recursive else Selector.children(target)
    if recursive:
        raise InvalidArgumentError(f"watch {target}: recursive needs a directory path (ending with '/')")
    return Selector.node(target)


class Watch:
    """An async iterator of :class:`~feitian.coord.core.Event` and :class:`Resync` (see the module docstring)."""

    def __init__(
        self, client: CoordClient, selector: Selector, since: int | None = None, *, wait_ms: int = DEFAULT_WAIT_MS
    ) -> None:
        self.client = client
        self.selector = selector
        self.revision = -1 if since is None else since  # every event up to it has been delivered
        self.wait_ms = wait_ms
        self.polls = 0
        self._buffer: collections.deque[Event | Resync] = collections.deque()
        self._buffered_through = self.revision  # the buffer holds every event up to it
        self._closed = False

    async def start(self) -> int:
        """Fix the starting revision now (a watch made without ``since`` starts from the current one)."""
        if self.revision < 0:
            await self._poll(wait_ms=0)
        return self.revision

    async def __aenter__(self) -> Watch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._buffer.clear()

    def __aiter__(self) -> AsyncIterator[Event | Resync]:
        return self

    async def __anext__(self) -> Event | Resync:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            await self._poll(self.wait_ms)
        item = self._buffer.popleft()
        if isinstance(item, Resync):
            self.revision = item.revision
        else:
            nxt = self._buffer[0] if self._buffer else None
            if nxt is None:
                self.revision = self._buffered_through
            elif isinstance(nxt, Event) and nxt.revision != item.revision:
                self.revision = item.revision  # the next event starts a new revision: this one is whole
        return item

    async def next(self, timeout_s: float | None = None) -> Event | Resync:
        """The next item, waiting at most ``timeout_s`` (TimeoutError). Safe to call again after a timeout: a
        cancelled poll delivered nothing, and the next one asks from the same revision."""
        return await asyncio.wait_for(self.__anext__(), timeout_s)

    async def _poll(self, wait_ms: int) -> None:
        since = self._buffered_through
        request = WatchRequest(self.selector, since, wait_ms)
        self.polls += 1
        reply = await self.client.router.call(
            request,
            leader=False,
            timeout_s=max(self.client.timeout_s, wait_ms / 1000 + self.client.attempt_timeout_s),
            attempt_timeout_s=wait_ms / 1000 + self.client.attempt_timeout_s,
        )
        if self._closed:
            return
        if reply.compacted is not None:
            self._buffer.append(await self._resync(reply.compacted))
            return
        self._buffer.extend(reply.events)
        if since < 0 and not reply.events:
            self.revision = reply.through_revision
        self._buffered_through = max(self._buffered_through, reply.through_revision)
        if not self._buffer:
            self.revision = self._buffered_through

    async def _resync(self, compacted: Compacted) -> Resync:
        nodes: list[NodeStat] = []
        start_after = ""
        revision = -1
        while True:
            page = await self.client.router.call(
                SelectRequest(self.selector, start_after=start_after), leader=False, timeout_s=self.client.timeout_s
            )
            if revision < 0:
                revision = page.revision  # events after the first page's revision follow (at least once)
            nodes.extend(page.nodes)
            if not page.more or not page.nodes:
                break
            start_after = page.nodes[-1].path
        self._buffered_through = revision
        return Resync(compacted=compacted, nodes=tuple(nodes), revision=revision)
