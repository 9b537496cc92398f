"""Naming and service discovery (NUWA-7) with the New/Old client cache (NUWA-8).

A server registers itself as an ephemeral node ``/services/<name>/<server>`` whose value is its address::

    registration = await register(client, "echo", "echo-1", "tcp://127.0.0.1:7000")   # kept registered
    ...
    await registration.close()

It dies with the server's session, so a dead server disappears by itself; a live server whose session was
lost registers again under a new one.

Clients resolve a name through a :class:`NameCache`. Each item is **New** (answered locally) or **Old** (asked
from the replicas): a lookup makes it New; a change notification under ``/services/<name>/`` makes it Old. One
subscription to ``/services/`` (from the revision of the first lookup, resumed across failovers) serves every
item, and a history gap (``Resync``) makes every item Old. So if nothing changes, a client asks the replicas
about a name at most once (``cache.lookups`` counts the requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from feitian.coord.client.recipes.lock import list_all
from feitian.coord.client.watch import Resync
from feitian.coord.core import Selector
from feitian.errors import AlreadyExistsError, FeitianError, NotFoundError, SessionExpiredError

if TYPE_CHECKING:
    from feitian.coord.client.client import CoordClient

log = logging.getLogger(__name__)

__all__ = ["SERVICES_ROOT", "NameCache", "Registration", "register", "service_dir"]

SERVICES_ROOT = "/services/"
RETRY_S = 0.5  # pause before registering again after a failure
MAX_NAMES = 10_000  # names a NameCache keeps; beyond it the one cached longest is dropped (and asked again)
UNKNOWN_CHANGE = 2**63 - 1  # "changed at some revision we cannot know": newer than any lookup


def service_dir(name: str, root: str = SERVICES_ROOT) -> str:
    return f"{root}{name}/"


class Registration:
    """Keeps ``/services/<name>/<server>`` = address registered under this client's live session."""

    def __init__(self, client: CoordClient, name: str, server: str, address: str, root: str = SERVICES_ROOT) -> None:
        self.client = client
        self.path = service_dir(name, root) + server
        self.address = address
        self.registered = asyncio.Event()
        self.registrations = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self.client.spawn(self._keep())

    async def _keep(self) -> None:
        while True:
            try:
                session = await self.client.session()
                await self._register(session.session_id)
                self.registrations += 1
                self.registered.set()
                await session.wait_lost()
                self.registered.clear()
                log.warning("nuwa: session lost; registering %s again", self.path)
            except asyncio.CancelledError:
                raise
            except FeitianError as exc:
                log.warning("nuwa: cannot register %s yet: %s", self.path, exc.message)
                await self.client.clock.sleep(RETRY_S)

    async def _register(self, session_id: int) -> None:
        try:
            await self.client.create(self.path, self.address.encode(), ephemeral=True, parents=True)
        except AlreadyExistsError:
            # Left by an earlier session of this server (a restart before the old session expired): replace it.
            stat = await self.client.stat(self.path)
            if stat.ephemeral_owner == session_id:
                return
            with contextlib.suppress(NotFoundError):
                await self.client.delete(self.path, version=stat.version)
            await self.client.create(self.path, self.address.encode(), ephemeral=True, parents=True)

    async def close(self) -> None:
        """Stop keeping the registration and remove it (it also goes with the session)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        session = self.client.current_session
        if session is not None and session.alive:
            with contextlib.suppress(NotFoundError, SessionExpiredError):
                await self.client.delete(self.path)


async def register(client: CoordClient, name: str, server: str, address: str) -> Registration:
    """Register ``server`` of service ``name`` at ``address`` and keep it registered (see module docstring).
    Returns at once; ``await registration.registered.wait()`` to know it is visible."""
    registration = Registration(client, name, server, address)
    registration.start()
    return registration


class _Item:
    __slots__ = ("addresses", "fresh", "revision")

    def __init__(self, addresses: list[str], revision: int) -> None:
        self.addresses = addresses
        self.revision = revision
        self.fresh = True  # New: answered locally; Old: asked again


class NameCache:
    """Resolves service names to the addresses of their live servers (see the module docstring)."""

    def __init__(self, client: CoordClient, root: str = SERVICES_ROOT, *, max_names: int = MAX_NAMES) -> None:
        self.client = client
        self.root = root
        self.max_names = max_names
        self.lookups = 0  # requests sent to the replicas for names
        self.items: dict[str, _Item] = {}  # at most max_names: the item cached longest goes first
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._watching: asyncio.Task[None] | None = None
        self._lookups: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # name -> (lock, [callers using it])
        # For each name being looked up: the newest revision of a change seen for it meanwhile. The lookup's
        # answer may be older than that change (its reply can arrive after the change's event): it is then
        # installed Old, not New.
        self._changed_during: dict[str, int] = {}

    async def resolve(self, name: str) -> list[str]:
        """The addresses registered for ``name`` (sorted by server name); [] if none."""
        item = self.items.get(name)
        if item is not None and item.fresh:
            return list(item.addresses)
        lock, users = self._lookups.setdefault(name, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:  # one lookup at a time per name; the others take its answer
                item = self.items.get(name)
                if item is not None and item.fresh:
                    return list(item.addresses)
                return await self._lookup(name)
        finally:
            users[0] -= 1
            if users[0] == 0:  # nobody holds or waits for it (counting waiters: a lock released is not yet free)
                del self._lookups[name]

    async def _lookup(self, name: str) -> list[str]:
        self.lookups += 1
        self._changed_during[name] = -1
        try:
            children, values, revision = await list_all(
                self.client, service_dir(name, self.root), values=True, missing_ok=True
            )
        finally:
            changed = self._changed_during.pop(name)
        addresses = [v.decode() for c, v in zip(children, values, strict=True) if not c.is_directory and v]
        item = _Item(addresses, revision)
        item.fresh = changed <= revision
        self.items.pop(name, None)
        self.items[name] = item
        if len(self.items) > self.max_names:  # drop the longest cached, but never a name someone follows
            for old in [n for n in self.items if not self._listeners.get(n)][: len(self.items) - self.max_names]:
                del self.items[old]
        self._start_watching(revision)
        return list(addresses)

    def on_change(self, name: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever ``name``'s item turns Old; returns an unsubscribe function."""
        self._listeners.setdefault(name, []).append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.get(name, []).remove(callback)

        return remove

    def _start_watching(self, revision: int) -> None:
        if self._watching is None or self._watching.done():
            self._watching = self.client.spawn(self._watch(revision))

    async def _watch(self, revision: int) -> None:
        watch = self.client.watch(Selector.subtree(self.root), since=revision)
        while True:
            try:
                async for item in watch:
                    if isinstance(item, Resync):
                        self._mark_all_old()
                        continue
                    rest = item.path[len(self.root) :]
                    name = rest.split("/", 1)[0]
                    if name:
                        if name in self._changed_during:
                            self._changed_during[name] = max(self._changed_during[name], item.revision)
                        self._mark_old(name, item.revision)
            except asyncio.CancelledError:
                raise
            except FeitianError as exc:  # no replica answered for a while: keep trying from the same revision
                log.warning("nuwa name cache: subscription interrupted: %s", exc.message)
                self._mark_all_old()
                await self.client.clock.sleep(RETRY_S)

    def _mark_all_old(self) -> None:
        for name in self._changed_during:  # lookups under way may miss what the gap held
            self._changed_during[name] = UNKNOWN_CHANGE
        for name in list(self.items):
            self._mark_old(name)

    def _mark_old(self, name: str, revision: int | None = None) -> None:
        item = self.items.get(name)
        if item is None or not item.fresh or (revision is not None and revision <= item.revision):
            return
        item.fresh = False
        for callback in list(self._listeners.get(name, ())):
            callback()

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)
