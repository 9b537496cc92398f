"""node.Stats and /metrics served by a real Kuafu server and HTTP listener on 127.0.0.1."""

from __future__ import annotations

import aiohttp

from feitian.rpc import CallContext, Client, ClientConfig, Server, ServerConfig
from feitian.rpc.metrics import MetricsServer
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
