"""Real Nuwa replica processes for tests and benchmarks.

``CoordReplicas(directory, n)`` is a local cluster (``feitian.deploy.cluster``) of n ``coord`` replicas on fixed
127.0.0.1 ports, without security unless ``secure=True`` (then with an authority and the admin identity), plus
optional extra nodes. Replicas can be killed, frozen, resumed and restarted on the same address and data;
:meth:`stop` stops every process it started, by pid. :meth:`client` makes a :class:`CoordClient` for it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from feitian.coord import CoordClient, CoordStatus, StatusRequest
from feitian.deploy import NodeSpec, coord_specs
from feitian.errors import FeitianError
from feitian.rpc import Client, ClientConfig
from feitian.testing.replicas import ReplicaProcesses

__all__ = ["CoordReplicas"]


class CoordReplicas(ReplicaProcesses):
    role = "coord"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        n: int = 3,
        *,
        tick_ms: int = 50,
        election_ticks: int = 10,
        secure: bool = False,
        extra: Sequence[NodeSpec] = (),
        **role_options: Any,
    ) -> None:
        specs = coord_specs(n, {"tick_ms": tick_ms, "election_ticks": election_ticks, **role_options})
        super().__init__(directory, specs, secure=secure, extra=extra)

    def log(self, i: int) -> str:
        with open(self.log_path(i), errors="replace") as f:
            return f.read()

    async def rpc(self, name: str = "test", **config: Any) -> Client:
        """A Kuafu client for this cluster (the admin identity when secure)."""
        return await self.cluster.client(ClientConfig(name=name, connect_timeout_s=0.5, **config))

    def client(self, rpc: Client, **options: Any) -> CoordClient:
        return CoordClient(rpc, self.address_list, **options)

    async def statuses(self, rpc: Client, timeout_s: float = 1.0) -> dict[int, CoordStatus]:
        out = {}
        for i, address in self.addresses.items():
            try:
                out[i] = await rpc.call(address, StatusRequest(), timeout=timeout_s)
            except FeitianError:
                continue
        return out

    async def leader(self, rpc: Client) -> int | None:
        """The replica that leads and tracks sessions (the highest term wins), or None."""
        found = [(s.replica.term, i) for i, s in (await self.statuses(rpc)).items() if s.tracking]
        return max(found)[1] if found else None
