"""The node roles of Pangu: ``dfs-master`` and ``chunkserver`` (registered in ``feitian.deploy.roles``).

``node`` is the deploy layer's NodeContext (its name, Kuafu server and client, directories, security); this
module only reads those attributes, so the services never import the deploy layer.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from feitian.dfs.options import ChunkServerOptions, MasterOptions
from feitian.errors import ConfigError

__all__ = ["ChunkServerRole", "DfsMasterRole"]

log = logging.getLogger(__name__)


class DfsMasterRole:
    """A Pangu master replica (feitian.dfs.master); ``[role]`` keys: docs/config.md."""

    options_type: ClassVar[type[Any]] = MasterOptions

    def __init__(self) -> None:
        self._master: Any = None

    async def start(self, node: Any, options: Any) -> dict[str, str]:
        from feitian.dfs.master import DfsMaster
        from feitian.dfs.master_service import MasterService

        config = options.replica_config(role="dfs-master", data_dir=node.data_dir, cluster=node.config.node.cluster)
        self._master = DfsMaster(node.name, options, config, node.client, node.security)
        self._master.replica.register(node.server)
        MasterService(self._master).register(node.server)
        await self._master.start()
        return {"replica_id": str(options.id)}

    async def stop(self) -> None:
        if self._master is not None:
            await self._master.stop()


class ChunkServerRole:
    """A Pangu chunk server (feitian.dfs.chunkserver); its replicas live in ``<data_dir>/chunks``."""

    options_type: ClassVar[type[Any]] = ChunkServerOptions

    def __init__(self) -> None:
        self._parts: list[Any] = []
        self._store: Any = None

    async def start(self, node: Any, options: Any) -> dict[str, str]:
        from feitian.base.clock import MonotonicClock
        from feitian.dfs.chunk_store import ChunkStore, StoreConfig
        from feitian.dfs.chunkserver import BULK_LANE, ChunkService
        from feitian.dfs.chunkserver_loops import HeartbeatLoop, Scrubber
        from feitian.dfs.options import master_caller

        assert isinstance(options, ChunkServerOptions)
        problems = options.problems()
        if problems:
            raise ConfigError("invalid [role] section of a chunkserver", problems=problems)
        if BULK_LANE not in node.server.config.lanes:
            raise ConfigError(f"role chunkserver needs a lane for bulk data: add [rpc.lanes.{BULK_LANE}]")
        store = ChunkStore(
            node.data_dir or ".", StoreConfig(capacity_bytes=options.capacity_bytes, io_threads=options.io_threads)
        )
        self._store = store
        quarantined = await store.open()
        clock = MonotonicClock()
        service = ChunkService(node.name, options.rack, store, node.client, clock=clock)
        service.quarantined = quarantined
        service.register(node.server)
        masters = master_caller(node.client, list(options.masters), attempt_timeout_s=2.0, clock=clock)
        server = node.server
        heartbeats = HeartbeatLoop(
            service,
            masters,
            lambda: server.addresses[0] if server.addresses else "",
            options.heartbeat_interval_s,
            clock=clock,
        )
        scrubber = Scrubber(service, options.scrub_interval_s, options.scrub_bytes_per_s, clock=clock)
        heartbeats.start()
        scrubber.start()
        self._parts = [heartbeats, scrubber]
        log.info("chunk server %s (rack %s): %d replicas", node.name, options.rack, len(store.chunks))
        return {"rack": options.rack}

    async def stop(self) -> None:
        for part in self._parts:
            await part.stop()
        if self._store is not None:
            await self._store.close()
