"""Kuafu (夸父): feitian's message RPC. See docs/rpc.md."""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.rpc.client import Call, Client, Reply
from feitian.rpc.config import ClientConfig, LaneConfig, ServerConfig
from feitian.rpc.context import CallContext, PeerInfo
from feitian.rpc.core.address import NuwaAddress, TcpAddress, UnixAddress, parse_address
from feitian.rpc.core.frame import FrameLimits
from feitian.rpc.core.messages import Echo, Health, HealthReply, Request
from feitian.rpc.resolver import MemoryResolver, Resolver
from feitian.rpc.server import Server, handler
from feitian.rpc.status import Metric, NodeStats, Replication, Stats, StatsReply

if TYPE_CHECKING:
    from feitian.rpc.context import current_deadline
    from feitian.rpc.metrics import MetricsServer
    from feitian.rpc.proxy import Proxy, ProxyConfig
    from feitian.rpc.security import ClientTls, Credentials
    from feitian.rpc.status import add_stats_handler, rpc_source

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "ClientTls": "feitian.rpc.security",
    "Credentials": "feitian.rpc.security",
    "MetricsServer": "feitian.rpc.metrics",
    "Proxy": "feitian.rpc.proxy",
    "ProxyConfig": "feitian.rpc.proxy",
    "add_stats_handler": "feitian.rpc.status",
    "current_deadline": "feitian.rpc.context",
    "rpc_source": "feitian.rpc.status",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "Call",
    "CallContext",
    "Client",
    "ClientConfig",
    "ClientTls",
    "Credentials",
    "Echo",
    "FrameLimits",
    "Health",
    "HealthReply",
    "LaneConfig",
    "MemoryResolver",
    "Metric",
    "MetricsServer",
    "NodeStats",
    "NuwaAddress",
    "PeerInfo",
    "Proxy",
    "ProxyConfig",
    "Replication",
    "Reply",
    "Request",
    "Resolver",
    "Server",
    "ServerConfig",
    "Stats",
    "StatsReply",
    "TcpAddress",
    "UnixAddress",
    "add_stats_handler",
    "current_deadline",
    "handler",
    "parse_address",
    "rpc_source",
]
