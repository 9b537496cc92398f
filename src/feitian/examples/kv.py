"""A small replicated key-value store on the consensus layer: the test and benchmark workload of issue 5.

It is deliberately simple — the coordination service (Nuwa) is the real state machine — but it is real:
every write is a committed log entry on a majority with fsync, reads are linearizable (ReadIndex) unless
``stale=True``, and the replica snapshots and compacts its log. It is built on the replicated-service kit: a
write the client may send again (``retry_lost``) carries a ``client_id`` and ``request_seq`` and is applied once
(the kit's dedupe table, kept in snapshots); writes sent once carry none and cost nothing more.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import ConflictError, InvalidArgumentError
from feitian.replica import ReplicaConfig, ReplicaStats, ReplicatedService, Router
from feitian.replica.core import (
    ClientRecord,
    DedupeTable,
    ReplyCodec,
    RequestKey,
    StoredReply,
    apply_once,
    request_key,
)
from feitian.rpc import CallContext, Client, Request, handler
from feitian.security.core import MethodRule, Right, requires

MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1 << 20
DEDUPE_WINDOW = 1024  # writes remembered per client (a client keeps at most this many retried writes in flight)
MAX_DEDUPE_CLIENTS = 1024


# -- commands in the log ----------------------------------------------------------------------------------------


class PutCommand(msgspec.Struct, frozen=True, tag="put", array_like=True):
    key: str
    value: bytes
    expect_version: int = -1  # -1: unconditional; 0: must not exist; n: must be at version n
    request: RequestKey | None = None  # a write to apply once (the client may send it again)


class DeleteCommand(msgspec.Struct, frozen=True, tag="del", array_like=True):
    key: str
    request: RequestKey | None = None


Command = PutCommand | DeleteCommand
_command_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(Command)
_REPLIES = ReplyCodec((int, bool))
_CLIENTS_DECODER = msgspec.msgpack.Decoder(list[ClientRecord[StoredReply]])
_DATA_DECODER = msgspec.msgpack.Decoder(dict[str, tuple[bytes, int]])


class KvStateMachine:
    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.applied_index = 0
        self.dedupe: DedupeTable[StoredReply] = DedupeTable(DEDUPE_WINDOW, MAX_DEDUPE_CLIENTS)

    def apply(self, index: int, data: bytes) -> Any:
        self.applied_index = index
        command = _command_decoder.decode(data)
        return apply_once(self.dedupe, _REPLIES, type(command).__name__, command.request, lambda: self._apply(command))

    def _apply(self, command: Command) -> Any:
        if isinstance(command, PutCommand):
            _, version = self.data.get(command.key, (b"", 0))
            if command.expect_version >= 0 and command.expect_version != version:
                return ConflictError(
                    f"put {command.key!r}: version {command.expect_version} expected, found {version}",
                    expected=command.expect_version,
                    found=version,
                )
            self.data[command.key] = (command.value, version + 1)
            return version + 1
        existed = self.data.pop(command.key, None) is not None
        return existed

    def snapshot(self) -> bytes:
        """``[applied_index, data]``, and the dedupe table's msgpack third when it holds any client."""
        if not self.dedupe.clients:
            return msgspec.msgpack.encode([self.applied_index, self.data])
        clients = msgspec.msgpack.encode(list(self.dedupe.clients.values()))
        return msgspec.msgpack.encode([self.applied_index, self.data, clients])

    def restore(self, data: bytes) -> None:
        parts = msgspec.msgpack.decode(data, type=list[msgspec.Raw])
        if len(parts) not in (2, 3):
            raise InvalidArgumentError(f"kv snapshot: {len(parts)} parts, expected 2 or 3")
        table: DedupeTable[StoredReply] = DedupeTable(DEDUPE_WINDOW, MAX_DEDUPE_CLIENTS)
        if len(parts) == 3:
            table.restore(_CLIENTS_DECODER.decode(msgspec.msgpack.decode(parts[2], type=bytes)))
        self.applied_index = msgspec.msgpack.decode(parts[0], type=int)
        self.data = _DATA_DECODER.decode(parts[1])
        self.dedupe = table


# -- the service ------------------------------------------------------------------------------------------------


class PutReply(msgspec.Struct, frozen=True):
    version: int


class Put(Request[PutReply], frozen=True, tag="kv.Put"):
    key: str
    value: bytes
    expect_version: int = -1
    client_id: str = ""  # with request_seq: a write that may be sent again, applied once ("": sent once)
    request_seq: int = 0


class GetReply(msgspec.Struct, frozen=True):
    found: bool
    value: bytes = b""
    version: int = 0


class Get(Request[GetReply], frozen=True, tag="kv.Get"):
    key: str
    stale: bool = False  # True: answer from this replica's state without confirming it is current

    idempotent = True


class Delete(Request[bool], frozen=True, tag="kv.Delete"):
    key: str
    client_id: str = ""
    request_seq: int = 0


class Stats(Request[ReplicaStats], frozen=True, tag="kv.Stats"):
    idempotent = True


def _check_key(key: str, value: bytes = b"") -> None:
    if not key or len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidArgumentError(f"key must be 1..{MAX_KEY_BYTES} bytes, got {len(key.encode())}")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidArgumentError(f"put {key!r}: value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")


def _request(ctx: CallContext, req: Put | Delete) -> RequestKey | None:
    principal = ctx.peer.principal
    return request_key(principal.id if principal is not None else "", req.client_id, req.request_seq, req)


KV_RESOURCE = "kv:/"
_READ: MethodRule[Any] = requires(Right.READ, KV_RESOURCE)
_WRITE: MethodRule[Any] = requires(Right.WRITE, KV_RESOURCE)


class KvService(ReplicatedService):
    """One kv replica on the replicated-service kit: ``register`` serves consensus traffic, ``server.add_service``
    the ``kv.*`` handlers. It has no leader-only duties."""

    def __init__(self, config: ReplicaConfig, client: Client, *, clock: Clock | None = None) -> None:
        self.state = KvStateMachine()
        super().__init__("kv", config, self.state, client, clock=clock or MonotonicClock())

    @handler(Put, requires=_WRITE)
    async def put(self, ctx: CallContext, req: Put) -> PutReply:
        _check_key(req.key, req.value)
        command = PutCommand(req.key, req.value, req.expect_version, _request(ctx, req))
        version = await self.propose(ctx, _command_encoder.encode(command), f"put {req.key!r}")
        return PutReply(version)

    @handler(Delete, requires=_WRITE)
    async def delete(self, ctx: CallContext, req: Delete) -> bool:
        _check_key(req.key)
        command = DeleteCommand(req.key, _request(ctx, req))
        existed: bool = await self.propose(ctx, _command_encoder.encode(command), f"delete {req.key!r}")
        return existed

    @handler(Get, requires=_READ)
    async def get(self, ctx: CallContext, req: Get) -> GetReply:
        _check_key(req.key)
        if not req.stale:
            await self.read_barrier(ctx, self.propose_timeout_s)
        item = self.state.data.get(req.key)
        if item is None:
            return GetReply(False)
        return GetReply(True, item[0], item[1])

    @handler(Stats, requires=_READ)
    async def stats(self, ctx: CallContext, req: Stats) -> ReplicaStats:
        return self.replica.stats()


# -- a client that follows the leader ---------------------------------------------------------------------------


class KvClient:
    """Sends writes to the leader (following NotLeaderError hints) and fails over between replicas (the kit's
    :class:`~feitian.replica.router.Router`). It is a test workload's client: a write whose outcome is unknown
    (its connection broke, its leader was lost) is sent again only with ``retry_lost``, and then carries this
    client's id and a sequence number, so it is applied once."""

    def __init__(
        self, client: Client, addresses: list[str], *, timeout_s: float = 10.0, attempt_timeout_s: float = 2.0
    ) -> None:
        self.caller = Router(
            client,
            addresses,
            timeout_s=timeout_s,
            attempt_timeout_s=attempt_timeout_s,
            service="kv replica",
            fatal_reasons=("disk_full",),
        )
        self.addresses = self.caller.addresses
        self.client_id = secrets.token_hex(8)
        self._seq = 0

    @property
    def leader(self) -> str | None:
        return self.caller.leader

    async def put(self, key: str, value: bytes, expect_version: int = -1, *, retry_lost: bool = False) -> int:
        request = Put(key, value, expect_version)
        if retry_lost:
            self._seq += 1
            request = Put(key, value, expect_version, self.client_id, self._seq)
        reply = await self.caller.call(request, retry_lost=retry_lost)
        return reply.version

    async def get(self, key: str, *, stale: bool = False) -> GetReply:
        return await self.caller.call(Get(key, stale), retry_lost=True)

    async def delete(self, key: str) -> bool:
        return await self.caller.call(Delete(key), retry_lost=False)
