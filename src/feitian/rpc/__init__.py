"""Kuafu (夸父): feitian's message RPC. See docs/rpc.md."""

from feitian.rpc.client import Call, Client, Reply
from feitian.rpc.config import ClientConfig, LaneConfig, ServerConfig
from feitian.rpc.context import CallContext, PeerInfo
from feitian.rpc.core.address import NuwaAddress, TcpAddress, UnixAddress, parse_address
from feitian.rpc.core.frame import FrameLimits
from feitian.rpc.core.messages import Echo, Health, HealthReply, Request
from feitian.rpc.resolver import MemoryResolver, Resolver
from feitian.rpc.server import Server, handler
from feitian.rpc.status import Metric, NodeStats, Replication, Stats, StatsReply

__all__ = [
    "Call",
    "CallContext",
    "Client",
    "ClientConfig",
    "Echo",
    "FrameLimits",
    "Health",
    "HealthReply",
    "LaneConfig",
    "MemoryResolver",
    "Metric",
    "NodeStats",
    "NuwaAddress",
    "PeerInfo",
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
    "handler",
    "parse_address",
]
