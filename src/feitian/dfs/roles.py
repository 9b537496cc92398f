"""The node roles of Pangu: ``dfs-master`` and ``chunkserver`` (registered in ``feitian.deploy.roles``).

``node`` is the deploy layer's NodeContext (its name, Kuafu server and client, directories, security); this
module only reads those attributes, so the services never import the deploy layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from feitian.dfs.options import ChunkServerOptions, MasterOptions
from feitian.errors import ConfigError
from feitian.replica import add_replica_stats
from feitian.rpc import Metric

__all__ = ["ChunkServerRole", "DfsMasterRole"]

log = logging.getLogger(__name__)


MASTER_METRICS = (
    Metric("dfs_namespace_nodes", "gauge", "files and directories in the namespace"),
    Metric("dfs_chunks", "gauge", "chunks the master tracks"),
    Metric("dfs_chunkservers", "gauge", "chunk servers the master knows (live or not)"),
)

CHUNKSERVER_METRICS = (
    Metric("chunk_replicas", "gauge", "chunk replicas stored on this server"),
    Metric("chunk_used_bytes", "gauge", "bytes those replicas take"),
    Metric("chunk_capacity_bytes", "gauge", "bytes this server offers (lowered to what the disk can still hold)"),
    Metric("chunk_corrupt_pending", "gauge", "replicas found corrupt (checksum mismatch), not yet told to the master"),
    Metric("chunk_scrubbed_bytes", "counter", "bytes the scrubber has verified"),
    Metric("chunk_scrub_passes", "counter", "complete scrubber passes over every replica"),
)


def master_figures(sm: Any) -> Callable[[], dict[str, float]]:
    """A Pangu master's state machine figures, each read in constant time (a scrape never walks the tree)."""
    return lambda: {
        "dfs_namespace_nodes": len(sm.tree.nodes),
        "dfs_chunks": len(sm.table.chunks),
        "dfs_chunkservers": len(sm.table.servers),
    }


def chunkserver_figures(service: Any) -> Callable[[], dict[str, float]]:
    def read() -> dict[str, float]:
        capacity, used = service.store.usage()
        return {
            "chunk_replicas": len(service.store.chunks),
            "chunk_used_bytes": used,
            "chunk_capacity_bytes": capacity,
            "chunk_corrupt_pending": len(service.corrupt_found),
            "chunk_scrubbed_bytes": service.scrubbed_bytes,
            "chunk_scrub_passes": service.scrub_passes,
        }

    return read


class DfsMasterRole:
    """A Pangu master replica (feitian.dfs.master.master); ``[role]`` keys: docs/config.md."""

    options_type: ClassVar[type[Any]] = MasterOptions

    def __init__(self) -> None:
        self._master: Any = None

    async def start(self, node: Any, options: Any) -> dict[str, str]:
        from feitian.dfs.master.master import DfsMaster
        from feitian.dfs.master.service import MasterService

        config = options.replica_config(role="dfs-master", data_dir=node.data_dir, cluster=node.config.node.cluster)
        self._master = DfsMaster(node.name, options, config, node.client, node.security)
        self._master.replica.register(node.server)
        MasterService(self._master).register(node.server)
        await self._master.start()
        add_replica_stats(node.stats, self._master.replica)
        node.stats.add_source(MASTER_METRICS, master_figures(self._master.sm))
        return {"replica_id": str(options.id)}

    async def stop(self) -> None:
        if self._master is not None:
            await self._master.stop()


class ChunkServerRole:
    """A Pangu chunk server (feitian.dfs.chunkserver.service); its replicas live in ``<data_dir>/chunks``."""

    options_type: ClassVar[type[Any]] = ChunkServerOptions

    def __init__(self) -> None:
        self._parts: list[Any] = []
        self._store: Any = None

    async def start(self, node: Any, options: Any) -> dict[str, str]:
        from feitian.base.clock import MonotonicClock
        from feitian.dfs.chunkserver.loops import HeartbeatLoop, Scrubber
        from feitian.dfs.chunkserver.service import BULK_LANE, ChunkService
        from feitian.dfs.chunkserver.store import ChunkStore, StoreConfig
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
        node.stats.add_source(CHUNKSERVER_METRICS, chunkserver_figures(service))
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
