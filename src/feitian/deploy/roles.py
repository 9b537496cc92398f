"""The roles a node process can run, looked up by name. Each later component adds its roles here."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import msgspec

from feitian.coord import CoordRole, ServiceRegistration
from feitian.deploy.echo_methods import MAP_RULE, TEXT_RULE, add_echo_methods
from feitian.deploy.node import NodeContext, Role
from feitian.dfs import ChunkServerRole, DfsMasterRole
from feitian.errors import InvalidArgumentError
from feitian.replica import ReplicaOptions, add_replica_stats
from feitian.rpc import CallContext, Metric, Proxy, ProxyConfig
from feitian.sched import FuxiMasterRole, TuboRole
from feitian.security.authority import AuthorityRole


class EchoOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    coord: list[str] = []  # Nuwa replicas: register as /services/<service>/<node name> (nuwa://cluster/service)
    service: str = "echo"


class EchoRole:
    """A diagnostics server: ``kuafu.Echo`` (built into every server) plus the seed's plain message kinds,
    ``echo.text`` (string -> same string) and ``echo.map`` (map -> same map with ``served_by`` added). Used by
    ``feitian demo``, ``feitian bench rpc`` and the tests."""

    options_type: ClassVar[type[Any]] = EchoOptions

    def __init__(self) -> None:
        self._registration: ServiceRegistration | None = None

    async def start(self, node: NodeContext, options: Any) -> dict[str, str]:
        assert isinstance(options, EchoOptions)
        name = node.name

        async def echo_text(ctx: CallContext, text: str) -> str:
            return text

        async def echo_map(ctx: CallContext, mapping: dict[str, str]) -> dict[str, str]:
            return {**mapping, "served_by": name}

        node.server.add_text_handler("echo.text", echo_text, requires=TEXT_RULE)
        node.server.add_map_handler("echo.map", echo_map, requires=MAP_RULE)
        add_echo_methods(node)  # echo.whoami, echo.bytes, echo.relay
        if options.coord:
            self._registration = ServiceRegistration(node, options.coord, options.service)
            self._registration.start()
        return {}

    async def stop(self) -> None:
        if self._registration is not None:
            await self._registration.stop()


class ProxyOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    socket_path: str = ""  # default: <run_dir>/<name>.sock
    max_clients: int = 10_000
    max_inflight_bytes_per_client: int = 64 << 20


PROXY_METRICS = (
    Metric("proxy_clients", "gauge", "local programs connected to the proxy's socket"),
    Metric("proxy_upstreams", "gauge", "servers the proxy holds a connection to"),
)


class ProxyRole:
    """The per-machine Kuafu proxy (KUAFU-4); publishes its socket as ``extra["socket"]``."""

    options_type: ClassVar[type[Any]] = ProxyOptions

    def __init__(self) -> None:
        self._proxy: Proxy | None = None

    async def start(self, node: NodeContext, options: Any) -> dict[str, str]:
        assert isinstance(options, ProxyOptions)
        path = options.socket_path or os.path.join(node.run_dir or ".", f"{node.name}.sock")
        self._proxy = Proxy(
            ProxyConfig(
                socket_path=path,
                name=node.name,
                max_clients=options.max_clients,
                max_inflight_bytes_per_client=options.max_inflight_bytes_per_client,
                secured=node.security is not None,
            )
        )
        await self._proxy.start()
        proxy = self._proxy
        node.stats.add_source(
            PROXY_METRICS, lambda: {"proxy_clients": proxy.client_count, "proxy_upstreams": proxy.upstream_count}
        )
        return {"socket": path}

    async def stop(self) -> None:
        if self._proxy is not None:
            await self._proxy.stop()


class KvOptions(ReplicaOptions, frozen=True, forbid_unknown_fields=True):
    pass


KV_METRICS = (Metric("kv_keys", "gauge", "keys in the replicated key-value store"),)


class KvRole:
    """A replica of the small replicated key-value store (feitian.examples.kv): the consensus layer's test and
    benchmark workload."""

    options_type: ClassVar[type[Any]] = KvOptions

    def __init__(self) -> None:
        self._replica: Any = None

    async def start(self, node: NodeContext, options: Any) -> dict[str, str]:
        from feitian.examples import KvService

        assert isinstance(options, KvOptions)
        config = options.replica_config(role="kv", data_dir=node.data_dir, cluster=node.config.node.cluster)
        # Replicas talk to each other as this node (mutual TLS in a secured cluster), like any other caller.
        self._replica = KvService(config, node.client)
        self._replica.register(node.server)
        node.server.add_service(self._replica)
        await self._replica.start()
        add_replica_stats(node.stats, self._replica.replica)
        state = self._replica.state
        node.stats.add_source(KV_METRICS, lambda: {"kv_keys": len(state.data)})
        return {"replica_id": str(options.id)}

    async def stop(self) -> None:
        if self._replica is not None:
            await self._replica.stop()


ROLES: dict[str, type[Any]] = {
    "authority": AuthorityRole,
    "chunkserver": ChunkServerRole,
    "coord": CoordRole,
    "dfs-master": DfsMasterRole,
    "kv": KvRole,
    "echo": EchoRole,
    "fuxi-master": FuxiMasterRole,
    "rpc-proxy": ProxyRole,
    "tubo": TuboRole,
}


def make_role(name: str) -> Role:
    klass = ROLES.get(name)
    if klass is None:
        raise InvalidArgumentError(f"unknown role {name!r}", hint=f"roles: {', '.join(sorted(ROLES))}")
    role: Role = klass()
    return role
