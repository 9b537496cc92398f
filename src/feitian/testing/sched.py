"""Real Fuxi processes for tests and benchmarks: Nuwa replicas, FuxiMasters and Tubos on 127.0.0.1.

``SchedCluster(directory)`` is a local cluster (``feitian.deploy.cluster``) with test-friendly settings: Tubos
heartbeat every 0.2 s and each poses as a machine with the capacity given; a machine silent for 3 s is lost; a
new FuxiMaster leader recovers for 1 s. Processes can be killed and restarted; :meth:`stop` stops every process
it started (and every process the Tubos started), by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from feitian.deploy import ClusterState, LocalCluster, NodeSpec, coord_specs, dfs_specs, fuxi_specs
from feitian.errors import FeitianError
from feitian.rpc import Client, ClientConfig
from feitian.runtime.eventloop import run
from feitian.runtime.procs import ProcessRef, signal_process, stop_processes
from feitian.sched import MasterStatus, SchedClient, default_cgroup_prefix, stop_started
from feitian.testing.waiting import wait_for_condition

__all__ = ["SchedCluster"]

GiB = 1 << 30


class SchedCluster:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        machines: int = 2,
        masters: int = 2,
        coord: int = 3,
        racks: tuple[str, ...] = ("r1", "r2"),
        capacity: dict[str, int] | None = None,
        secure: bool = False,
        master_options: dict[str, Any] | None = None,
        tubo_options: dict[str, Any] | None = None,
        dfs_masters: int = 0,
        chunkservers: int = 0,
    ) -> None:
        self.cluster = LocalCluster(str(directory))
        self.secure = secure
        nuwa = coord_specs(coord)
        self.coord_addresses = [s.listen[0] for s in nuwa]
        master = {
            "tubo_interval_s": 0.2,
            "recovery_s": 5.0,
            "session_ttl_ms": 3000,
            "policy": {"heartbeat_timeout_ns": 3_000_000_000},
            **(master_options or {}),
        }
        tubo = {
            "heartbeat_s": 0.2,
            "capacity": capacity or {"cpu": 4000, "memory": 4 * GiB},
            "min_free_disk_bytes": 0,
            "disk_full_ratio": 1.0,
            **(tubo_options or {}),
        }
        pangu: list[NodeSpec] = []
        self.dfs_addresses: list[str] = []
        if dfs_masters:  # Pangu too: packages (records in Nuwa, blobs in Pangu) and data
            pangu = dfs_specs(
                dfs_masters,
                chunkservers,
                {"chunkserver_heartbeat_s": 0.3, "election_ticks": 10},
                {"heartbeat_interval_s": 0.3},
                racks,
            )
            self.dfs_addresses = [s.listen[0] for s in pangu if s.role == "dfs-master"]
            tubo = {"coord": self.coord_addresses, "dfs": self.dfs_addresses, **tubo}
        names = [(f"m{i + 1}", racks[i % len(racks)]) for i in range(machines)]
        self.specs: list[NodeSpec] = [*nuwa, *pangu, *fuxi_specs(masters, self.coord_addresses, names, master, tubo)]
        self.master_addresses = [s.listen[0] for s in self.specs if s.role == "fuxi-master"]
        self._refs: list[ProcessRef] = []

    def start(self, timeout_s: float = 60.0) -> ClusterState:
        """Start every process and wait until a FuxiMaster leads and knows every machine."""
        state = self.cluster.up(self.specs, timeout_s=timeout_s, secure=self.secure)
        self._refs.extend(p.ref for p in state.processes)
        run(self.wait_machines(len(self.names("tubo")), timeout_s))
        return state

    def names(self, role: str) -> list[str]:
        return [s.name for s in self.specs if s.role == role]

    def data_dir(self, name: str) -> Path:
        return Path(self.cluster.dir) / "data" / name

    async def rpc_client(self, name: str = "test-sched") -> Client:
        return await self.cluster.client(ClientConfig(name=name, connect_timeout_s=2.0))

    async def client(self) -> SchedClient:
        """A user's client (its Kuafu client is ``.router.rpc``: close it when done)."""
        return SchedClient(await self.rpc_client(), self.master_addresses, timeout_s=30.0)

    async def wait_machines(self, count: int, timeout_s: float = 60.0) -> None:
        sched = await self.client()
        try:

            async def ready() -> bool:
                try:
                    status = await sched.status()
                    return status.leader and not status.recovering and status.machines >= count
                except FeitianError:
                    return False

            await wait_for_condition(ready, timeout_s, f"a FuxiMaster leading {count} machines")
        finally:
            await sched.router.rpc.close()

    async def leader(self, rpc: Client) -> str:
        """The name of the FuxiMaster that leads now (AssertionError if none does)."""
        for spec in self.specs:
            if spec.role != "fuxi-master":
                continue
            try:
                status = await rpc.call(spec.listen[0], MasterStatus(local=True), timeout=2)
            except FeitianError:
                continue
            if status.leader:
                return spec.name
        raise AssertionError("no FuxiMaster leads")

    def ref(self, name: str) -> ProcessRef:
        return self.cluster.load().find(name).ref

    def kill(self, name: str) -> None:
        ref = self.ref(name)
        signal_process(ref, signal.SIGKILL)
        stop_processes([ref], grace_s=5)

    def restart(self, name: str) -> ProcessRef:
        ref = self.cluster.restart(name).ref
        self._refs.append(ref)
        return ref

    @classmethod
    @contextlib.contextmanager
    def running(cls, directory: str | os.PathLike[str], **options: Any) -> Iterator[SchedCluster]:
        """A started cluster (``options`` as the constructor's); afterwards every process it and its Tubos
        started is stopped by pid (an AssertionError if one would not stop)."""
        cluster = cls(directory, **options)
        try:
            cluster.start()
            yield cluster
        finally:
            left = cluster.stop()
            assert left == [], f"processes that would not stop: {left}"

    def stop(self) -> list[ProcessRef]:
        """Stop every process ever started here and what the Tubos started (by the pids they recorded and the
        pids in their cgroups), and remove those cgroups; returns any process that would not stop."""
        refs = list(self._refs)
        with contextlib.suppress(
            FeitianError, OSError
        ):  # and whatever the state names (a restart that failed half-way)
            refs.extend(p.ref for p in self.cluster.load().processes if p.ref not in refs)
        for ref in refs:
            signal_process(ref, signal.SIGCONT)
        left = stop_processes(refs, grace_s=10)
        for name in self.names("tubo"):
            root = self.data_dir(name) / "tubo"
            left += stop_started(root, default_cgroup_prefix(name, root))
        return left
