"""A small replicated key-value store on the consensus layer: the test and benchmark workload of issue 5.

It is deliberately simple — the coordination service (Nuwa) is the real state machine — but it is real:
every write is a committed log entry on a majority with fsync, reads are linearizable (ReadIndex) unless
``stale=True``, and the replica snapshots and compacts its log.
"""

from __future__ import annotations

from typing import Any

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import (
    ConflictError,
    InvalidArgumentError,
)
from feitian.replica.driver import ReplicaConfig, ReplicaStats
from feitian.replica.router import Router
from feitian.replica.service import ReplicatedService
from feitian.rpc import CallContext, Client, Request, handler
from feitian.security.core import MethodRule, Right, requires

MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1 << 20


# -- commands in the log ----------------------------------------------------------------------------------------


class PutCommand(msgspec.Struct, frozen=True, tag="put", array_like=True):
    key: str
    value: bytes
    expect_version: int = -1  # -1: unconditional; 0: must not exist; n: must be at version n


class DeleteCommand(msgspec.Struct, frozen=True, tag="del", array_like=True):
    key: str


Command = PutCommand | DeleteCommand
_command_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(Command)


class KvStateMachine:
    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.applied_index = 0

    def apply(self, index: int, data: bytes) -> Any:
        self.applied_index = index
        command = _command_decoder.decode(data)
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
        return msgspec.msgpack.encode([self.applied_index, self.data])

    def restore(self, data: bytes) -> None:
        index, items = msgspec.msgpack.decode(data, type=tuple[int, dict[str, tuple[bytes, int]]])
        self.applied_index, self.data = index, items


# -- the service ------------------------------------------------------------------------------------------------


class PutReply(msgspec.Struct, frozen=True):
    version: int


class Put(Request[PutReply], frozen=True, tag="kv.Put"):
    key: str
    value: bytes
    expect_version: int = -1


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


class Stats(Request[ReplicaStats], frozen=True, tag="kv.Stats"):
    idempotent = True


def _check_key(key: str, value: bytes = b"") -> None:
    if not key or len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidArgumentError(f"key must be 1..{MAX_KEY_BYTES} bytes, got {len(key.encode())}")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidArgumentError(f"put {key!r}: value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")


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
        command = PutCommand(req.key, req.value, req.expect_version)
        version = await self.propose(ctx, _command_encoder.encode(command), f"put {req.key!r}")
        return PutReply(version)

    @handler(Delete, requires=_WRITE)
    async def delete(self, ctx: CallContext, req: Delete) -> bool:
        _check_key(req.key)
        existed: bool = await self.propose(ctx, _command_encoder.encode(DeleteCommand(req.key)), f"delete {req.key!r}")
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
    (its connection broke, its leader was lost) is sent again only with ``retry_lost``."""

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

    @property
    def leader(self) -> str | None:
        return self.caller.leader

    async def put(self, key: str, value: bytes, expect_version: int = -1, *, retry_lost: bool = False) -> int:
        reply = await self.caller.call(Put(key, value, expect_version), retry_lost=retry_lost)
        return reply.version

    async def get(self, key: str, *, stale: bool = False) -> GetReply:
        return await self.caller.call(Get(key, stale), retry_lost=True)

    async def delete(self, key: str) -> bool:
        return await self.caller.call(Delete(key), retry_lost=False)
