"""The ``coord`` node role (``feitian node run coord``), and service registration for other roles.

A coord node is one replica of Nuwa: it uses the lanes ``coord.watch`` (long polls) and ``coord.session``
(heartbeats) when configured; ``feitian cluster up`` gives it both (docs/config.md lists the ``[role]`` keys).

:class:`ServiceRegistration` is what a serving role uses to appear under ``/services/<name>/<node>`` so that
``nuwa://<cluster>/<name>`` resolves to it: it waits until the node's server listens, then keeps the
registration alive under the node's own session (and removes it when the node stops).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from feitian.coord.client.client import CoordClient
from feitian.coord.client.recipes.naming import Registration, register
from feitian.errors import ConfigError
from feitian.replica import ReplicaOptions, add_replica_stats
from feitian.rpc import Metric

if TYPE_CHECKING:
    from feitian.coord.server.rest import RestLimits  # imported when used: aiohttp only for replicas serving REST

__all__ = ["CoordOptions", "CoordRole", "ServiceRegistration"]

STOP_TIMEOUT_S = 2.0  # how long a stopping node tries to remove its registration


class CoordOptions(ReplicaOptions, frozen=True, forbid_unknown_fields=True):
    limits: dict[str, int] = msgspec.field(
        default_factory=dict
    )  # CoordLimits fields to override (every replica must use the same)
    rest: str = ""  # serve the REST API (feitian.coord.server.rest) here, e.g. "tcp://127.0.0.1:0"; "" = off
    rest_peers: dict[str, str] = msgspec.field(
        default_factory=dict
    )  # replica id -> REST base URL, so followers redirect writes to the leader
    rest_limits: dict[str, float] = msgspec.field(default_factory=dict)  # RestLimits fields to override


COORD_METRICS = (
    Metric("coord_revision", "gauge", "the revision of the coordination tree this replica has applied"),
    Metric("coord_nodes", "gauge", "nodes in the coordination tree"),
    Metric("coord_sessions", "gauge", "open client sessions"),
    Metric("coord_history_events", "gauge", "change events kept for watches to resume from"),
)


def coord_figures(sm: Any) -> Callable[[], dict[str, float]]:
    """The figures of a coord replica's state machine (``CoordStateMachine``), as its status call reads them."""
    return lambda: {
        "coord_revision": sm.revision,
        "coord_nodes": len(sm.tree.nodes),
        "coord_sessions": len(sm.sessions),
        "coord_history_events": len(sm.history),
    }


class CoordRole:
    options_type: ClassVar[type[Any]] = CoordOptions

    def __init__(self) -> None:
        self._replica: Any = None
        self._rest: Any = None

    async def start(self, node: Any, options: Any) -> dict[str, str]:
        from feitian.coord.core import CoordLimits
        from feitian.coord.server.service import CoordReplica

        assert isinstance(options, CoordOptions)
        config = options.replica_config(role="coord", data_dir=node.data_dir, cluster=node.config.node.cluster)
        try:
            limits = CoordLimits(**options.limits).validate()
        except TypeError as exc:
            raise ConfigError("[role] limits: unknown key", problems=[str(exc)]) from None
        # Replicas talk to each other as this node (mutual TLS in a secured cluster), like any other caller.
        self._replica = CoordReplica(config, node.client, limits=limits)
        self._replica.register(node.server)
        await self._replica.start()
        add_replica_stats(node.stats, self._replica.replica)
        node.stats.add_source(COORD_METRICS, coord_figures(self._replica.sm))
        extra = {"replica_id": str(options.id)}
        if options.rest:
            from feitian.coord.server.rest import RestApi

            rest_peers = {int(k): v for k, v in options.rest_peers.items()}
            self._rest = RestApi(
                self._replica.service,
                security=node.security,
                node_name=node.name,
                rest_peers=rest_peers,
                limits=rest_limits(options.rest_limits),
            )
            extra["rest"] = await self._rest.start(options.rest)
        return extra

    async def stop(self) -> None:
        if self._rest is not None:
            await self._rest.stop()
        if self._replica is not None:
            await self._replica.stop()


class ServiceRegistration:
    """Registers a node as a server of ``service`` in Nuwa (see the module docstring)."""

    def __init__(self, node: Any, coord: list[str], service: str) -> None:
        self.node = node
        self.client = CoordClient(node.client, coord, timeout_s=10.0, attempt_timeout_s=1.0)
        self.service = service
        self.registration: Registration | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        # The node starts serving after its role has started; the server offers no event to wait on.
        while not self.node.server.addresses:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        address = self.node.server.addresses[0]
        self.registration = await register(self.client, self.service, self.node.name, address)

    async def stop(self) -> None:
        """Deregister (bounded: the coord replicas may be stopping too; the session expires anyway)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                if self.registration is not None:
                    await self.registration.close()
                await self.client.close()


def rest_limits(overrides: dict[str, float]) -> RestLimits:
    """RestLimits with the node config's ``rest_limits`` overrides (ConfigError naming an unknown key)."""
    from feitian.coord.server.rest import RestLimits

    try:
        return msgspec.convert(overrides, RestLimits, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"[role] rest_limits: {exc}") from None
