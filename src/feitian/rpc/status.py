"""The uniform status of a node: ``node.Stats``, answered by every node process whatever its role.

Every role reports the same shape (:class:`StatsReply`): who the node is (name, role, cluster, version, pid),
how long it has run, whether it is healthy, its place in a replicated group where it has one
(:class:`Replication`: role, term, leader, commit and applied index), and named *counters* (counts since the
process started, never decreasing) and *gauges* (a value now). The node's ``/metrics`` page
(feitian.rpc.metrics) is built from the same reply, so a figure has one name and one source::

    stats = NodeStats("coord-1", "coord", cluster="local")
    stats.add_source(REPLICA_METRICS, read_replica_figures)     # each role adds its sources at start
    stats.set_replication(read_replication)
    add_stats_handler(server, stats)                            # serve node.Stats
    reply = stats.reply()                                       # what node.Stats answers

A metric name is ``snake_case`` (``[a-z][a-z0-9_]*``), unique in a node, with its unit last
(``chunk_used_bytes``); ``/metrics`` exposes it as ``feitian_<name>`` (a counter as ``feitian_<name>_total``).
Sources are read when a reply is built, on the event-loop thread, so a read must be cheap and never wait.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import msgspec

from feitian import __version__
from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import InternalError, InvalidArgumentError
from feitian.rpc.context import CallContext
from feitian.rpc.core.messages import Request
from feitian.rpc.server import SYSTEM_LANE, Server

__all__ = [
    "NAME_PATTERN",
    "Metric",
    "NodeStats",
    "Replication",
    "Stats",
    "StatsReply",
    "add_stats_handler",
    "rpc_source",
]

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
MAX_NAME_CHARS = 80  # bound on a metric name (the ``feitian_`` prefix and ``_total`` come on top)

Kind = Literal["counter", "gauge"]


class Replication(msgspec.Struct, frozen=True, kw_only=True):
    """A replica's place in its replicated group (Raft)."""

    role: str  # "leader", "follower", "candidate", "pre_candidate"
    term: int
    leader_id: int  # 0: no leader known
    leader: str  # the leader's address ("" when unknown)
    commit_index: int
    applied_index: int


class StatsReply(msgspec.Struct, frozen=True, kw_only=True):
    """What ``node.Stats`` answers: the same shape for every role."""

    node: str  # the node's name ("coord-1")
    role: str  # its role ("coord", "dfs-master", "chunkserver", "authority", ...)
    cluster: str
    version: str  # feitian's version
    pid: int
    status: str  # "ok" or "degraded", as kuafu.Health says
    started_at_ns: int  # wall clock, nanoseconds since the epoch
    uptime_s: float
    replication: Replication | None = None  # None: the role is not replicated
    counters: dict[str, int] = {}
    gauges: dict[str, float] = {}
    help: dict[str, str] = {}  # metric name -> what it counts (for /metrics and for humans)


class Stats(Request[StatsReply], frozen=True, tag="node.Stats"):
    """The node's uniform status (see the module docstring). Answered in the server's system lane, like
    ``kuafu.Health``, so an overloaded node still answers; any authenticated caller may ask."""

    idempotent: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Metric:
    """A named figure a source reports: its kind, and what it counts (one line, for HELP)."""

    name: str
    kind: Kind
    help: str


@dataclass(frozen=True, slots=True)
class _Source:
    metrics: tuple[Metric, ...]
    read: Callable[[], Mapping[str, float]]


class NodeStats:
    """The one place a node's figures are gathered (see the module docstring). ``health`` says "ok" or
    "degraded" (default: always "ok"); ``clock`` gives uptime and the start time."""

    def __init__(
        self,
        node: str,
        role: str,
        *,
        cluster: str = "",
        health: Callable[[], str] | None = None,
        clock: Clock | None = None,
        version: str = __version__,
    ) -> None:
        self.node = node
        self.role = role
        self.cluster = cluster
        self.version = version
        self.clock = clock or MonotonicClock()
        self._health = health
        self._started_ns = self.clock.monotonic_ns()
        self.started_at_ns = self.clock.wall_ns()
        self._sources: list[_Source] = []
        self._metrics: dict[str, Metric] = {}
        self._replication: Callable[[], Replication | None] | None = None

    @property
    def metrics(self) -> list[Metric]:
        """Every metric added, in the order added."""
        return list(self._metrics.values())

    def add_source(self, metrics: Sequence[Metric], read: Callable[[], Mapping[str, float]]) -> None:
        """Report ``metrics``; ``read()`` returns their values by name (cheap, never waiting). A name that is not
        snake_case, too long, or already added raises InvalidArgumentError."""
        problems = []
        for metric in metrics:
            if not NAME_PATTERN.fullmatch(metric.name) or len(metric.name) > MAX_NAME_CHARS:
                problems.append(f"{metric.name!r} is not a metric name ([a-z][a-z0-9_]*, {MAX_NAME_CHARS} at most)")
            elif metric.name in self._metrics or sum(m.name == metric.name for m in metrics) > 1:
                problems.append(f"{metric.name!r} is added twice")
        if problems:
            raise InvalidArgumentError(f"stats of node {self.node}: " + "; ".join(problems))
        for metric in metrics:
            self._metrics[metric.name] = metric
        self._sources.append(_Source(tuple(metrics), read))

    def set_replication(self, read: Callable[[], Replication | None]) -> None:
        """The node is a replica: ``read()`` says its place in the group (None while it cannot tell)."""
        self._replication = read

    def uptime_s(self) -> float:
        return round((self.clock.monotonic_ns() - self._started_ns) / 1e9, 3)

    def reply(self) -> StatsReply:
        """Read every source now. A source that leaves out one of its metrics is a bug (InternalError)."""
        counters: dict[str, int] = {}
        gauges: dict[str, float] = {}
        for source in self._sources:
            values = source.read()
            for metric in source.metrics:
                value = values.get(metric.name)
                if value is None:
                    raise InternalError(f"stats of node {self.node}: the source of {metric.name!r} left it out")
                if metric.kind == "counter":
                    counters[metric.name] = int(value)
                else:
                    gauges[metric.name] = float(value)
        return StatsReply(
            node=self.node,
            role=self.role,
            cluster=self.cluster,
            version=self.version,
            pid=os.getpid(),
            status="ok" if self._health is None else self._health(),
            started_at_ns=self.started_at_ns,
            uptime_s=self.uptime_s(),
            replication=None if self._replication is None else self._replication(),
            counters=counters,
            gauges=gauges,
            help={m.name: m.help for m in self._metrics.values()},
        )


def add_stats_handler(server: Server, stats: NodeStats) -> None:
    """Serve ``node.Stats`` on ``server`` from ``stats`` (system lane; authentication only)."""

    async def on_stats(ctx: CallContext, req: Stats) -> StatsReply:
        return stats.reply()

    server.add_handler(Stats, on_stats, lane=SYSTEM_LANE)


RPC_METRICS = (
    Metric("rpc_requests_completed", "counter", "requests this node's server answered (every lane but the system's)"),
    Metric("rpc_requests_rejected", "counter", "requests refused because a lane's queue was full (overload)"),
    Metric("rpc_requests_queued", "gauge", "requests waiting in a lane's queue now"),
    Metric("rpc_requests_active", "gauge", "requests being handled now"),
    Metric("rpc_connections", "gauge", "connections open now"),
)


def rpc_source(stats: NodeStats, server: Server) -> None:
    """Add the figures of the node's Kuafu server: requests by lane (summed, the system lane left out: asking
    for stats does not count as load) and open connections."""

    def read() -> dict[str, float]:
        lanes = [lane for name, lane in server.lane_stats().items() if name != SYSTEM_LANE]
        return {
            "rpc_requests_completed": sum(lane["completed"] for lane in lanes),
            "rpc_requests_rejected": sum(lane["rejected"] for lane in lanes),
            "rpc_requests_queued": sum(lane["queued"] for lane in lanes),
            "rpc_requests_active": sum(lane["active"] for lane in lanes),
            "rpc_connections": server.connection_count,
        }

    stats.add_source(RPC_METRICS, read)
