"""``/metrics``: a node's figures in the Prometheus text format, over plain HTTP.

The page is built by prometheus_client's exposition from a :class:`~prometheus_client.CollectorRegistry` that
belongs to the node (never the library's global registry), holding one collector that reads
:meth:`NodeStats.reply` — the same reply ``node.Stats`` answers, so both show the same figures under the same
names. Every sample carries the labels ``node`` and ``role``::

    feitian_up{node="coord-1",role="coord"} 1.0
    feitian_uptime_seconds{node="coord-1",role="coord"} 12.5
    feitian_build_info{node="coord-1",role="coord",version="0.1.0"} 1.0
    feitian_raft_term{node="coord-1",role="coord"} 2.0           # replicas only, with raft_is_leader,
    feitian_replica_proposals_total{node="coord-1",role="coord"} 7.0   # raft_commit_index, raft_applied_index

``feitian_up`` is 1 when the node says "ok" and 0 when "degraded". The page is served unauthenticated: bind it
to a loopback or management address (``[node] metrics``, docs/config.md). Scrapes are served on the node's event
loop (the figures are read where they live, without locks); a request line or header past
``MAX_REQUEST_BYTES`` is refused by the HTTP server.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feitian.errors import ConfigError, InvalidArgumentError
from feitian.rpc.core.address import TcpAddress, parse_address
from feitian.rpc.status import NodeStats, StatsReply

__all__ = ["MAX_REQUEST_BYTES", "MetricsServer", "NodeCollector", "exposition"]

PREFIX = "feitian_"
# The classic text format, which every Prometheus reads; our names need none of the newer format's escaping, so the
# page is the same whichever prometheus_client renders it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 8192  # request line and each header (aiohttp's limits, set explicitly)


class NodeCollector(Collector):
    """Turns a node's :class:`StatsReply` into Prometheus metric families."""

    def __init__(self, stats: NodeStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        return iter(families(self.stats.reply()))


def families(reply: StatsReply) -> list[Metric]:
    labels = ["node", "role"]
    values = [reply.node, reply.role]
    out: list[Metric] = []

    def gauge(name: str, help_text: str, value: float) -> None:
        family = GaugeMetricFamily(PREFIX + name, help_text, labels=labels)
        family.add_metric(values, value)
        out.append(family)

    gauge("up", "1 when the node says it is ok, 0 when degraded", 1.0 if reply.status == "ok" else 0.0)
    gauge("uptime_seconds", "seconds since the node process started", reply.uptime_s)
    info = GaugeMetricFamily(PREFIX + "build_info", "the node's feitian version (1)", labels=[*labels, "version"])
    info.add_metric([*values, reply.version], 1.0)
    out.append(info)
    if reply.replication is not None:
        rep = reply.replication
        gauge("raft_term", "the replica's current Raft term", rep.term)
        gauge("raft_is_leader", "1 when this replica leads its group", 1.0 if rep.role == "leader" else 0.0)
        gauge("raft_commit_index", "the highest log index known committed", rep.commit_index)
        gauge("raft_applied_index", "the highest log index applied to the state machine", rep.applied_index)
    for name, count in reply.counters.items():
        counter = CounterMetricFamily(PREFIX + name, reply.help.get(name, name), labels=labels)
        counter.add_metric(values, count)
        out.append(counter)
    for name, value in reply.gauges.items():
        gauge(name, reply.help.get(name, name), value)
    return out


def exposition(stats: NodeStats) -> tuple[CollectorRegistry, bytes]:
    """A registry of its own for ``stats``, and the page it renders now (for tests and one-off dumps)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(stats))
    return registry, generate_latest(registry)


class MetricsServer:
    """Serves ``GET /metrics`` for one node on ``listen`` (``tcp://HOST:PORT``; port 0: any free port)."""

    def __init__(self, stats: NodeStats, listen: str) -> None:
        try:
            address = parse_address(listen)
        except InvalidArgumentError as exc:
            raise ConfigError(f"[node] metrics = {listen!r}: {exc.message}", hint=exc.hint) from None
        if not isinstance(address, TcpAddress):
            raise ConfigError(f"[node] metrics = {listen!r}: give tcp://HOST:PORT (e.g. tcp://127.0.0.1:9101)")
        self.address = address
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(stats))
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> str:
        """Listen; returns the page's URL (``http://HOST:PORT/metrics``)."""
        app = web.Application(handler_args={"max_line_size": MAX_REQUEST_BYTES, "max_field_size": MAX_REQUEST_BYTES})
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.address.host, self.address.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"[node] metrics: cannot listen on {self.address}: {exc.strerror}") from None
        self._runner = runner
        port = runner.addresses[0][1]
        self.url = f"http://{self.address.host}:{port}/metrics"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
