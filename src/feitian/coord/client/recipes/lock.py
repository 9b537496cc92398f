"""Locks (NUWA-6): exclusive, and shared/exclusive, with fencing tokens, tied to a session.

::

    async with client.lock("/locks/job-17") as lease:            # exclusive
        await storage.write(data, fence=lease.token)             # the resource refuses smaller tokens
    async with client.lock("/locks/table", shared=True) as lease:  # shared with other shared holders
        ...

Each contender creates an ephemeral, sequential node in the lock's directory under its session
(``lock-0000000007`` exclusive, ``read-0000000008`` shared). An exclusive contender holds the lock when no
node has a smaller sequence number; a shared one when no *exclusive* node has. A waiter watches only the node
just before it (no herd), from the revision of its listing, so it cannot miss that node's deletion.

The fencing token is the holder's node's ``create_revision``: every new holder's is larger. Guard writes with
``CheckOp(lease.path, create_revision=lease.token)`` in a transaction, or pass the token to the resource.

**Losing the session.** When the session is lost (the client's lease ran out: it always knows before the
service expires it), the body of ``async with`` is cancelled and the ``async with`` raises
SessionExpiredError: the body is never left believing it holds the lock. Outside ``async with``, check
``lease.lost`` / ``lease.check()`` before acting, and still fence with the token (a paused process can act
late). The lock is released by leaving the block, ``lease.release()``, closing the session, or its expiry
(within the session TTL after the holder dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from feitian.coord.client.session import Session
from feitian.coord.client.watch import Resync
from feitian.coord.core import Created, Event, EventKind, LeaseState, NodeStat, Selector
from feitian.errors import (
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    SessionExpiredError,
)

if TYPE_CHECKING:
    from feitian.coord.client.client import CoordClient

__all__ = ["CONTENDER_NAME", "Lock", "LockLease", "contenders"]

CONTENDER_NAME = re.compile(r"^(lock|read|candidate)-(\d{10})$")
EXCLUSIVE, SHARED = "lock-", "read-"
POLL_MS = 2_000  # the longest poll of a waiter watching its predecessor


def contenders(directory: str, children: list[NodeStat]) -> list[tuple[int, str, NodeStat]]:
    """(sequence, kind, stat) of the contender nodes of a lock directory, by sequence."""
    out = []
    for stat in children:
        match = CONTENDER_NAME.match(stat.path[len(directory) :])
        if match is not None:
            out.append((int(match.group(2)), match.group(1), stat))
    out.sort(key=lambda c: c[0])
    return out


async def list_all(
    client: CoordClient, directory: str, *, values: bool = False, missing_ok: bool = False
) -> tuple[list[NodeStat], list[bytes], int]:
    """Every entry of ``directory`` (all pages), their values if asked, and the first page's revision: watch
    from it to miss no change. ``missing_ok``: a directory that does not exist lists as empty, at the revision
    the service found it missing at (not a later one, which could hide its creation)."""
    children: list[NodeStat] = []
    found: list[bytes] = []
    start_after, revision = "", -1
    while True:
        try:
            page = await client.list(directory, values=values, start_after=start_after)
        except NotFoundError as exc:
            if revision >= 0:  # removed after the first page: the events after its revision say so
                return children, found, revision
            missing_at = exc.fields.get("revision")
            if not missing_ok or not isinstance(missing_at, int):
                raise
            return [], [], missing_at
        revision = page.revision if revision < 0 else revision
        children.extend(page.children)
        found.extend(page.values)
        if not page.more or not page.children:
            return children, found, revision
        start_after = page.children[-1].path


class LockLease:
    """A held lock: ``path`` (the holder's node), ``token`` (fencing), ``session``."""

    def __init__(self, lock: Lock, path: str, token: int, session: Session) -> None:
        self.lock = lock
        self.path = path
        self.token = token
        self.session = session
        self.released = False
        self.lost_while_held = False

    def __repr__(self) -> str:
        return f"LockLease({self.path!r}, token={self.token}, session={self.session.session_id:#x})"

    @property
    def lost(self) -> bool:
        """True once the session is lost: the lock must be considered gone."""
        return self.lost_while_held or (not self.released and not self.session.alive)

    def check(self) -> None:
        """Raise SessionExpiredError if the lock may no longer be held."""
        self.session.check()

    async def release(self) -> None:
        """Give the lock up (delete the node). Idempotent; nothing to do once the session is lost."""
        if self.released:
            return
        self.released = True
        if self.session.alive:
            with contextlib.suppress(NotFoundError, SessionExpiredError):
                await self.lock.client.delete(self.path)

    resign = release  # an election's leadership is a lease too


class Lock:
    def __init__(
        self, client: CoordClient, path: str, *, shared: bool = False, value: bytes = b"", prefix: str | None = None
    ) -> None:
        self.client = client
        self.dir = path if path.endswith("/") else path + "/"
        self.shared = shared
        self.value = value
        self.prefix = prefix or (SHARED if shared else EXCLUSIVE)
        self._holds: dict[asyncio.Task[Any], _Hold] = {}  # one per task inside ``async with`` this lock

    def __repr__(self) -> str:
        return f"Lock({self.dir!r}, shared={self.shared})"

    async def acquire(self, *, timeout_s: float | None = None) -> LockLease:
        """Wait until the lock is held; DeadlineExceededError after ``timeout_s`` (0: at once unless the lock is
        free now), SessionExpiredError if the session is lost while waiting. Either way this contender's node is
        removed."""
        if timeout_s is not None and timeout_s <= 0:
            return await self._acquire(wait=False)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._acquire()
        except TimeoutError:
            raise DeadlineExceededError(f"lock {self.dir}: not acquired within {timeout_s}s") from None

    async def _acquire(self, *, wait: bool = True) -> LockLease:
        client = self.client
        session = await client.session()
        creating = asyncio.ensure_future(
            client.create(
                self.dir + self.prefix, self.value, ephemeral=True, sequential=True, parents=True, session=session
            )
        )
        try:
            created = await asyncio.shield(creating)
        except asyncio.CancelledError:  # the node may be created anyway: remove it once it is
            client.spawn(self._forget_pending(creating, session))
            raise
        me = created.stat.path
        try:
            while True:
                session.check()
                children, _, revision = await list_all(client, self.dir)
                ranked = contenders(self.dir, children)
                mine = next((c for c in ranked if c[2].path == me), None)
                if mine is None:
                    session.check()
                    raise SessionExpiredError(f"lock {self.dir}: this contender's node {me} is gone")
                blockers = [c for c in ranked if c[0] < mine[0] and (self.prefix != SHARED or c[1] != "read")]
                if not blockers:
                    session.check()  # the listing may have been answered after the session was lost
                    return LockLease(self, me, created.stat.create_revision, session)
                if not wait:
                    raise DeadlineExceededError(f"lock {self.dir}: held by {blockers[0][2].path} (not waiting)")
                await self._wait_gone(blockers[-1][2].path, revision, session)
        except BaseException:
            client.spawn(self._forget(me, session))
            raise

    async def _wait_gone(self, path: str, revision: int, session: Session) -> None:
        # Short polls: a waiter whose replica froze (SIGSTOP, a partition) moves to another within a poll and an
        # attempt timeout, not after a long poll's 10 s — the lock still passes on within the session TTL.
        watch = self.client.watch(Selector.node(path), since=revision, wait_ms=min(self.client.watch_wait_ms, POLL_MS))
        lost = asyncio.ensure_future(session.wait_lost())
        following: asyncio.Future[Event | Resync] | None = None
        try:
            while True:
                following = asyncio.ensure_future(watch.__anext__())
                done, _ = await asyncio.wait({following, lost}, return_when=asyncio.FIRST_COMPLETED)
                if following not in done:
                    session.check()
                    return
                item = following.result()
                if isinstance(item, Resync) or item.kind is EventKind.DELETED:
                    return
        finally:
            # However the wait ends (the session lost, a timeout or a cancellation of acquire), its long poll
            # must not outlive it: it would hold a slot of the replica's watch lane for up to wait_ms.
            lost.cancel()
            if following is not None and not following.done():
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            watch.close()

    async def _forget_pending(self, creating: asyncio.Future[Created], session: Session) -> None:
        with contextlib.suppress(FeitianError):
            await self._forget((await creating).stat.path, session)

    async def _forget(self, path: str, session: Session) -> None:
        if session.alive:
            with contextlib.suppress(FeitianError):
                await self.client.delete(path)

    # -- async with ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> LockLease:
        task = asyncio.current_task()
        assert task is not None
        if task in self._holds:
            raise InvalidArgumentError(
                f"lock {self.dir}: this task already holds it through this Lock object",
                hint="a Lock is not re-entrant; use a second Lock object to queue a second contender",
            )
        lease = await self.acquire()
        hold = _Hold(lease, task)
        self._holds[task] = hold
        hold.unsubscribe = lease.session.on_state_change(hold.on_state)
        if lease.lost_while_held:  # lost before the body even started
            await self.__aexit__(None, None, None)
        return lease

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        hold = self._holds.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        if hold is None:
            return
        hold.unsubscribe()
        lease = hold.lease
        if lease.lost_while_held:
            if hold.cancelled and hold.task.cancelling():
                hold.task.uncancel()
            lease.released = True
            raise SessionExpiredError(
                f"lock {self.dir}: the session was lost while the lock was held (token {lease.token}); "
                "the body was cancelled",
                session_id=lease.session.session_id,
                token=lease.token,
                hint="the lock may already belong to another holder; fence writes with the token",
            )
        await asyncio.shield(self.client.spawn(lease.release()))


class _Hold:
    """One task's stay inside ``async with lock``: the lease, and the body's task to cancel if it is lost."""

    def __init__(self, lease: LockLease, task: asyncio.Task[Any]) -> None:
        self.lease = lease
        self.task = task
        self.cancelled = False  # this hold cancelled the task (and so undoes that cancellation on exit)
        self.unsubscribe: Callable[[], None] = lambda: None

    def on_state(self, session: Session, state: LeaseState) -> None:
        lease = self.lease
        if state is not LeaseState.EXPIRED or lease.released or lease.lost_while_held:
            return
        lease.lost_while_held = True
        if asyncio.current_task() is self.task:
            # The body itself found the loss (``lease.check()``, or an operation that checks the session) and is
            # about to get SessionExpiredError from it: cancelling its own task would leave a cancellation
            # pending for its next await, after it has handled that error.
            return
        self.cancelled = True
        self.task.cancel(f"nuwa session {session.session_id:#x} lost: lock {lease.lock.dir} is no longer held")
