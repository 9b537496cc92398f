"""Real Pangu processes for tests and benchmarks: dfs-master replicas and chunk servers on 127.0.0.1.

``DfsCluster(directory)`` is a local cluster (``feitian.deploy.cluster``) of masters and chunk servers with
small, test-friendly settings (4 MiB chunks, 3 s heartbeat timeout); ``secure=True`` adds the authority and
mutual TLS like ``feitian cluster up``. Processes can be killed, frozen and restarted; :meth:`stop` stops
every process it started, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from feitian.deploy import ClusterState, LocalCluster, NodeSpec, dfs_specs
from feitian.dfs import DfsClient, DfsClientConfig
from feitian.errors import FeitianError
from feitian.rpc import Client, ClientConfig
from feitian.runtime.eventloop import run
from feitian.runtime.procs import ProcessRef, signal_process, stop_processes
from feitian.testing.waiting import wait_for_condition

KiB, MiB = 1 << 10, 1 << 20
# Small pieces, so that the small files of tests still travel as several writes in flight.
TEST_CLIENT_CONFIG = DfsClientConfig(piece_bytes=256 * KiB, timeout_s=30.0, io_timeout_s=20.0)


class DfsCluster:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        masters: int = 3,
        chunkservers: int = 4,
        secure: bool = False,
        chunk_size_bytes: int = 4 * MiB,
        heartbeat_timeout_s: float = 3.0,
        master_options: dict[str, Any] | None = None,
        chunkserver_options: dict[str, Any] | None = None,
        racks: tuple[str, ...] = ("r1", "r2", "r3"),
    ) -> None:
        self.cluster = LocalCluster(str(directory))
        self.secure = secure
        options = {
            "default_chunk_size_bytes": chunk_size_bytes,
            "heartbeat_timeout_s": heartbeat_timeout_s,
            "chunkserver_heartbeat_s": 0.3,
            "maintenance_interval_s": 0.2,
            "balance_interval_s": 0,
            "election_ticks": 10,
            **(master_options or {}),
        }
        server_options = {"heartbeat_interval_s": 0.3, **(chunkserver_options or {})}
        self.specs = dfs_specs(masters, chunkservers, options, server_options, racks)
        self.master_addresses = [s.listen[0] for s in self.specs if s.role == "dfs-master"]
        self._refs: list[ProcessRef] = []
        self.extra: dict[str, LocalCluster] = {}  # chunk servers added later, each in a directory of its own

    def start(self, timeout_s: float = 60.0) -> ClusterState:
        """Start every process and wait until the master leader lists every chunk server as live."""
        state = self.cluster.up(self.specs, timeout_s=timeout_s, secure=self.secure)
        self._refs.extend(p.ref for p in state.processes)
        run(self.wait_servers(len(self.names("chunkserver")), timeout_s))
        return state

    async def wait_servers(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until ``count`` chunk servers are registered and live."""
        client = await self.client()
        try:

            async def ready() -> bool:
                try:
                    return sum(s.live for s in await client.servers()) >= count
                except FeitianError:
                    return False

            await wait_for_condition(ready, timeout_s, f"{count} live chunk servers")
        finally:
            await client.rpc.close()

    def add_chunkserver(self, name: str, rack: str, options: dict[str, Any] | None = None) -> None:
        """Start one more chunk server (a cluster without security: it runs in a directory of its own)."""
        if self.secure:
            raise NotImplementedError("adding a chunk server to a secured test cluster")
        spec = next(s for s in self.specs if s.role == "chunkserver")
        role_options = {**spec.role_options, "rack": rack, **(options or {})}
        extra = LocalCluster(os.path.join(self.cluster.dir, f"extra-{name}"))
        state = extra.up([NodeSpec(name, "chunkserver", role_options, spec.rpc)], secure=False)
        self._refs.extend(p.ref for p in state.processes)
        self.extra[name] = extra

    def names(self, role: str) -> list[str]:
        return [s.name for s in self.specs if s.role == role]

    def data_dir(self, name: str) -> Path:
        return Path(self.cluster.dir) / "data" / name

    def ref(self, name: str) -> ProcessRef:
        return self.extra.get(name, self.cluster).load().find(name).ref

    def log_path(self, name: str) -> str:
        return self.cluster.load().find(name).log

    def kill(self, name: str) -> None:
        ref = self.ref(name)
        signal_process(ref, signal.SIGKILL)
        stop_processes([ref], grace_s=5)

    def freeze(self, name: str) -> None:
        signal_process(self.ref(name), signal.SIGSTOP)

    def resume(self, name: str) -> None:
        signal_process(self.ref(name), signal.SIGCONT)

    def restart(self, name: str) -> ProcessRef:
        ref = self.cluster.restart(name).ref
        self._refs.append(ref)
        return ref

    def stop(self) -> list[ProcessRef]:
        """Stop every process ever started here; returns any that would not stop."""
        for ref in self._refs:
            signal_process(ref, signal.SIGCONT)
        return stop_processes(self._refs, grace_s=10)

    async def rpc_client(self, name: str = "test-dfs", identity: str | None = None) -> Client:
        return await self.cluster.client(ClientConfig(name=name, connect_timeout_s=2.0), identity=identity)

    async def client(
        self, config: DfsClientConfig | None = None, *, identity: str | None = None, name: str = "test-dfs"
    ) -> DfsClient:
        """A DFS client (its Kuafu client is ``.rpc``: close it when done)."""
        rpc = await self.rpc_client(name, identity)
        return DfsClient(rpc, self.master_addresses, config or DfsClientConfig(timeout_s=30.0, io_timeout_s=20.0))

    async def leader(self, client: Client) -> str:
        """The name of the master replica that leads now."""
        from feitian.dfs import MasterStatus

        for spec in self.specs:
            if spec.role != "dfs-master":
                continue
            try:
                status = await client.call(spec.listen[0], MasterStatus(), timeout=2)
            except Exception:
                continue
            if status.role == "leader":
                return spec.name
        raise AssertionError("no dfs master leads")


@contextlib.asynccontextmanager
async def running_dfs(directory: str | os.PathLike[str], **options: Any) -> AsyncIterator[tuple[DfsCluster, DfsClient]]:
    """A started :class:`DfsCluster` (``options`` as its constructor's) and a client of it (``TEST_CLIENT_CONFIG``);
    afterwards the client is closed and every process stopped by pid (an AssertionError if one would not stop)."""
    cluster = DfsCluster(directory, **options)
    await asyncio.to_thread(cluster.start)
    client = await cluster.client(TEST_CLIENT_CONFIG)
    try:
        yield cluster, client
    finally:
        await client.rpc.close()
        stuck = await asyncio.to_thread(cluster.stop)
        assert stuck == [], f"processes that would not stop: {stuck}"
