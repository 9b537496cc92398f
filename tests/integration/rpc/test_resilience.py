"""Reconnects, server restarts and shutdowns, nuwa:// resolution, and hostile bytes on the wire."""

from __future__ import annotations

import asyncio
import socket

import msgspec
import pytest

from feitian.deploy.cluster import free_ports
from feitian.errors import ConnectionLostError, InvalidArgumentError, UnavailableError
from feitian.rpc import CallContext, Client, ClientConfig, Echo, Health, MemoryResolver, Request, Server, ServerConfig
from feitian.rpc.core.frame import HEADER, MAGIC, PROTOCOL_VERSION, Kind, encode_frame
from feitian.rpc.core.messages import ErrorInfo, Hello
from feitian.testing.rpc import serving
from feitian.testing.waiting import wait_for_condition


class WhoAmI(Request[str], frozen=True, tag="test.WhoAmI"):
    pass


def named_server(name: str) -> Server:
    server = Server(ServerConfig(name=name))

    async def who(ctx: CallContext, req: WhoAmI) -> str:
        return name

    server.add_handler(WhoAmI, who)
    return server


def free_port() -> int:
    (port,) = free_ports(1)
    return port


async def test_unreachable_server_gives_unavailable_after_connect_timeout() -> None:
    async with Client(ClientConfig(connect_timeout_s=0.3)) as client:
        with pytest.raises(UnavailableError, match="cannot connect") as info:
            await client.call(f"tcp://127.0.0.1:{free_port()}", Health())
        assert info.value.hint and "attempts" in info.value.message


async def test_deadline_bounds_the_wait_for_a_connection() -> None:
    async with Client(ClientConfig(connect_timeout_s=30)) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(UnavailableError, match="before the deadline: Connection refused"):
            await client.call(f"tcp://127.0.0.1:{free_port()}", Health(), timeout=0.3)
        assert loop.time() - t0 < 10  # the deadline, not connect_timeout_s, ended the wait


async def test_client_reconnects_when_the_server_comes_back() -> None:
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    async with Client(ClientConfig(connect_timeout_s=10)) as client:
        async with serving(named_server("first"), addr):
            assert await client.call(addr, WhoAmI()) == "first"
        # Server gone. A call now waits for the connection (retrying with back-off) ...
        pending = asyncio.ensure_future(client.call(addr, WhoAmI()))
        await asyncio.sleep(0)
        assert not pending.done()
        # ... and succeeds once a server listens on the address again.
        async with serving(named_server("second"), addr):
            assert await pending == "second"


async def test_calls_in_flight_fail_clearly_when_the_connection_breaks() -> None:
    release = asyncio.Event()
    server = Server()

    async def hang(ctx: CallContext, req: WhoAmI) -> str:
        await release.wait()
        return "never"

    server.add_handler(WhoAmI, hang)
    async with serving(server) as (_, addr), Client() as client:
        call = client.start(addr, WhoAmI(), idempotent=False)
        await wait_for_condition(lambda: server.lane_stats()["default"]["active"] == 1, what="handler running")
        conn = client._channels[addr].conn
        assert conn is not None and conn.transport is not None
        conn.transport.abort()  # the network breaks
        with pytest.raises(ConnectionLostError, match="lost"):
            await call
        release.set()
        assert await client.call(addr, Echo(b"again")) == b"again"  # a fresh connection


async def test_graceful_shutdown_lets_calls_in_flight_finish() -> None:
    release = asyncio.Event()
    server = Server()

    async def slow(ctx: CallContext, req: WhoAmI) -> str:
        await release.wait()
        return "finished"

    server.add_handler(WhoAmI, slow)
    addr = (await server.start(["tcp://127.0.0.1:0"]))[0]
    async with Client(ClientConfig(connect_timeout_s=0.2)) as client:
        call = client.start(addr, WhoAmI())
        await wait_for_condition(lambda: server.lane_stats()["default"]["active"] == 1, what="handler running")
        stopping = asyncio.ensure_future(server.stop(grace_s=10))
        conn = client._channels[addr].conn
        assert conn is not None
        await wait_for_condition(lambda: conn.draining, what="GOAWAY received")
        release.set()
        assert await call == "finished"
        await stopping
        with pytest.raises(UnavailableError):
            await client.call(addr, Health())


async def test_nuwa_addresses_balance_resolve_once_and_follow_changes() -> None:
    resolver = MemoryResolver()
    async with serving(named_server("s1")) as (_, a1), serving(named_server("s2")) as (_, a2):
        resolver.set_endpoints("local", "Who", [a1, a2])
        async with Client(ClientConfig(connect_timeout_s=0.2), resolver=resolver) as client:
            names = [await client.call("nuwa://local/Who", WhoAmI()) for _ in range(10)]
            assert sorted(set(names)) == ["s1", "s2"] and names.count("s1") == 5
            assert resolver.resolve_calls == 1  # NUWA-8: no change, one lookup
            resolver.set_endpoints("local", "Who", [a2])  # a change notification marks the cache item Old
            names = [await client.call("nuwa://local/Who", WhoAmI()) for _ in range(4)]
            assert names == ["s2"] * 4 and resolver.resolve_calls == 2


async def test_nuwa_address_skips_a_dead_server() -> None:
    resolver = MemoryResolver()
    dead = f"tcp://127.0.0.1:{free_port()}"
    async with serving(named_server("alive")) as (_, alive):
        resolver.set_endpoints("local", "Who", [dead, alive])
        async with Client(ClientConfig(connect_timeout_s=0.2), resolver=resolver) as client:
            assert [await client.call("nuwa://local/Who", WhoAmI(), timeout=5) for _ in range(4)] == ["alive"] * 4
        resolver.set_endpoints("local", "Who", [])
        async with Client(resolver=resolver) as client:
            with pytest.raises(UnavailableError, match="no live server"):
                await client.call("nuwa://local/Who", WhoAmI())


async def test_nuwa_address_without_resolver_is_a_clear_error() -> None:
    async with Client() as client:
        with pytest.raises(InvalidArgumentError, match="no resolver"):
            await client.call("nuwa://local/Who", WhoAmI())


# -- hostile input: the server survives and keeps serving -----------------------------------------------------


def raw_exchange(addr: str, data: bytes) -> bytes:
    host, port = addr.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


HELLO = encode_frame(Kind.HELLO, 0, msgspec.msgpack.encode(Hello(PROTOCOL_VERSION, "raw")))


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\xf7",  # a truncated header
        HELLO + b"\x00" * 40,  # bad magic after a good handshake
        encode_frame(Kind.REQUEST, 1, b"\x90", name=b"kuafu.Echo"),  # a request before Hello
        HELLO + HELLO,  # a second Hello
        HELLO + encode_frame(Kind.REQUEST, 1, b"\xc1\xc1", name=b"kuafu.Echo"),  # undecodable body
        HELLO + encode_frame(Kind.REQUEST, 2, b"\x91\xc4\x01a", name=b"kuafu.Echo")[:-1],  # truncated frame
        encode_frame(Kind.HELLO, 0, b"\xff\xfe"),  # malformed Hello
    ],
)
async def test_malformed_input_never_crashes_the_server(garbage: bytes) -> None:
    async with serving() as (_, addr), Client() as client:
        await asyncio.to_thread(raw_exchange, addr, garbage)
        assert await client.call(addr, Echo(b"alive"), timeout=5) == b"alive"


async def test_wrong_protocol_version_gets_an_error_frame_then_close() -> None:
    async with serving() as (_, addr):
        bad = HEADER.pack(MAGIC, PROTOCOL_VERSION + 1, Kind.HELLO, 0, 0, 0, 0, 0, 0)
        reply = await asyncio.to_thread(raw_exchange, addr, bad)
        assert reply[2] == Kind.ERROR
        info = msgspec.msgpack.decode(reply[26:], type=ErrorInfo)
        assert info.code == "protocol" and "not supported" in info.message


async def test_fuzzed_streams_do_not_crash_the_server() -> None:
    import random

    rng = random.Random(1234)
    valid = HELLO + encode_frame(Kind.REQUEST, 1, msgspec.msgpack.encode(Echo(b"x")), name=b"kuafu.Echo")
    async with serving() as (_, addr), Client() as client:
        for _ in range(60):
            data = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            await asyncio.to_thread(raw_exchange, addr, bytes(data[: rng.randint(1, len(data))]))
        assert await client.call(addr, Echo(b"alive"), timeout=5) == b"alive"
