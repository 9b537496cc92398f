"""The roles a node process can run, looked up by name. Each later component adds its roles here."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import msgspec

from feitian.deploy.node import NodeContext, Role
from feitian.errors import InvalidArgumentError
from feitian.rpc import CallContext
from feitian.rpc.proxy import Proxy, ProxyConfig


class EchoOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class EchoRole:
    """A diagnostics server: ``kuafu.Echo`` (built into every server) plus the seed's plain message kinds,
    ``echo.text`` (string -> same string) and ``echo.map`` (map -> same map with ``served_by`` added). Used by
    ``feitian demo``, ``feitian bench rpc`` and the tests."""

    options_type: ClassVar[type[Any]] = EchoOptions

    async def start(self, node: NodeContext, options: Any) -> dict[str, str]:
        name = node.name

        async def echo_text(ctx: CallContext, text: str) -> str:
            return text

        async def echo_map(ctx: CallContext, mapping: dict[str, str]) -> dict[str, str]:
            return {**mapping, "served_by": name}

        node.server.add_text_handler("echo.text", echo_text)
        node.server.add_map_handler("echo.map", echo_map)
        return {}

    async def stop(self) -> None:
        pass


class ProxyOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    socket_path: str = ""  # default: <run_dir>/<name>.sock
    max_clients: int = 10_000
    max_inflight_bytes_per_client: int = 64 << 20


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
            )
        )
        await self._proxy.start()
        return {"socket": path}

    async def stop(self) -> None:
        if self._proxy is not None:
            await self._proxy.stop()


ROLES: dict[str, type[Any]] = {
    "echo": EchoRole,
    "rpc-proxy": ProxyRole,
}


def make_role(name: str) -> Role:
    klass = ROLES.get(name)
    if klass is None:
        raise InvalidArgumentError(f"unknown role {name!r}", hint=f"roles: {', '.join(sorted(ROLES))}")
    role: Role = klass()
    return role
