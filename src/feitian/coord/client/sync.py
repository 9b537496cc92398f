"""A synchronous Nuwa client for scripts, built on :class:`CoordClient` (same rules as ``feitian.rpc.sync``).

The client runs its own event loop in one background thread; its session is kept alive there. It refuses to be
used from a thread running an asyncio event loop (use ``CoordClient`` with ``await`` there)::

    with SyncCoordClient(["tcp://127.0.0.1:7001", ...]) as nuwa:
        nuwa.create("/apps/conf", b"v1", parents=True)
        print(nuwa.get("/apps/conf").value)
        with nuwa.lock("/locks/job") as lease:
            lease.check()                 # raises SessionExpiredError once the session is lost
            write_something(fence=lease.token)
        for event in nuwa.watch("/apps/", count=3): ...

A synchronous lock body cannot be interrupted: it must call ``lease.check()`` before acting, and fence with
``lease.token``.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from feitian.coord.client.client import CoordClient
from feitian.coord.client.recipes.lock import Lock, LockLease
from feitian.coord.client.watch import Resync
from feitian.coord.core import (
    Created,
    Deleted,
    Event,
    ExistsResult,
    GetResult,
    NodeStat,
    Op,
    Selector,
    TxnCommitted,
    Updated,
)
from feitian.coord.messages import ListReply
from feitian.errors import SessionExpiredError
from feitian.rpc import Client, ClientConfig, ClientTls, Credentials
from feitian.runtime.loop_thread import LoopThread

__all__ = ["SyncCoordClient", "SyncLock"]

T = TypeVar("T")


class SyncCoordClient:
    def __init__(
        self,
        addresses: Sequence[str],
        config: ClientConfig | None = None,
        *,
        tls: ClientTls | None = None,
        credentials: Credentials | None = None,
        **options: Any,
    ) -> None:
        self._thread = LoopThread("SyncCoordClient")
        config = config or ClientConfig(name="nuwa-sync", connect_timeout_s=0.5)

        async def make() -> tuple[Client, CoordClient]:
            rpc = Client(config, tls=tls, credentials=credentials)
            return rpc, CoordClient(rpc, list(addresses), **options)

        try:
            self._rpc, self.client = self._thread.run(make())
        except BaseException:
            self._thread.stop()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of the async client on this client's loop and wait for it."""
        return self._thread.run(coro)

    def get(self, path: str, *, stale: bool = False) -> GetResult:
        return self.run(self.client.get(path, stale=stale))

    def stat(self, path: str, *, stale: bool = False) -> NodeStat:
        return self.run(self.client.stat(path, stale=stale))

    def exists(self, path: str, *, stale: bool = False) -> ExistsResult:
        return self.run(self.client.exists(path, stale=stale))

    def list(self, path: str, *, values: bool = False, start_after: str = "", limit: int = 0) -> ListReply:
        return self.run(self.client.list(path, values=values, start_after=start_after, limit=limit))

    def create(
        self, path: str, value: bytes = b"", *, ephemeral: bool = False, sequential: bool = False, parents: bool = False
    ) -> Created:
        return self.run(self.client.create(path, value, ephemeral=ephemeral, sequential=sequential, parents=parents))

    def set(self, path: str, value: bytes, *, version: int | None = None) -> Updated:
        return self.run(self.client.set(path, value, version=version))

    def delete(self, path: str, *, version: int | None = None) -> Deleted:
        return self.run(self.client.delete(path, version=version))

    def txn(self, ops: Sequence[Op]) -> TxnCommitted:
        return self.run(self.client.txn(ops))

    def lock(self, path: str, *, shared: bool = False) -> SyncLock:
        return SyncLock(self, self.client.lock(path, shared=shared))

    def watch(
        self,
        target: str | Selector,
        *,
        recursive: bool = False,
        since: int | None = None,
        count: int | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[Event | Resync]:
        """Yield events (and Resync signals): ``count`` of them, or until none comes for ``timeout_s``."""
        watch = self.client.watch(target, recursive=recursive, since=since)
        self.run(watch.start())
        delivered = 0
        try:
            while count is None or delivered < count:
                try:
                    item = self.run(watch.next(timeout_s))
                except TimeoutError:
                    return
                delivered += 1
                yield item
        finally:
            watch.close()

    def close(self) -> None:
        if self._thread.closed:
            return
        self.run(self.client.close())
        self.run(self._rpc.close())
        self._thread.stop()

    def __enter__(self) -> SyncCoordClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncLock:
    """``with nuwa.lock(path) as lease:`` — acquires on entry, releases on exit."""

    def __init__(self, owner: SyncCoordClient, lock: Lock) -> None:
        self.owner = owner
        self.lock = lock
        self.lease: LockLease | None = None

    def acquire(self, timeout_s: float | None = None) -> LockLease:
        self.lease = self.owner.run(self.lock.acquire(timeout_s=timeout_s))
        return self.lease

    def release(self) -> None:
        if self.lease is not None:
            self.owner.run(self.lease.release())
            self.lease = None

    def __enter__(self) -> LockLease:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Release; if the session was lost while the body ran (a synchronous body cannot be interrupted),
        raise SessionExpiredError so the caller does not take the body's work as done under the lock."""
        lease = self.lease
        lost = lease is not None and lease.lost
        self.release()
        if lost and exc_type is None:
            assert lease is not None
            raise SessionExpiredError(
                f"lock {self.lock.dir}: the session was lost while the lock was held (token {lease.token})",
                session_id=lease.session.session_id,
                token=lease.token,
                hint="the lock may already belong to another holder; fence writes with the token",
            )
