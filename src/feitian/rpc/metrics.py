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
loop (the figures are read where they live, without locks) by a small HTTP responder with explicit bounds
(:class:`MetricsServer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feitian.errors import ConfigError, InvalidArgumentError
from feitian.rpc.core.address import TcpAddress, parse_address
from feitian.rpc.status import NodeStats, StatsReply

__all__ = ["MAX_CONNECTIONS", "MAX_REQUEST_BYTES", "REQUEST_TIMEOUT_S", "MetricsServer", "NodeCollector", "exposition"]

PREFIX = "feitian_"
# The classic text format, which every Prometheus reads; our names need none of the newer format's escaping, so the
# page is the same whichever prometheus_client renders it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 8192  # a request's head: request line and headers
REQUEST_TIMEOUT_S = 10.0  # to send that head
MAX_CONNECTIONS = 64  # open at once
LISTEN_HINT = 'give tcp://HOST:PORT, e.g. metrics = "tcp://127.0.0.1:9101" (port 0: any free port; "": off)'


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
    """Serves ``GET /metrics`` (and ``HEAD``) for one node on ``listen`` (``tcp://HOST:PORT``; port 0: any free
    port), over HTTP/1.0-style connections: one request each, answered with ``Connection: close``.

    Bounds: a request head (request line and headers) past ``MAX_REQUEST_BYTES`` is answered 431, one not
    complete within ``REQUEST_TIMEOUT_S`` is dropped, and past ``MAX_CONNECTIONS`` open at once a new connection
    is closed unanswered. Other paths answer 404, other methods 405, a request line that is not HTTP 400."""

    def __init__(self, stats: NodeStats, listen: str) -> None:
        try:
            address = parse_address(listen)
        except InvalidArgumentError as exc:
            raise ConfigError(f"[node] metrics = {listen!r}: {exc.message}", hint=LISTEN_HINT) from None
        if not isinstance(address, TcpAddress):
            raise ConfigError(f"[node] metrics = {listen!r}: not a TCP address", hint=LISTEN_HINT)
        self.address = address
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(stats))
        self._server: asyncio.base_events.Server | None = None
        self._open = 0
        self.url = ""

    async def start(self) -> str:
        """Listen; returns the page's URL (``http://HOST:PORT/metrics``)."""
        try:
            self._server = await asyncio.start_server(
                self._serve, self.address.host, self.address.port, limit=MAX_REQUEST_BYTES, reuse_address=True
            )
        except OSError as exc:
            raise ConfigError(
                f"[node] metrics: cannot listen on {self.address}: {exc.strerror}",
                hint="another program holds that port: choose another, or 0 for any free port",
            ) from None
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{self.address.host}:{port}/metrics"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > MAX_CONNECTIONS:
                return
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                writer.write(_response(431, b"request head too large\n"))
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            writer.write(self.answer(head.split(b"\r\n", 1)[0]))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._open -= 1
            writer.close()

    def answer(self, request_line: bytes) -> bytes:
        """The whole response to ``request_line`` (``GET /metrics HTTP/1.1``)."""
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _response(400, b"bad request line\n")
        method, path = parts[0], parts[1].split(b"?", 1)[0]
        if path != b"/metrics":
            return _response(404, b"not found: the page is /metrics\n")
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"method not allowed\n", [("Allow", "GET, HEAD")])
        body = generate_latest(self.registry)
        return _response(200, body, [("Content-Type", CONTENT_TYPE)], head_only=method == b"HEAD")


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


def _response(
    status: int, body: bytes, headers: list[tuple[str, str]] | None = None, *, head_only: bool = False
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Length: {len(body)}", "Connection: close"]
    lines.extend(f"{name}: {value}" for name, value in headers or [("Content-Type", "text/plain; charset=utf-8")])
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body
