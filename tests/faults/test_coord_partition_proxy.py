"""The fault-injecting proxy itself, against an echo server on 127.0.0.1: it forwards both ways, a blackhole cut
swallows bytes and keeps connections open until healed, a reset cut refuses, a delay holds bytes back, and
partitions cut exactly the links between groups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from feitian.rpc import TcpAddress, parse_address
from feitian.testing.faultproxy import FaultProxy


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def dial(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parsed = parse_address(address)
    assert isinstance(parsed, TcpAddress)
    return await asyncio.open_connection(parsed.host, parsed.port)


async def closed(reader: asyncio.StreamReader) -> bool:
    """The connection ends (EOF or reset) without delivering anything more."""
    received = b""
    try:
        while data := await asyncio.wait_for(reader.read(65536), 5):
            received += data
    except ConnectionResetError:
        pass
    return received == b""


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await reader.readexactly(len(data))


async def test_forwards_cuts_and_heals(echo_server: str) -> None:
    proxy = FaultProxy(seed=1)
    try:
        address = await proxy.add_link(1, 2, echo_server)
        link = proxy.link(1, 2)
        reader, writer = await dial(address)
        big = bytes(range(256)) * 4096  # 1 MiB, several chunks each way
        assert await roundtrip(reader, writer, big) == big
        assert link.bytes_forwarded == 2 * len(big)

        link.cut()  # blackhole: nothing comes back, the connection stays open
        writer.write(b"lost")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.2)
        assert not reader.at_eof()
        reader2, writer2 = await dial(address)  # accepted, then swallowed
        writer2.write(b"also lost")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader2.readexactly(9), 0.2)

        link.heal()  # connections that lost bytes are closed; new ones work
        assert await closed(reader)
        assert await closed(reader2)
        writer.close()
        writer2.close()
        reader3, writer3 = await dial(address)
        assert await roundtrip(reader3, writer3, b"back") == b"back"

        link.cut("reset")  # current connections aborted, new ones closed at once
        assert await closed(reader3)
        reader4, writer4 = await dial(address)
        assert await closed(reader4)
        writer3.close()
        writer4.close()
        link.heal()
        assert link.bytes_dropped > 0 and link.connections_dropped >= 1
    finally:
        await proxy.close()


async def test_delay_holds_bytes_back_in_order(echo_server: str) -> None:
    proxy = FaultProxy()
    try:
        address = await proxy.add_link(1, 2, echo_server)
        proxy.link(1, 2).delay(0.3)
        reader, writer = await dial(address)
        for i in range(5):
            writer.write(b"%d" % i)
            await writer.drain()
        with pytest.raises(TimeoutError):  # delayed 0.3 s each way: nothing within 0.1 s
            await asyncio.wait_for(reader.readexactly(1), 0.1)
        received = b""
        while len(received) < 5:
            received += await asyncio.wait_for(reader.read(5), 5)
        assert received == b"01234"
        writer.close()
    finally:
        await proxy.close()


async def test_partition_cuts_links_between_groups_only(echo_server: str) -> None:
    proxy = FaultProxy()
    try:
        routes = await proxy.route_replicas({1: echo_server, 2: echo_server, 3: echo_server})
        assert sorted(proxy.links) == [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)]
        assert set(routes[1]) == {2, 3}
        proxy.partition({1}, {2, 3})
        cut = sorted(k for k, link in proxy.links.items() if link.cut_mode)
        assert cut == [(1, 2), (1, 3), (2, 1), (3, 1)]
        proxy.isolate(2)
        cut = sorted(k for k, link in proxy.links.items() if link.cut_mode)
        assert cut == [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)]
        proxy.heal()
        assert not any(link.cut_mode for link in proxy.links.values())
        reader, writer = await dial(routes[3][1])
        assert await roundtrip(reader, writer, b"ok") == b"ok"
        writer.close()
    finally:
        await proxy.close()


async def test_drop_rate_aborts_connections(echo_server: str) -> None:
    proxy = FaultProxy(seed=3)
    try:
        address = await proxy.add_link(1, 2, echo_server)
        proxy.link(1, 2).drop_rate = 1.0
        reader, writer = await dial(address)
        writer.write(b"x")
        assert await closed(reader)  # the first chunk aborted the connection
        assert proxy.link(1, 2).connections_dropped == 1
        writer.close()
    finally:
        await proxy.close()
