"""Real Nuwa replica processes for tests and benchmarks.

``CoordReplicas(directory, n)`` is a local cluster (``feitian.deploy.cluster``) of n ``coord`` replicas on fixed
127.0.0.1 ports, without security unless ``secure=True`` (then with an authority and the admin identity), plus
optional extra nodes. Replicas can be killed, frozen, resumed and restarted on the same address and data;
:meth:`stop` stops every process it started, by pid. :meth:`client` makes a :class:`CoordClient` for it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import Any

from feitian.coord import CoordClient
from feitian.coord.messages import CoordStatus, StatusRequest
from feitian.deploy.cluster import LocalCluster, NodeSpec, coord_specs
from feitian.errors import FeitianError
from feitian.rpc import Client, ClientConfig
from feitian.runtime.procs import ProcessRef, signal_process, stop_processes

__all__ = ["CoordReplicas"]


class CoordReplicas:
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
        self.cluster = LocalCluster(str(directory))
        self.secure = secure
        self.specs = coord_specs(n, {"tick_ms": tick_ms, "election_ticks": election_ticks, **role_options})
        self.extra = list(extra)
        self.ids = list(range(1, n + 1))
        self.addresses = {i: spec.listen[0] for i, spec in zip(self.ids, self.specs, strict=True)}
        self._refs: list[ProcessRef] = []

    @property
    def address_list(self) -> list[str]:
        return list(self.addresses.values())

    def start_all(self) -> None:
        state = self.cluster.up([*self.specs, *self.extra], secure=self.secure)
        self._refs.extend(p.ref for p in state.processes)

    def name(self, i: int) -> str:
        return f"coord-{i}"

    def ref(self, i: int) -> ProcessRef:
        return self.cluster.load().find(self.name(i)).ref

    def log(self, i: int) -> str:
        with open(self.cluster.load().find(self.name(i)).log, errors="replace") as f:
            return f.read()

    def start(self, i: int) -> ProcessRef:
        """Start replica ``i`` again (after :meth:`kill`), on the same address and data."""
        ref = self.cluster.restart(self.name(i)).ref
        self._refs.append(ref)
        return ref

    def kill(self, i: int) -> None:
        ref = self.ref(i)
        signal_process(ref, signal.SIGKILL)
        stop_processes([ref], grace_s=5)

    def freeze(self, i: int) -> None:
        signal_process(self.ref(i), signal.SIGSTOP)

    def resume(self, i: int) -> None:
        signal_process(self.ref(i), signal.SIGCONT)

    def track(self, ref: ProcessRef) -> None:
        """Stop this process too in :meth:`stop` (e.g. a client process a test started)."""
        self._refs.append(ref)

    def stop(self) -> list[ProcessRef]:
        """Stop every process ever started here; returns any that would not stop."""
        for ref in self._refs:
            signal_process(ref, signal.SIGCONT)
        return stop_processes(self._refs, grace_s=10)

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
