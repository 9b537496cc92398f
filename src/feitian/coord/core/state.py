"""The replicated state machine of Nuwa: the tree, sessions, remembered results and the event history.

``apply(index, data)`` decodes a command, validates it, applies it deterministically and returns a write result
or a feitian error *value*; it never raises for a bad command. Reads are plain methods that return what they
saw with the revision they saw it at.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from feitian.coord.core.commands import (
    Batch,
    CheckOp,
    CloseSession,
    Command,
    CreateNode,
    CreateOp,
    CreateSession,
    DeleteNode,
    DeleteOp,
    ExpireSessions,
    Op,
    SetNode,
    SetOp,
    StartLeaderTerm,
    Transaction,
    decode_command,
    encode_command,
    in_transaction,
    validate_command,
)
from feitian.coord.core.events import Compacted, Event, EventBatch, EventHistory, Selector, SelectorKind
from feitian.coord.core.limits import DEFAULT_LIMITS, CoordLimits
from feitian.coord.core.paths import is_directory, other_kind, validate_path
from feitian.coord.core.results import (
    BatchApplied,
    ErrorValue,
    ExistsResult,
    GetResult,
    LeaderTermStarted,
    ListResult,
    OpResult,
    SelectResult,
    SessionClosed,
    SessionCreated,
    SessionInfo,
    SessionsExpired,
    StatResult,
    StoredResult,
    TxnCommitted,
    WriteResult,
    stored_result,
)
from feitian.coord.core.sessions import SessionTable
from feitian.coord.core.snapshot import Restored, decode_snapshot, encode_snapshot
from feitian.coord.core.tree import Node, Tree
from feitian.errors import FeitianError, InvalidArgumentError, NotFoundError, SessionExpiredError
from feitian.replica.core import DedupeTable

__all__ = ["Applied", "CoordStateMachine"]

Outcome = WriteResult | FeitianError


@dataclass(frozen=True, slots=True)
class Applied:
    """Everything one applied command did: its result, its events, and the session changes the leader's
    SessionTracker must hear about. ``duplicate``: a retry answered from the remembered results."""

    index: int
    result: Outcome
    events: tuple[Event, ...] = ()
    sessions_started: tuple[tuple[int, int], ...] = ()  # (session id, ttl_ms)
    sessions_ended: tuple[int, ...] = ()
    duplicate: bool = False
    parts: tuple[Applied, ...] = ()  # a Batch: what each of its writes did, in order (``result`` is BatchApplied)


class CoordStateMachine:
    """Implements the replica driver's ``StateMachine`` protocol (``apply``, ``snapshot``, ``restore``)."""

    def __init__(self, limits: CoordLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits.validate()
        self.tree = Tree(limits)
        self.sessions = SessionTable(limits)
        self.dedupe: DedupeTable[StoredResult] = DedupeTable(limits.dedupe_window, limits.max_dedupe_clients)
        self.history = EventHistory(limits.history_max_events, limits.history_max_bytes)
        self.revision = 0  # +1 per command that changed the tree
        self.applied_index = 0
        self.leader_epoch = 0
        self.last_applied = Applied(0, LeaderTermStarted(epoch=0))

    # -- the StateMachine protocol -------------------------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> Outcome:
        try:
            command = decode_command(data)
        except InvalidArgumentError as error:
            self.applied_index = index
            self.last_applied = Applied(index, error)
            return error
        return self.apply_command(index, command).result

    def snapshot(self) -> bytes:
        """The whole state as msgpack; equal states give equal bytes."""
        return encode_snapshot(self)

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's; DataCorruptionError (and no change) if it is inconsistent."""
        self.install(self.prepare_restore(data))

    def prepare_restore(self, data: bytes) -> Restored:
        """Decode and check a snapshot into a new state without touching this one (safe on another thread: the
        slow half of :meth:`restore`)."""
        return decode_snapshot(data, self.limits)

    def release(self) -> Iterator[None]:
        """Drop the state (an empty tree, no sessions) ahead of :meth:`install` of a new one, so the two are not
        held at once. The state is not usable until then. Returns the steps that free the old tree, a few
        thousand nodes each: run one between turns of the event loop (freeing a million nodes at once would hold
        it for a second)."""
        old = self.tree
        self.tree = Tree(self.limits)
        self.sessions = SessionTable(self.limits)
        self.dedupe = DedupeTable(self.limits.dedupe_window, self.limits.max_dedupe_clients)
        return _free(old)

    def install(self, restored: Restored) -> None:
        """Replace the state with one :meth:`prepare_restore` built (the fast half of :meth:`restore`)."""
        self.tree, self.sessions, self.dedupe, self.history = (
            restored.tree,
            restored.sessions,
            restored.dedupe,
            restored.history,
        )
        self.revision, self.applied_index, self.leader_epoch = (
            restored.revision,
            restored.applied_index,
            restored.leader_epoch,
        )
        self.last_applied = Applied(self.applied_index, LeaderTermStarted(epoch=self.leader_epoch))

    # -- applying ------------------------------------------------------------------------------------------------

    def apply_command(self, index: int, command: Command) -> Applied:
        """Apply a decoded command; the result is also kept in ``last_applied``."""
        self.applied_index = index
        try:
            validate_command(command, self.limits)
        except FeitianError as error:
            applied = Applied(index, error)
        else:
            if isinstance(command, StartLeaderTerm):
                self.leader_epoch = max(self.leader_epoch, command.epoch)
                applied = Applied(index, LeaderTermStarted(epoch=self.leader_epoch))
            elif isinstance(command, ExpireSessions):
                applied = self._expire(index, command)
            elif isinstance(command, Batch):
                applied = self._batch(index, command)
            else:
                applied = self._apply_client_command(index, command)
        self.last_applied = applied
        return applied

    def _batch(self, index: int, batch: Batch) -> Applied:
        """Each write of the batch applies as if alone: validated, deduplicated, its own revision and result."""
        parts = []
        for command in batch.commands:
            try:
                validate_command(command, self.limits)
            except FeitianError as error:
                parts.append(Applied(index, error))
            else:
                parts.append(self._apply_client_command(index, command))
        events = tuple(event for part in parts for event in part.events)
        return Applied(index, BatchApplied(revision=self.revision, count=len(parts)), events, parts=tuple(parts))

    def _apply_client_command(
        self, index: int, command: CreateNode | SetNode | DeleteNode | Transaction | CreateSession | CloseSession
    ) -> Applied:
        client_id, seq = command.client_id, command.request_seq
        fingerprint = 0
        if client_id:
            fingerprint = zlib.crc32(encode_command(command))
            try:
                stored = self.dedupe.lookup(_NAMES[type(command)], command.principal, client_id, seq, fingerprint)
            except InvalidArgumentError as error:
                return Applied(index, error)
            if stored is not None:
                return Applied(index, _outcome(stored), duplicate=True)
        if isinstance(command, CreateSession):
            applied = self._create_session(index, command)
        elif isinstance(command, CloseSession):
            applied = self._close_session(index, command)
        else:
            applied = self._write(index, command)
        if client_id:
            # A result is forgotten with the session it was made under (a created session counts as its own),
            # so the table stays bounded by live sessions; a retry after that meets the dead session.
            under = command.session_id
            if isinstance(applied.result, SessionCreated):
                under = applied.result.session_id
            self.dedupe.remember(
                command.principal,
                client_id,
                seq,
                under if under in self.sessions else 0,
                stored_result(applied.result),
                fingerprint,
            )
        return applied

    def _write(self, index: int, command: CreateNode | SetNode | DeleteNode | Transaction) -> Applied:
        what = "txn" if isinstance(command, Transaction) else f"{_NAMES[type(command)]} {command.path}"
        try:
            if command.session_id:
                self.sessions.require(what, command.session_id, command.principal)
        except FeitianError as error:
            return Applied(index, error)
        self.tree.begin(self.revision + 1)
        try:
            if isinstance(command, Transaction):
                results: list[OpResult] = []
                for position, op in enumerate(command.ops):
                    try:
                        results.append(self._run(op, command))
                    except FeitianError as error:
                        raise in_transaction(error, position) from None
            else:
                result = self._run(command.op(), command)
        except FeitianError as error:
            self.tree.rollback()
            return Applied(index, error)
        except BaseException:
            self.tree.rollback()
            raise
        events = self._commit()
        if isinstance(command, Transaction):
            return Applied(index, TxnCommitted(revision=self.revision, results=tuple(results)), events)
        return Applied(index, result, events)

    def _run(self, op: Op, command: CreateNode | SetNode | DeleteNode | Transaction) -> OpResult:
        if isinstance(op, CreateOp):
            return self.tree.create(op, command.principal, command.session_id)
        if isinstance(op, SetOp):
            return self.tree.set(op)
        if isinstance(op, DeleteOp):
            return self.tree.delete(op)
        assert isinstance(op, CheckOp)
        return self.tree.check(op)

    def _commit(self) -> tuple[Event, ...]:
        events = self.tree.commit()
        if events:
            self.revision += 1
            self.history.append(self.revision, events)
        return events

    def _create_session(self, index: int, command: CreateSession) -> Applied:
        try:
            record = self.sessions.create(command.principal, command.ttl_ms)
        except FeitianError as error:
            return Applied(index, error)
        result = SessionCreated(session_id=record.session_id, ttl_ms=record.ttl_ms)
        return Applied(index, result, sessions_started=((record.session_id, record.ttl_ms),))

    def _close_session(self, index: int, command: CloseSession) -> Applied:
        session_id = command.session_id
        if session_id not in self.sessions:
            return Applied(index, SessionClosed(session_id=session_id, existed=False, revision=self.revision))
        try:
            self.sessions.require("close session", session_id, command.principal)
        except FeitianError as error:
            return Applied(index, error)
        deleted, events = self._end_sessions((session_id,))
        result = SessionClosed(session_id=session_id, existed=True, revision=self.revision, deleted=deleted)
        return Applied(index, result, events, sessions_ended=(session_id,))

    def _expire(self, index: int, command: ExpireSessions) -> Applied:
        if command.epoch < self.leader_epoch:
            return Applied(index, SessionsExpired(revision=self.revision, session_ids=(), stale=True))
        ended = tuple(sorted({s for s in command.session_ids if s in self.sessions}))
        deleted, events = self._end_sessions(ended)
        result = SessionsExpired(revision=self.revision, session_ids=ended, deleted=deleted)
        return Applied(index, result, events, sessions_ended=ended)

    def _end_sessions(self, session_ids: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[Event, ...]]:
        """Delete the sessions' ephemerals at one revision and forget the sessions and their clients."""
        self.tree.begin(self.revision + 1)
        try:
            deleted = tuple(path for s in session_ids for path in self.tree.delete_ephemerals(s))
        except BaseException:
            self.tree.rollback()
            raise
        events = self._commit()
        for session_id in session_ids:
            self.sessions.remove(session_id)
            self.dedupe.forget_session(session_id)
        return deleted, events

    # -- reads ---------------------------------------------------------------------------------------------------

    def get(self, path: str) -> GetResult:
        validate_path("get", path, self.limits)
        node = self._require("get", path)
        return GetResult(stat=node.stat(), value=node.value, revision=self.revision)

    def stat(self, path: str) -> StatResult:
        validate_path("stat", path, self.limits)
        return StatResult(stat=self._require("stat", path).stat(), revision=self.revision)

    def exists(self, path: str) -> ExistsResult:
        validate_path("exists", path, self.limits)
        node = self.tree.nodes.get(path)
        return ExistsResult(stat=None if node is None else node.stat(), revision=self.revision)

    def list(self, path: str, *, start_after: str = "", limit: int | None = None) -> ListResult:
        """A directory's entries (sorted by name), at most ``limit`` (bounded by ``max_list_children``)."""
        validate_path("list", path, self.limits)
        if not is_directory(path):
            raise InvalidArgumentError(f"list {path}: not a directory path (it ends with '/')", hint=f"use {path}/")
        if path not in self.tree.nodes and other_kind(path) in self.tree.nodes:
            raise NotFoundError(
                f"list {path}: {other_kind(path)} is a file, not a directory",
                path=path,
                revision=self.revision,
                hint=f"read it with get {other_kind(path)}",
            )
        node = self._require("list", path)
        children, more = self.tree.children_page(node, start_after, self._page(limit))
        return ListResult(directory=node.stat(), children=tuple(children), revision=self.revision, more=more)

    def _require(self, op: str, path: str) -> Node:
        """The node a read names; its NotFoundError carries ``revision``, the revision it was missing at, so a
        reader can watch for its creation from there without missing it."""
        try:
            return self.tree.require(op, path)
        except NotFoundError as exc:
            exc.fields["revision"] = self.revision
            raise

    def select(self, selector: Selector, *, start_after: str = "", limit: int | None = None) -> SelectResult:
        """The nodes ``selector`` covers now, in path order: what a watcher reloads after ``Compacted``."""
        validate_path("select", selector.path, self.limits)
        selector.check()
        page = self._page(limit)
        node = self.tree.nodes.get(selector.path)
        if node is None:
            return SelectResult(nodes=(), revision=self.revision)
        if selector.kind is SelectorKind.NODE:
            nodes = [node.stat()] if not start_after or start_after < node.path else []
            return SelectResult(nodes=tuple(nodes), revision=self.revision)
        if selector.kind is SelectorKind.CHILDREN:
            head = [node.stat()] if not start_after or start_after < node.path else []
            children, more = self.tree.children_page(node, start_after, page - len(head))
            return SelectResult(nodes=tuple(head + children), revision=self.revision, more=more)
        stats, more = self.tree.walk(node.path, start_after, page)
        return SelectResult(nodes=tuple(stats), revision=self.revision, more=more)

    def events_since(
        self, since: int, selector: Selector | None = None, *, limit: int | None = None
    ) -> EventBatch | Compacted:
        """Events after revision ``since`` matching ``selector``, or :class:`Compacted` (see ``events``)."""
        if selector is not None:
            validate_path("watch", selector.path, self.limits)
            selector.check()
        return self.history.events_since(since, selector, limit=min(limit or 1 << 62, self.limits.max_events_per_batch))

    def session(self, session_id: int) -> SessionInfo:
        record = self.sessions.get(session_id)
        if record is None:
            raise SessionExpiredError(f"session {session_id:#x}: expired, closed or never existed")
        owned = tuple(sorted(self.tree.ephemerals.get(session_id, ())))
        return SessionInfo(session_id=session_id, ttl_ms=record.ttl_ms, owner=record.owner, ephemerals=owned)

    def session_owner(self, session_id: int) -> str:
        """The principal owning a live session (SessionExpiredError if it is gone): what a heartbeat checks, in
        constant time (``session()`` lists the session's ephemeral nodes)."""
        record = self.sessions.get(session_id)
        if record is None:
            raise SessionExpiredError(f"session {session_id:#x}: expired, closed or never existed")
        return record.owner

    def session_ttls(self) -> tuple[tuple[int, int], ...]:
        """(session id, ttl_ms) of every live session, by id: what a new leader's SessionTracker starts from."""
        return tuple((s, self.sessions.sessions[s].ttl_ms) for s in sorted(self.sessions.sessions))

    def _page(self, limit: int | None) -> int:
        if limit is not None and limit < 1:
            raise InvalidArgumentError(f"limit must be >= 1, got {limit}")
        return min(limit or self.limits.max_list_children, self.limits.max_list_children)

    def __repr__(self) -> str:
        return (
            f"CoordStateMachine(revision={self.revision}, nodes={len(self.tree.nodes)}, "
            f"sessions={len(self.sessions)}, applied_index={self.applied_index})"
        )


def _outcome(stored: StoredResult) -> Outcome:
    return stored.to_error() if isinstance(stored, ErrorValue) else stored


_NAMES: dict[type, str] = {
    CreateNode: "create",
    SetNode: "set",
    DeleteNode: "delete",
    Transaction: "txn",
    CreateSession: "create session",
    CloseSession: "close session",
}


FREE_STEP = 8192  # nodes freed per step of releasing a tree


def _free(tree: Tree) -> Iterator[None]:
    nodes, ephemerals = tree.nodes, tree.ephemerals
    while nodes:
        for _ in range(min(FREE_STEP, len(nodes))):
            nodes.popitem()
        yield
    while ephemerals:
        for _ in range(min(FREE_STEP // 64, len(ephemerals))):
            ephemerals.popitem()
        yield
