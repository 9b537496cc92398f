"""Kuafu over real sockets on 127.0.0.1: typed calls, the seed's message kinds, errors, async handles."""

from __future__ import annotations

import asyncio

import crc32c
import pytest

from feitian.errors import (
    ConflictError,
    InternalError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotFoundError,
    NotLeaderError,
)
from feitian.rpc import CallContext, Client, ClientConfig, Echo, FrameLimits, Health, Request, Server, ServerConfig
from feitian.rpc.server import handler
from feitian.testing.rpc import serving


class Put(Request[int], frozen=True, tag="test.Put"):
    key: str
    value: bytes


class Fail(Request[None], frozen=True, tag="test.Fail"):
    kind: str


class Checksum(Request[int], frozen=True, tag="test.Checksum"):
    keep: bool = False


class Service:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.kept: list[object] = []

    @handler(Put)
    async def put(self, ctx: CallContext, req: Put) -> int:
        self.data[req.key] = req.value
        return len(self.data)

    @handler(Fail)
    async def fail(self, ctx: CallContext, req: Fail) -> None:
        if req.kind == "not_leader":
            raise NotLeaderError("propose: not the leader", leader_hint="tcp://10.1.1.1:7000")
        if req.kind == "conflict":
            raise ConflictError("set /a: version 3 expected, found 4", expected=3, found=4)
        raise ZeroDivisionError("a bug")

    @handler(Checksum)
    async def checksum(self, ctx: CallContext, req: Checksum) -> int:
        if req.keep:
            self.kept.append(ctx.payload)
        return crc32c.crc32c(ctx.payload)


async def test_typed_text_and_map_calls() -> None:
    server = Server(ServerConfig(name="t"))
    server.add_service(Service())

    async def upper(ctx: CallContext, text: str) -> str:
        return text.upper()

    async def swap(ctx: CallContext, m: dict[str, str]) -> dict[str, str]:
        return {v: k for k, v in m.items()}

    server.add_text_handler("t.upper", upper)
    server.add_map_handler("t.swap", swap)
    async with serving(server) as (_, addr), Client() as client:
        assert await client.call(addr, Put("a", b"1")) == 1
        assert await client.call(addr, Put("b", b"2")) == 2
        assert await client.call_text(addr, "t.upper", "kuafu") == "KUAFU"
        assert await client.call_map(addr, "t.swap", {"k": "v"}) == {"v": "k"}
        health = await client.call(addr, Health())
        assert health.status == "ok" and health.server_name == "t"


async def test_server_errors_arrive_as_the_same_class_with_fields() -> None:
    server = Server()
    server.add_service(Service())
    async with serving(server) as (_, addr), Client() as client:
        with pytest.raises(NotLeaderError) as nl:
            await client.call(addr, Fail("not_leader"))
        assert nl.value.leader_hint == "tcp://10.1.1.1:7000"
        with pytest.raises(ConflictError) as cf:
            await client.call(addr, Fail("conflict"))
        assert cf.value.expected == 3 and cf.value.found == 4
        with pytest.raises(InternalError, match="ZeroDivisionError: a bug"):
            await client.call(addr, Fail("bug"))
        # the connection and server survive all of that
        assert await client.call(addr, Echo(b"still here")) == b"still here"


async def test_unknown_method_and_malformed_request() -> None:
    async with serving() as (_, addr), Client() as client:
        with pytest.raises(NotFoundError) as nf:
            await client.call_text(addr, "no.such.method", "x")
        assert nf.value.reason == "unknown_method"
        # Echo's body must be an array holding bytes; send a map message under its name instead.
        with pytest.raises(InvalidArgumentError, match=r"kuafu\.Echo: malformed request"):
            await client.call_map(addr, "kuafu.Echo", {"a": "b"})


async def test_async_handles_return_at_once_and_collect_later() -> None:
    async with serving() as (_, addr), Client() as client:
        handles = [client.start(addr, Echo(str(i).encode())) for i in range(200)]
        assert not any(h.done() for h in handles)
        with pytest.raises(InvalidArgumentError, match="not finished"):
            handles[0].result()
        results = [await h for h in handles]
        assert results == [str(i).encode() for i in range(200)]
        assert handles[5].result() == b"5"


async def test_bulk_payloads_arrive_intact_under_concurrency() -> None:
    service = Service()
    server = Server()
    server.add_service(service)
    rng = __import__("random").Random(7)
    payloads = [rng.randbytes(rng.choice([0, 100, 70_000, 1 << 20, (3 << 20) + 17])) for _ in range(40)]
    async with serving(server) as (_, addr), Client() as client:
        sums = await asyncio.gather(*(client.call(addr, Checksum(), payload=p) for p in payloads))
        assert sums == [crc32c.crc32c(p) for p in payloads]
        assert server.pool.reused > 0  # receive buffers were recycled...
        kept_payload = payloads[3] if len(payloads[3]) >= 65536 else bytes(1 << 20)
        await client.call(addr, Checksum(keep=True), payload=kept_payload)
        await asyncio.gather(*(client.call(addr, Checksum(), payload=p) for p in payloads))
        # ...but never one a handler kept: it still holds exactly what was sent.
        assert bytes(service.kept[0]) == kept_payload  # type: ignore[arg-type]


async def test_reply_payload() -> None:
    server = Server()

    class Read(Request[int], frozen=True, tag="test.Read"):
        size: int

    async def read(ctx: CallContext, req: Read) -> int:
        ctx.reply_payload = bytes(req.size)
        return req.size

    server.add_handler(Read, read)
    async with serving(server) as (_, addr), Client() as client:
        reply = await client.call_full(addr, Read(2 << 20))
        assert reply.value == 2 << 20 and len(reply.payload) == 2 << 20


async def test_oversized_request_is_refused_and_the_connection_survives() -> None:
    server = Server(ServerConfig(limits=FrameLimits(max_body_bytes=10_000, max_payload_bytes=100_000)))
    async with serving(server) as (_, addr), Client() as client:
        with pytest.raises(MessageTooLargeError) as info:
            await client.call(addr, Echo(), payload=bytes(200_000))
        assert info.value.limit == 100_000 and info.value.size == 200_000
        with pytest.raises(MessageTooLargeError, match="body"):
            await client.call(addr, Echo(bytes(20_000)))
        assert await client.call(addr, Echo(b"ok")) == b"ok"
        conn = client._channels[addr].conn
        assert conn is not None and not conn.closed


async def test_client_refuses_to_send_over_its_own_limits() -> None:
    cfg = ClientConfig(limits=FrameLimits(max_payload_bytes=1000))
    async with Client(cfg) as client:
        with pytest.raises(MessageTooLargeError, match="max_payload_bytes=1000"):
            await client.call("tcp://127.0.0.1:1", Echo(), payload=bytes(2000))


async def test_duplicate_registration_and_unknown_lane_are_refused() -> None:
    server = Server()
    server.add_service(Service())
    with pytest.raises(InvalidArgumentError, match="already registered"):
        server.add_service(Service())
    with pytest.raises(InvalidArgumentError, match="unknown lane"):
        Server().add_handler(Put, Service().put, lane="nope")


class Note(Request[None], frozen=True, tag="test.Note"):
    text: str


class Unserved(Request[None], frozen=True, tag="test.Unserved"):
    pass


async def test_one_way_messages_run_their_handler_in_order_and_are_never_answered() -> None:
    seen: list[str] = []
    arrived = asyncio.Event()

    def note(ctx: CallContext, req: Note) -> None:  # a synchronous handler: run as the frame is decoded
        if req.text == "boom":
            raise ConflictError("a one-way handler failed")  # logged by the server, never sent back
        seen.append(req.text)
        if req.text == "last":
            arrived.set()

    server = Server(ServerConfig(name="oneway"))
    server.add_sync_handler(Note, note)
    server.add_service(Service())
    async with serving(server) as (_, addr), Client() as client:
        assert not client.try_post(addr, Note("before any connection"))  # nothing open yet: not sent
        await client.post(addr, Note("first"), timeout=5)  # waits for the connection, then queues the frame
        for i in range(50):
            assert client.try_post(addr, Note(f"n{i}"))
        await client.post(addr, Note("boom"), timeout=5)
        await client.post(addr, Unserved(), timeout=5)  # an unknown method: dropped, the connection stays
        await client.post(addr, Note("last"), timeout=5)
        await asyncio.wait_for(arrived.wait(), 10)
        assert seen == ["first", *(f"n{i}" for i in range(50)), "last"]
        assert await client.call(addr, Put("k", b"v")) == 1  # the connection is still good for calls
        assert await client.call(addr, Note("called")) is None  # a sync handler answers ordinary calls too
        assert seen[-1] == "called"
