"""The node process: ``feitian node run <role> --config FILE``.

Every feitian service runs as a node process of one *role*. A node reads its TOML config, starts a Kuafu server
(which answers ``kuafu.Health``), lets its role register handlers and start its work, then writes an *endpoint
file* ``<run_dir>/<name>.json`` (atomically) naming its pid and addresses — the signal to ``feitian cluster up``
that it is serving. SIGTERM or SIGINT stops it gracefully. Config keys are documented in docs/config.md.

Config file::

    [node]
    name = "echo-1"
    role = "echo"
    listen = ["tcp://127.0.0.1:0"]   # port 0: any free port; the endpoint file has the real one
    run_dir = "/tmp/c/run"
    data_dir = "/tmp/c/data/echo-1"

    [rpc]            # Kuafu server settings (ServerConfig): lanes, limits, ...
    [role]           # the role's own options
    [security]       # identity, CA, capabilities, authority address (security/authority/node.py)

With ``[security]`` the node serves mutual TLS only and checks every call (ZK-4); before it publishes its
endpoint file it has fetched the revocation list from the authority, and it keeps it fresh and its capabilities
renewed while it runs. ``NodeContext.client`` calls other services as this node.

Every node answers ``node.Stats`` (feitian.rpc.status): the same shape for every role — name, role, version,
uptime, its place in a replicated group where it has one, and named counters and gauges that the role adds to
``NodeContext.stats``. With ``[node] metrics = "tcp://HOST:PORT"`` it also serves those figures at
``http://HOST:PORT/metrics`` in the Prometheus text format (feitian.rpc.metrics) and publishes that URL as
``extra["metrics"]`` in its endpoint file.

Every node's ``kuafu.Health`` reply carries in its ``detail`` the longest event-loop stall since it started
(``loop_lag_max_ms``, ``loop_lag_max_ago_s``, ``loop_stalls``: ``runtime/looplag.py``) and its open
connections (``connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any, ClassVar, Protocol

import msgspec

from feitian import __version__
from feitian.errors import ConfigError, InvalidArgumentError
from feitian.rpc import Client, ClientConfig, Metric, NodeStats, Server, ServerConfig, add_stats_handler, rpc_source
from feitian.runtime.files import atomic_write
from feitian.runtime.looplag import LoopLag
from feitian.security.authority import NodeSecurity, SecuritySection

log = logging.getLogger(__name__)


class NodeSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    role: str
    cluster: str = "local"
    listen: list[str] = msgspec.field(default_factory=lambda: ["tcp://127.0.0.1:0"])
    run_dir: str = ""
    data_dir: str = ""
    log_level: str = "info"
    metrics: str = ""  # serve /metrics (Prometheus text) here, e.g. "tcp://127.0.0.1:9101"; "" = off


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    node: NodeSection
    rpc: dict[str, Any] = {}
    role: dict[str, Any] = {}
    security: SecuritySection | None = None


class EndpointFile(msgspec.Struct, frozen=True):
    """What a serving node publishes in ``<run_dir>/<name>.json``."""

    name: str
    role: str
    pid: int
    addresses: list[str]
    version: str
    started_at: float
    extra: dict[str, str] = {}


class NodeContext:
    """What a role gets: its config, the node's Kuafu server, its directories, a client that calls other
    services as this node, the node's security (None when it runs without) and its :class:`NodeStats`, where
    the role adds its figures (``node.Stats`` and ``/metrics`` show them)."""

    def __init__(
        self,
        config: NodeConfig,
        server: Server,
        client: Client | None = None,
        security: NodeSecurity | None = None,
        stats: NodeStats | None = None,
    ) -> None:
        self.config = config
        self.name = config.node.name
        self.server = server
        self.client = client or Client(ClientConfig(name=config.node.name))
        self.security = security
        self.data_dir = config.node.data_dir
        self.run_dir = config.node.run_dir
        self.stats = stats or NodeStats(config.node.name, config.node.role, cluster=config.node.cluster)


class Role(Protocol):
    options_type: ClassVar[type[Any]]

    async def start(self, node: NodeContext, options: Any) -> dict[str, str]:
        """Register handlers and start work; return extra endpoints to publish (e.g. a socket path)."""
        ...

    async def stop(self) -> None: ...


LOOP_METRICS = (
    Metric("loop_stalls", "counter", "event-loop wake-ups at least 100 ms late (runtime/looplag.py)"),
    Metric("loop_lag_max_ms", "gauge", "the longest event-loop stall since the node started serving"),
)


def loop_lag_source(stats: NodeStats, lag: LoopLag) -> None:
    stats.add_source(LOOP_METRICS, lambda: {"loop_stalls": lag.stalls, "loop_lag_max_ms": lag.max_ms})


def load_config(path: str) -> NodeConfig:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read node config {path}: {exc.strerror}") from None
    try:
        return msgspec.toml.decode(raw, type=NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid node config {path}", problems=[str(exc)]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"node config {path} is not valid TOML", problems=[str(exc)]) from None


def decode_section(section: dict[str, Any], type_: type[Any], where: str) -> Any:
    try:
        return msgspec.convert(section, type_)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid [{where}] section", problems=[str(exc)]) from None


def write_endpoint_file(run_dir: str, info: EndpointFile) -> str:
    """Atomically publish ``info`` (temp file, fsync, rename, fsync of the directory)."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, f"{info.name}.json")
    atomic_write(path, msgspec.json.encode(info))
    return path


async def run_node(role_name: str, config: NodeConfig, role: Role) -> None:
    """Serve until SIGTERM/SIGINT."""
    node = config.node
    if node.role != role_name:
        raise InvalidArgumentError(f"config is for role {node.role!r}, not {role_name!r}")
    server_cfg = decode_section({**config.rpc, "name": node.name, "role": node.role}, ServerConfig, "rpc")
    security = None if config.security is None else NodeSecurity(config.security, node.name)
    lag = LoopLag()

    def health() -> tuple[str, dict[str, str]]:
        return "ok", {**lag.detail(), "connections": str(server.connection_count)}

    if security is None:
        log.warning("node %s runs WITHOUT security: every caller is trusted (no [security] section)", node.name)
        server = Server(server_cfg, health=health)
        client = Client(ClientConfig(name=node.name))
    else:
        server = Server(server_cfg, health=health, security=security.server_guard)
        client = security.client(node.name)
    stats = NodeStats(node.name, node.role, cluster=node.cluster, health=lambda: health()[0])
    rpc_source(stats, server)
    loop_lag_source(stats, lag)
    add_stats_handler(server, stats)
    ctx = NodeContext(config, server, client, security, stats)
    options = decode_section(config.role, role.options_type, "role")
    if node.data_dir:
        os.makedirs(node.data_dir, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lag.start()
    metrics, metrics_url = None, ""
    if node.metrics:  # listening before the role starts: a bad address or a taken port stops the node at once
        from feitian.rpc import MetricsServer  # prometheus_client: only in nodes that serve /metrics

        metrics = MetricsServer(stats, node.metrics)
        metrics_url = await metrics.start()
    extra = await role.start(ctx, options)
    if metrics is not None:
        extra = {**extra, "metrics": metrics_url}
    addresses = await server.start(node.listen)
    if security is not None:
        await security.make_agent(client).start()
        log.info("node %s authenticated as %s", node.name, security.principal.describe())
    endpoint_path = ""
    if node.run_dir:
        info = EndpointFile(node.name, node.role, os.getpid(), addresses, __version__, time.time(), extra)
        endpoint_path = write_endpoint_file(node.run_dir, info)
    lag.reset()  # from now on a stall is one of the service, not of starting (loading a snapshot, say)
    log.info("node %s (%s) serving on %s %s", node.name, node.role, " ".join(addresses), extra or "")
    try:
        await stop.wait()
    finally:
        log.info("node %s stopping", node.name)
        await role.stop()
        if metrics is not None:
            await metrics.stop()
        if security is not None and security.agent is not None:
            await security.agent.stop()
        await server.stop()
        await client.close()
        await lag.stop()
        if endpoint_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(endpoint_path)
        log.info("node %s stopped", node.name)
