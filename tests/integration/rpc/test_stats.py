"""node.Stats and /metrics served by a real Kuafu server and HTTP listener on 127.0.0.1."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from feitian.errors import ConfigError
from feitian.rpc import CallContext, Client, ClientConfig, Server, ServerConfig
from feitian.rpc.metrics import MAX_REQUEST_BYTES, MetricsServer
from feitian.rpc.status import NodeStats, Stats, StatsReply, add_stats_handler, rpc_source
from feitian.testing.rpc import serving


async def test_stats_rpc_and_metrics_page_of_a_server() -> None:
    server = Server(ServerConfig(name="echo-1", role="echo"))
    stats = NodeStats("echo-1", "echo")
    rpc_source(stats, server)
    add_stats_handler(server, stats)

    async def text(ctx: CallContext, value: str) -> str:
        return value

    server.add_text_handler("echo.text", text)
    metrics = MetricsServer(stats, "tcp://127.0.0.1:0")
    url = await metrics.start()
    try:
        async with serving(server) as (_, address), Client(ClientConfig(name="t")) as client:
            before: StatsReply = await client.call(address, Stats())
            assert before.role == "echo" and before.counters["rpc_requests_completed"] == 0
            assert before.gauges["rpc_connections"] == 1
            for _ in range(3):
                await client.call_text(address, "echo.text", "x")
            after: StatsReply = await client.call(address, Stats())
            assert after.counters["rpc_requests_completed"] == 3  # asking for stats is not counted

            async with aiohttp.ClientSession() as http, http.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                page = await response.text()
            assert 'feitian_rpc_requests_completed_total{node="echo-1",role="echo"} 3.0' in page
            async with aiohttp.ClientSession() as http, http.get(url.replace("/metrics", "/other")) as response:
                assert response.status == 404
    finally:
        await metrics.stop()


async def raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as is and end the sending side; everything the server answers before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    writer.write_eof()
    await writer.drain()
    try:
        return await reader.read()
    finally:
        writer.close()


async def test_the_metrics_responder_answers_within_its_bounds() -> None:
    metrics = MetricsServer(NodeStats("n", "echo"), "tcp://127.0.0.1:0")
    port = int((await metrics.start()).split(":")[2].split("/")[0])
    try:
        head = await raw(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")  # no body
        assert b"Content-Length: 0" not in head
        query = await raw(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
        assert query.startswith(b"HTTP/1.1 200") and b'feitian_up{node="n",role="echo"} 1.0' in query
        post = await raw(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405") and b"Allow: GET, HEAD" in post
        assert (await raw(port, b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400")
        huge = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * (MAX_REQUEST_BYTES + 10) + b"\r\n\r\n"
        assert (await raw(port, huge)).startswith(b"HTTP/1.1 431")
        assert await raw(port, b"GET /metr") == b""  # a half request, then the client's end: closed unanswered
    finally:
        await metrics.stop()


async def test_a_taken_metrics_port_is_a_config_error_naming_it() -> None:
    first = MetricsServer(NodeStats("a", "echo"), "tcp://127.0.0.1:0")
    url = await first.start()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        second = MetricsServer(NodeStats("b", "echo"), f"tcp://127.0.0.1:{port}")
        with pytest.raises(ConfigError, match=f"cannot listen on tcp://127.0.0.1:{port}") as info:
            await second.start()
        assert info.value.hint is not None and "another program holds that port" in info.value.hint
    finally:
        await first.stop()
