"""The node roles of Fuxi: ``fuxi-master`` and ``tubo`` (registered in ``feitian.deploy.roles``; ``[role]`` keys in
docs/config.md).

``node`` is the deploy layer's NodeContext; this module only reads its attributes, so the services never import
the deploy layer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from feitian.rpc import Metric
from feitian.sched.master.service import FuxiMaster, FuxiMasterOptions
from feitian.sched.tubo.agent import Tubo, TuboOptions

__all__ = ["FuxiMasterRole", "TuboRole"]

MASTER_METRICS = (
    Metric("fuxi_leader", "gauge", "1 while this FuxiMaster leads"),
    Metric("fuxi_machines", "gauge", "machines (Tubos) the leader knows"),
    Metric("fuxi_apps", "gauge", "applications running or waiting"),
    Metric("fuxi_grants", "gauge", "grants held"),
)

TUBO_METRICS = (
    Metric("tubo_processes", "gauge", "processes this Tubo runs"),
    Metric("tubo_heartbeats", "counter", "heartbeats FuxiMaster answered"),
)


class FuxiMasterRole:
    options_type: ClassVar[type[Any]] = FuxiMasterOptions

    def __init__(self) -> None:
        self._master: FuxiMaster | None = None

    async def start(self, node: Any, options: Any) -> dict[str, str]:
        assert isinstance(options, FuxiMasterOptions)
        security = node.security  # applications' principals are registered with this node's authority
        master = self._master = FuxiMaster(
            node.client,
            options,
            name=node.name,
            authority=security.section.authority if security is not None else "",
            ca_pem=security.identity.ca_pem if security is not None else b"",
        )
        master.register(node.server)
        server = node.server
        master.start(lambda: server.addresses[0] if server.addresses else "")

        def figures() -> dict[str, float]:
            lead = master.lead
            if lead is None:
                return {"fuxi_leader": 0, "fuxi_machines": 0, "fuxi_apps": 0, "fuxi_grants": 0}
            state = lead.state
            return {
                "fuxi_leader": 1,
                "fuxi_machines": len(state.machines),
                "fuxi_apps": len(state.apps),
                "fuxi_grants": len(state.alloc.held),
            }

        node.stats.add_source(MASTER_METRICS, figures)
        return {}

    async def stop(self) -> None:
        if self._master is not None:
            await self._master.stop()


class TuboRole:
    options_type: ClassVar[type[Any]] = TuboOptions

    def __init__(self) -> None:
        self._tubo: Tubo | None = None

    async def start(self, node: Any, options: Any) -> dict[str, str]:
        assert isinstance(options, TuboOptions)
        tubo = self._tubo = Tubo(
            node.client, options, node_name=node.name, data_dir=node.data_dir or ".", run_dir=node.run_dir or "."
        )
        tubo.register(node.server)
        server = node.server
        socket = await tubo.start(lambda: server.addresses[0] if server.addresses else "")

        def figures() -> dict[str, float]:
            running = sum(1 for s in tubo.supervisor.list() if s.state.value == "running")
            return {"tubo_processes": running, "tubo_heartbeats": tubo.heartbeats}

        node.stats.add_source(TUBO_METRICS, figures)
        return {"socket": socket, "machine": tubo.machine, "isolation": tubo.isolation}

    async def stop(self) -> None:
        if self._tubo is not None:
            await self._tubo.stop()
