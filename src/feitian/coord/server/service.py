"""Nuwa's replica-side service: the ``coord.*`` Kuafu methods over a replicated :class:`CoordStateMachine`.

::

    node = CoordReplica(replica_config, rpc_client)     # a ReplicatedService: AppliedFeed, LeaderSessions, handlers
    node.register(server)                              # raft.Step and coord.* (lanes coord.watch / coord.session
    await node.start()                                 # when the server has them)

* **Writes** are validated (``validate_command``: a bad request costs no log entry), proposed to the log with
  the caller's principal, ``client_id``/``request_seq`` and ``session_id``, and answered with the state
  machine's result once a majority has them on disk. Only the leader accepts them (the kit's NotLeaderError
  with ``leader_hint`` elsewhere), waiting no longer than the caller's deadline. Clients can never send
  ``ExpireSessions`` or ``StartLeaderTerm``.
* **Reads** are linearizable: a read barrier (ReadIndex) first, on any replica. ``stale=True`` skips the
  barrier and answers from this replica's state, which may be behind.
* **Heartbeats** are answered by the leader after a leadership confirmation (``session_keeper.py``).
* **Watches** are long polls: the events after the caller's revision, or a wait for the next change (at most
  ``wait_ms``); ``Compacted`` when that history is gone. A read barrier first only when the watch starts from
  now (``since`` -1) or the replica knows no leader.
* **Snapshots**: the driver snapshots and compacts the log every ``snapshot_every_entries``;
  ``coord.SaveSnapshot`` returns the state (after a barrier) as a backup.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from feitian.base.clock import Clock, MonotonicClock, StallAdjustedClock
from feitian.base.units import SECOND_NS
from feitian.coord.core import (
    DEFAULT_LIMITS,
    Applied,
    Batch,
    CloseSession,
    Command,
    CoordLimits,
    CoordStateMachine,
    CreateNode,
    CreateSession,
    DeleteNode,
    EventBatch,
    SessionTracker,
    SetNode,
    Transaction,
    encode_command,
    validate_command,
)
from feitian.coord.core.commands import WriteCommand, validate_batch_bounds
from feitian.coord.core.results import (
    Created,
    Deleted,
    ErrorValue,
    ExistsResult,
    GetResult,
    SelectResult,
    SessionClosed,
    SessionCreated,
    SessionInfo,
    StatResult,
    StoredResult,
    TxnCommitted,
    Updated,
    stored_result,
)
from feitian.coord.messages import (
    BATCH_RULE,
    CREATE_RULE,
    DELETE_RULE,
    READ_RULE,
    SELECT_RULE,
    SESSION_RULE,
    SET_RULE,
    SNAPSHOT_RULE,
    STATUS_RULE,
    TXN_RULE,
    CloseSessionRequest,
    CoordStatus,
    CreateRequest,
    CreateSessionRequest,
    DeleteRequest,
    ExistsRequest,
    GetRequest,
    GetSessionRequest,
    HeartbeatReply,
    HeartbeatRequest,
    ListReply,
    ListRequest,
    SaveSnapshotRequest,
    SelectRequest,
    SetRequest,
    SnapshotInfo,
    StatRequest,
    StatusRequest,
    TxnRequest,
    WatchReply,
    WatchRequest,
    WriteBatchReply,
    WriteBatchRequest,
    WriteRequest,
)
from feitian.coord.server.applier import AppliedFeed
from feitian.coord.server.session_keeper import LeaderSessions, start_leader_term
from feitian.errors import FeitianError, InternalError, InvalidArgumentError, UnavailableError
from feitian.replica import ReplicaConfig, ReplicatedService, remaining_s
from feitian.rpc import CallContext, Client, Server

log = logging.getLogger(__name__)

__all__ = ["ANONYMOUS", "SESSION_LANE", "WATCH_LANE", "CoordReplica", "CoordService", "principal_of"]

ANONYMOUS = "anonymous"  # the principal of every caller of a replica that runs without security
WATCH_LANE = "coord.watch"  # long polls wait here, not in the default lane
SESSION_LANE = "coord.session"  # heartbeats are not queued behind writes
MAX_WATCH_WAIT_MS = 60_000
WATCH_SLICE_S = 1.0  # a waiting watch re-checks that this replica still follows a leader this often
DEFAULT_BARRIER_TIMEOUT_S = 5.0


def principal_of(ctx: CallContext) -> str:
    """The caller as the state machine records it: ``name:id`` of the authenticated principal."""
    principal = ctx.peer.principal
    if principal is None:
        return ANONYMOUS
    return f"{principal.name}:{principal.id}"


def write_command(principal: str, req: WriteRequest) -> WriteCommand:
    """The log command of a client's write request, made by ``principal`` (a command carries every field of its
    request, under the same names)."""
    command: WriteCommand = _COMMAND_OF[type(req)](principal=principal, **msgspec.structs.asdict(req))
    return command


_COMMAND_OF: dict[type, type] = {
    CreateRequest: CreateNode,
    SetRequest: SetNode,
    DeleteRequest: DeleteNode,
    TxnRequest: Transaction,
}


class CoordService:
    def __init__(self, node: ReplicatedService, feed: AppliedFeed, sessions: LeaderSessions) -> None:
        self.node = node
        self.replica = node.replica
        self.feed = feed
        self.sm = feed.sm
        self.sessions = sessions

    def register(self, server: Server) -> None:
        lanes = server.config.lanes
        watch_lane = WATCH_LANE if WATCH_LANE in lanes else None
        session_lane = SESSION_LANE if SESSION_LANE in lanes else None
        add = server.add_handler
        add(GetRequest, self.get, requires=READ_RULE)
        add(StatRequest, self.stat, requires=READ_RULE)
        add(ExistsRequest, self.exists, requires=READ_RULE)
        add(ListRequest, self.list, requires=READ_RULE)
        add(SelectRequest, self.select, requires=SELECT_RULE)
        add(CreateRequest, self.create, requires=CREATE_RULE)
        add(SetRequest, self.set, requires=SET_RULE)
        add(DeleteRequest, self.delete, requires=DELETE_RULE)
        add(TxnRequest, self.txn, requires=TXN_RULE)
        add(WriteBatchRequest, self.write_batch, requires=BATCH_RULE)
        add(CreateSessionRequest, self.create_session, lane=session_lane, requires=SESSION_RULE)
        add(HeartbeatRequest, self.heartbeat, lane=session_lane, requires=SESSION_RULE)
        add(CloseSessionRequest, self.close_session, lane=session_lane, requires=SESSION_RULE)
        add(GetSessionRequest, self.get_session, requires=SESSION_RULE)
        add(WatchRequest, self.watch, lane=watch_lane, requires=SELECT_RULE)
        add(StatusRequest, self.status, requires=STATUS_RULE)
        add(SaveSnapshotRequest, self.save_snapshot, requires=SNAPSHOT_RULE)

    # -- helpers ---------------------------------------------------------------------------------------------

    async def _barrier(self, ctx: CallContext, stale: bool) -> None:
        if not stale:
            await self.node.read_barrier(ctx, DEFAULT_BARRIER_TIMEOUT_S)
        if self.replica.installing:
            raise UnavailableError(
                f"replica {self.replica.config.id} is installing a snapshot from the leader",
                hint="another replica can answer",
            )

    async def _propose(self, ctx: CallContext, command: Command) -> Any:
        applied = await self._propose_applied(ctx, command)
        if isinstance(applied.result, FeitianError):
            raise applied.result
        return applied.result

    async def _propose_applied(self, ctx: CallContext, command: Command) -> Applied:
        validate_command(command, self.sm.limits)  # refuse a bad request before it costs a log entry
        applied = await self.node.propose(ctx, encode_command(command), type(command).__name__)
        if not isinstance(applied, Applied):
            raise InternalError(f"coord: the state machine returned {type(applied).__name__}")
        return applied

    # -- reads -----------------------------------------------------------------------------------------------

    async def get(self, ctx: CallContext, req: GetRequest) -> GetResult:
        await self._barrier(ctx, req.stale)
        return self.sm.get(req.path)

    async def stat(self, ctx: CallContext, req: StatRequest) -> StatResult:
        await self._barrier(ctx, req.stale)
        return self.sm.stat(req.path)

    async def exists(self, ctx: CallContext, req: ExistsRequest) -> ExistsResult:
        await self._barrier(ctx, req.stale)
        return self.sm.exists(req.path)

    async def list(self, ctx: CallContext, req: ListRequest) -> ListReply:
        await self._barrier(ctx, req.stale)
        page = self.sm.list(req.path, start_after=req.start_after, limit=req.limit or None)
        values: tuple[bytes, ...] = ()
        if req.values:  # read in the same step as the listing: one revision
            nodes = self.sm.tree.nodes
            values = tuple(nodes[c.path].value if c.path in nodes else b"" for c in page.children)
        return ListReply(
            directory=page.directory, children=page.children, revision=page.revision, more=page.more, values=values
        )

    async def select(self, ctx: CallContext, req: SelectRequest) -> SelectResult:
        await self._barrier(ctx, req.stale)
        return self.sm.select(req.selector, start_after=req.start_after, limit=req.limit or None)

    # -- writes ----------------------------------------------------------------------------------------------

    async def create(self, ctx: CallContext, req: CreateRequest) -> Created:
        result: Created = await self._propose(ctx, write_command(principal_of(ctx), req))
        return result

    async def set(self, ctx: CallContext, req: SetRequest) -> Updated:
        result: Updated = await self._propose(ctx, write_command(principal_of(ctx), req))
        return result

    async def delete(self, ctx: CallContext, req: DeleteRequest) -> Deleted:
        result: Deleted = await self._propose(ctx, write_command(principal_of(ctx), req))
        return result

    async def txn(self, ctx: CallContext, req: TxnRequest) -> TxnCommitted:
        result: TxnCommitted = await self._propose(ctx, write_command(principal_of(ctx), req))
        return result

    async def write_batch(self, ctx: CallContext, req: WriteBatchRequest) -> WriteBatchReply:
        """Each write is validated alone (a bad one is answered at once and costs nothing); the rest go to the
        log as one :class:`Batch` entry and each gets its own result."""
        limits = self.sm.limits
        validate_batch_bounds(len(req.writes), 0, limits)
        principal = principal_of(ctx)
        results: list[StoredResult | None] = []
        commands: list[WriteCommand] = []
        for write in req.writes:
            command = write_command(principal, write)
            try:
                validate_command(command, limits)
            except FeitianError as error:
                results.append(ErrorValue.from_error(error))
            else:
                results.append(None)
                commands.append(command)
        if commands:
            applied = await self._propose_applied(ctx, Batch(commands=tuple(commands)))
            if isinstance(applied.result, FeitianError):  # the batch's own bounds (checked again on apply)
                raise applied.result
            parts = iter(applied.parts)
            results = [r if r is not None else stored_result(next(parts).result) for r in results]
        return WriteBatchReply(results=tuple(r for r in results if r is not None))

    # -- sessions --------------------------------------------------------------------------------------------

    async def create_session(self, ctx: CallContext, req: CreateSessionRequest) -> SessionCreated:
        command = CreateSession(
            principal=principal_of(ctx), client_id=req.client_id, request_seq=req.request_seq, ttl_ms=req.ttl_ms
        )
        result: SessionCreated = await self._propose(ctx, command)
        return result

    async def heartbeat(self, ctx: CallContext, req: HeartbeatRequest) -> HeartbeatReply:
        timeout = remaining_s(ctx, DEFAULT_BARRIER_TIMEOUT_S)
        return await self.sessions.heartbeat(req.session_id, principal_of(ctx), timeout)

    async def close_session(self, ctx: CallContext, req: CloseSessionRequest) -> SessionClosed:
        command = CloseSession(
            principal=principal_of(ctx),
            client_id=req.client_id,
            request_seq=req.request_seq,
            session_id=req.session_id,
        )
        result: SessionClosed = await self._propose(ctx, command)
        return result

    async def get_session(self, ctx: CallContext, req: GetSessionRequest) -> SessionInfo:
        await self._barrier(ctx, req.stale)
        return self.sm.session(req.session_id)

    # -- subscriptions ---------------------------------------------------------------------------------------

    async def watch(self, ctx: CallContext, req: WatchRequest) -> WatchReply:
        clock = self.node.clock
        wait_s = min(max(req.wait_ms, 0), MAX_WATCH_WAIT_MS) / 1000
        # No longer than the caller's deadline allows (the kit reads it), less time for the answer to travel back.
        give_up_ns = clock.monotonic_ns() + int(remaining_s(ctx, wait_s, margin=0.2) * SECOND_NS)
        if req.since < -1:
            raise InvalidArgumentError(f"watch: since must be a revision (>= 0) or -1 (from now), not {req.since}")
        sm = self.sm
        if req.since < 0 or req.since > sm.revision or self.replica.leader_address is None:
            # Starting from "now" needs a now at least as recent as any write acknowledged before the call. A
            # resumed watch (since >= 0) does not: it is answered with events after ``since`` in order, as
            # this replica applies them, so it needs no read barrier (a replica without a leader still takes
            # one, which fails or waits for a leader, so a client does not poll an isolated replica). A since
            # beyond this replica's revision may come from a replica ahead of it: after a barrier this one is
            # as recent as any, and a since still beyond it names a revision that does not exist.
            await self._barrier(ctx, stale=False)
            if req.since > sm.revision:
                raise InvalidArgumentError(
                    f"watch: since {req.since} is beyond the current revision {sm.revision}",
                    hint="resume from the last revision you received, or -1 for from now",
                    revision=sm.revision,
                )
        since = sm.revision if req.since < 0 else req.since
        sm.events_since(since, req.selector, limit=1)  # validates the selector before any wait
        while True:
            revision = sm.revision
            result = sm.events_since(since, req.selector)
            if not isinstance(result, EventBatch):
                return WatchReply(through_revision=since, compacted=result, revision=revision)
            if result.events or result.more:
                return WatchReply(
                    events=result.events, through_revision=result.through_revision, more=result.more, revision=revision
                )
            since = max(since, result.through_revision)
            left = (give_up_ns - clock.monotonic_ns()) / SECOND_NS
            if left <= 0 or self.replica.leader_address is None:  # time is up, or no leader to stay current with
                return WatchReply(through_revision=since, revision=revision)
            await self.feed.wait_changed(revision, min(left, WATCH_SLICE_S))

    # -- operations ------------------------------------------------------------------------------------------

    async def status(self, ctx: CallContext, req: StatusRequest) -> CoordStatus:
        sm, tracker = self.sm, self.sessions.tracker
        return CoordStatus(
            replica=self.replica.stats(),
            revision=sm.revision,
            nodes=len(sm.tree.nodes),
            sessions=len(sm.sessions),
            leader_epoch=sm.leader_epoch,
            tracking=tracker.active,
            tracked_sessions=len(tracker),
            history_events=len(sm.history),
            compacted_through=sm.history.compacted_through,
        )

    async def save_snapshot(self, ctx: CallContext, req: SaveSnapshotRequest) -> SnapshotInfo:
        await self._barrier(ctx, stale=False)
        data = self.sm.snapshot()
        ctx.reply_payload = data
        return SnapshotInfo(revision=self.sm.revision, applied_index=self.sm.applied_index, size_bytes=len(data))


class CoordReplica(ReplicatedService):
    """One replica of the coordination service, on the replicated-service kit: state machine, session duties
    (``StartLeaderTerm`` as the start-of-term entry, the expiry loop as a leader-only task), handlers."""

    def __init__(
        self,
        config: ReplicaConfig,
        client: Client,
        *,
        limits: CoordLimits = DEFAULT_LIMITS,
        clock: Clock | None = None,
    ) -> None:
        clock = clock or MonotonicClock()
        self.session_clock = StallAdjustedClock(clock)  # session deadlines never count server stalls
        self.sm = CoordStateMachine(limits)
        self.tracker = SessionTracker(max_expire_batch=limits.max_expire_batch)
        self.feed = AppliedFeed(self.sm, self.tracker, self.session_clock)
        super().__init__("coord", config, self.feed, client, clock=clock, start_entry=start_leader_term)
        self.sessions = LeaderSessions(self.duties, self.sm, self.tracker, self.session_clock)
        self.service = CoordService(self, self.feed, self.sessions)

    def register(self, server: Server) -> None:
        super().register(server)
        self.service.register(server)
