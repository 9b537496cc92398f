"""The asyncio Nuwa client (NUWA-12): data operations, sessions, subscriptions and the recipes.

::

    async with CoordClient(rpc, ["tcp://127.0.0.1:7001", ...]) as nuwa:
        await nuwa.create("/apps/web/conf", b"v1", parents=True)
        got = await nuwa.get("/apps/web/conf")               # GetResult(stat, value, revision): linearizable
        await nuwa.set("/apps/web/conf", b"v2", version=got.stat.version)
        async with nuwa.lock("/locks/job-17") as lease:      # lease.token: the fencing token
            ...

Writes go to the leader and are retried — across a leader failover too — with the same ``client_id`` and
``request_seq``, so a retry never applies twice (the state machine answers it with the first result). At most
``dedupe_window`` (32) writes are in flight per client. Reads are linearizable unless ``stale=True`` (a cheaper
local read of one replica, possibly behind). Errors are the feitian classes the service raised:
NotFoundError, AlreadyExistsError, ConflictError (a version or check mismatch), PermissionDeniedError,
SessionExpiredError, UnavailableError when no replica answered within ``timeout_s``.

``session()`` is this client's current session, made on first use (an ephemeral create makes one) and kept
alive in the background; after it is lost (``client_session.py``) the next call makes a new one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Any, TypeVar

from feitian.base.clock import Clock, MonotonicClock
from feitian.coord.client.batching import WriteBatcher, batchable_size
from feitian.coord.client.recipes.election import Election
from feitian.coord.client.recipes.lock import Lock
from feitian.coord.client.session import Session
from feitian.coord.client.watch import DEFAULT_WAIT_MS, Watch, selector_for
from feitian.coord.core import (
    DEFAULT_SESSION_TTL_MS,
    CoordLimits,
    Created,
    Deleted,
    ExistsResult,
    GetResult,
    NodeStat,
    Op,
    Selector,
    SelectResult,
    SessionInfo,
    TxnCommitted,
    Updated,
)
from feitian.coord.core.paths import validate_path
from feitian.coord.messages import (
    CoordStatus,
    CreateRequest,
    CreateSessionRequest,
    DeleteRequest,
    ExistsRequest,
    GetRequest,
    GetSessionRequest,
    ListReply,
    ListRequest,
    SaveSnapshotRequest,
    SelectRequest,
    SetRequest,
    SnapshotInfo,
    StatRequest,
    StatusRequest,
    TxnRequest,
)
from feitian.errors import DeadlineExceededError, FeitianError, UnavailableError
from feitian.replica import Router
from feitian.rpc import Client, Request

__all__ = ["DEDUPE_WINDOW", "CoordClient"]

log = logging.getLogger(__name__)

R = TypeVar("R")
DEDUPE_WINDOW = 32  # the state machine's dedupe_window: writes in flight per client at most


class CoordClient:
    """See the module docstring. ``rpc`` is a Kuafu client (with TLS and credentials in a secured cluster);
    ``addresses`` are the replicas' Kuafu addresses."""

    def __init__(
        self,
        rpc: Client,
        addresses: Sequence[str],
        *,
        session_ttl_ms: int = DEFAULT_SESSION_TTL_MS,
        timeout_s: float = 30.0,
        attempt_timeout_s: float = 2.0,
        watch_wait_ms: int = DEFAULT_WAIT_MS,
        clock: Clock | None = None,
        client_id: str | None = None,
    ) -> None:
        self.rpc = rpc
        self.clock = clock or MonotonicClock()
        self.router = Router(
            rpc,
            list(addresses),
            timeout_s=timeout_s,
            attempt_timeout_s=attempt_timeout_s,
            service="coordination service",
            unreachable_hint="is the coordination service running? `feitian cluster status` shows the coord replicas",
            clock=self.clock,
        )
        self.session_ttl_ms = session_ttl_ms
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.watch_wait_ms = watch_wait_ms
        self.client_id = client_id or f"c-{secrets.token_hex(8)}"
        self._seq = 0
        self._window = asyncio.Semaphore(DEDUPE_WINDOW)
        self._session: Session | None = None
        self._session_lock = asyncio.Lock()
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()
        self.batcher = WriteBatcher(self._send_write, self.spawn)

    async def __aenter__(self) -> CoordClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session (its ephemeral nodes go, its locks are released) and stop background work. The
        Kuafu client is the caller's to close."""
        self._closed = True
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background until it ends or the client closes."""
        task = asyncio.get_running_loop().create_task(coro, name=getattr(coro, "__qualname__", None))
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        """A background task's failure is logged here, once: whoever awaited it got it too, but most are
        awaited by no one (a release after its caller was cancelled, a node removed after a failed acquire)."""
        self._background.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, FeitianError):
            log.info("nuwa client: background %s failed: %s", task.get_name(), exc)
        else:
            log.error("nuwa client: background %s failed", task.get_name(), exc_info=exc)

    # -- plumbing --------------------------------------------------------------------------------------------

    async def _read(self, request: Request[R]) -> R:
        _check_paths(request)
        return await self.router.call(request, leader=False)

    async def _write(self, make: Any) -> Any:
        """``make(client_id, request_seq)`` builds the request; it is sent (and retried) with that number, alone
        or with the other writes made in the same loop step (``batching.py``)."""
        async with self._window:
            self._seq += 1
            request = make(self.client_id, self._seq)
            _check_paths(request)
            size = batchable_size(request)
            if size is None:
                return await self.router.call(request, leader=True)
            return await self.batcher.submit(request, size)

    async def _send_write(self, request: Any) -> Any:
        return await self.router.call(request, leader=True)

    async def _session_id(self, session: Session | None, needed: bool) -> int:
        if session is None and not needed:
            return 0
        session = session or await self.session()
        session.check()
        return session.session_id

    # -- data ------------------------------------------------------------------------------------------------

    async def get(self, path: str, *, stale: bool = False) -> GetResult:
        """A file's value and stat (NotFoundError if absent)."""
        return await self._read(GetRequest(path, stale))

    async def stat(self, path: str, *, stale: bool = False) -> NodeStat:
        return (await self._read(StatRequest(path, stale))).stat

    async def exists(self, path: str, *, stale: bool = False) -> ExistsResult:
        """``result.exists``, ``result.stat`` (None when absent) and the revision read at."""
        return await self._read(ExistsRequest(path, stale))

    async def list(
        self, path: str, *, values: bool = False, start_after: str = "", limit: int = 0, stale: bool = False
    ) -> ListReply:
        """One page of a directory's entries sorted by name (``reply.more``: continue with ``start_after``);
        ``values=True`` also returns each file's value, read at the same revision."""
        return await self._read(ListRequest(path, start_after, limit, values, stale))

    async def select(self, selector: Selector, *, start_after: str = "", stale: bool = False) -> SelectResult:
        return await self._read(SelectRequest(selector, start_after, 0, stale))

    async def create(
        self,
        path: str,
        value: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        parents: bool = False,
        session: Session | None = None,
    ) -> Created:
        """Create a file (or a directory: ``/a/b/``). ``ephemeral``: owned by ``session`` (default: this client's
        session), deleted with it. ``sequential``: a 10-digit counter is appended (``created.stat.path``)."""
        session_id = await self._session_id(session, ephemeral)
        result: Created = await self._write(
            lambda cid, seq: CreateRequest(
                path=path,
                value=value,
                ephemeral=ephemeral,
                sequential=sequential,
                parents=parents,
                client_id=cid,
                request_seq=seq,
                session_id=session_id,
            )
        )
        return result

    async def set(self, path: str, value: bytes, *, version: int | None = None) -> Updated:
        """Replace a file's value; with ``version``, only if it is at that version (ConflictError)."""
        result: Updated = await self._write(
            lambda cid, seq: SetRequest(
                path=path, value=value, expected_version=version, client_id=cid, request_seq=seq
            )
        )
        return result

    async def delete(self, path: str, *, version: int | None = None) -> Deleted:
        """Delete a file or an empty directory; with ``version``, only at that version."""
        result: Deleted = await self._write(
            lambda cid, seq: DeleteRequest(path=path, expected_version=version, client_id=cid, request_seq=seq)
        )
        return result

    async def txn(self, ops: Sequence[Op], *, session: Session | None = None) -> TxnCommitted:
        """Apply ``ops`` (CreateOp, SetOp, DeleteOp, CheckOp) in order, all or nothing, at one revision. The
        first failing op's error is raised (``op_index`` says which)."""
        needed = any(getattr(op, "ephemeral", False) for op in ops)
        session_id = await self._session_id(session, needed)
        result: TxnCommitted = await self._write(
            lambda cid, seq: TxnRequest(ops=tuple(ops), client_id=cid, request_seq=seq, session_id=session_id)
        )
        return result

    # -- sessions --------------------------------------------------------------------------------------------

    async def session(self, *, ttl_ms: int | None = None) -> Session:
        """This client's live session, made now if there is none (or the last one was lost)."""
        async with self._session_lock:
            current = self._session
            if current is not None and current.alive:
                return current
            ttl = ttl_ms or self.session_ttl_ms
            sent = self.clock.monotonic_ns()  # before the first attempt: the lease counts from here
            created = await self._write(
                lambda cid, seq: CreateSessionRequest(ttl_ms=ttl, client_id=cid, request_seq=seq)
            )
            session = Session(self.router, created.session_id, created.ttl_ms, sent, self.clock)
            session.check()  # the creation may have taken longer than the client lease
            session.start()
            self._session = session
            return session

    @property
    def current_session(self) -> Session | None:
        return self._session

    async def session_info(self, session_id: int) -> SessionInfo:
        return await self._read(GetSessionRequest(session_id))

    # -- subscriptions ---------------------------------------------------------------------------------------

    def watch(
        self, target: str | Selector, *, recursive: bool = False, since: int | None = None, wait_ms: int | None = None
    ) -> Watch:
        """A persistent subscription (see ``watch.py``): a file path → its events; a directory → its entries'
        (``recursive``: the whole subtree); or any Selector. ``since``: resume after that revision."""
        return Watch(self, selector_for(target, recursive=recursive), since, wait_ms=wait_ms or self.watch_wait_ms)

    # -- recipes ---------------------------------------------------------------------------------------------

    def lock(self, path: str, *, shared: bool = False, value: bytes = b"") -> Lock:
        """A lock on the directory ``path`` (exclusive; ``shared=True``: shared with other shared holders,
        exclusive of exclusive ones): ``async with client.lock(path) as lease``; ``lease.token`` fences."""
        return Lock(self, path, shared=shared, value=value)

    def election(self, name: str) -> Election:
        """Leader election ``name`` (under ``/elections/``): campaign, observe the leader, resign."""
        return Election(self, name)

    # -- operations ------------------------------------------------------------------------------------------

    async def status(self, address: str) -> CoordStatus:
        return await self.rpc.call(address, StatusRequest(), timeout=self.attempt_timeout_s)

    async def save_snapshot(self) -> tuple[SnapshotInfo, bytes]:
        """The state of a current replica (after a read barrier) as snapshot bytes, for a backup."""
        last: FeitianError | None = None
        for _ in range(len(self.router.addresses)):
            address = self.router.current
            try:
                reply = await self.rpc.call_full(address, SaveSnapshotRequest(), timeout=self.timeout_s)
                return reply.value, bytes(reply.payload)
            except (UnavailableError, DeadlineExceededError) as exc:
                last = exc
                self.router.move_on(address)
        assert last is not None
        raise last


# The shape of a path (absolute, no empty, "." or ".." names, no "*" or control characters), checked before a
# request leaves: a malformed one is named as a path here instead of as a capability resource by the service.
# Sizes are the service's business (its limits may differ from the defaults).
_SHAPE_ONLY = CoordLimits(max_path_bytes=1 << 30, max_name_bytes=1 << 30, max_depth=1 << 30)


def _check_paths(request: Any) -> None:
    op = type(request).__name__.removesuffix("Request").lower()
    path = getattr(request, "path", None)
    if isinstance(path, str):
        validate_path(op, path, _SHAPE_ONLY)
    for item in getattr(request, "ops", ()):
        validate_path(op, item.path, _SHAPE_ONLY)
