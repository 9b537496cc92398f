"""The ``[role]`` options of Pangu's node roles (docs/config.md): ``dfs-master`` and ``chunkserver``."""

from __future__ import annotations

from typing import Any

import msgspec

from feitian.base.units import SECOND_NS
from feitian.dfs.core import ClusterConfig, NamespaceConfig, PlacementPolicy
from feitian.errors import UnavailableReason
from feitian.replica import ReplicaOptions, Router
from feitian.rpc import Client

__all__ = ["ChunkServerOptions", "MasterOptions"]

KiB, MiB = 1 << 10, 1 << 20


class MasterOptions(ReplicaOptions, frozen=True, forbid_unknown_fields=True):
    """The ``[role]`` section of a ``dfs-master`` node (docs/config.md): the replica keys every replicated role
    has, then Pangu's. The namespace keys must be the same on every master of a cluster."""

    # the namespace
    block_size_bytes: int = 64 * KiB
    default_chunk_size_bytes: int = 64 * MiB
    min_chunk_size_bytes: int = 64 * KiB
    default_replication: int = 3
    # the leader
    heartbeat_timeout_s: float = 10.0  # a chunk server silent this long is dead (its chunks are re-replicated)
    chunkserver_heartbeat_s: float = 1.0  # how often chunk servers heartbeat (reports older than 2x are doubted)
    maintenance_interval_s: float = 0.5
    balance_interval_s: float = 30.0  # background balancer period; 0: only `feitian dfs balance`
    balance_threshold: float = 0.10
    repair_bytes_per_s: int = 200 * MiB
    max_copies_per_server: int = 2
    lease_ttl_s: float = 60.0
    read_token_ttl_s: float = 300.0
    copy_timeout_s: float = 300.0
    probe_timeout_s: float = 3.0  # asking a replica for its length during pipeline recovery

    def namespace_config(self) -> NamespaceConfig:
        return NamespaceConfig(
            block_size_bytes=self.block_size_bytes,
            min_chunk_size_bytes=self.min_chunk_size_bytes,
            default_chunk_size_bytes=self.default_chunk_size_bytes,
            default_replication=self.default_replication,
        ).validate()

    def cluster_config(self) -> ClusterConfig:
        return ClusterConfig(
            heartbeat_timeout_ns=int(self.heartbeat_timeout_s * SECOND_NS),
            copy_timeout_ns=int(self.copy_timeout_s * SECOND_NS),
            repair_bytes_per_s=self.repair_bytes_per_s,
            repair_burst_bytes=max(self.repair_bytes_per_s, 2 * self.default_chunk_size_bytes, 1 << 30),
            report_grace_ns=int(3 * self.chunkserver_heartbeat_s * SECOND_NS),
            placement=PlacementPolicy(
                max_copies_per_server=self.max_copies_per_server, balance_threshold=self.balance_threshold
            ),
        ).validate()


class ChunkServerOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[role]`` section of a ``chunkserver`` node (docs/config.md)."""

    masters: list[str]  # the dfs-master replicas' addresses
    rack: str = "r1"
    capacity_bytes: int = 0  # 0: the size of the filesystem holding data_dir
    heartbeat_interval_s: float = 1.0
    scrub_interval_s: float = 3600.0  # a pass over every replica this often (0: never)
    scrub_bytes_per_s: int = 64 * MiB
    io_threads: int = 4

    def problems(self) -> list[str]:
        out = []
        if not self.masters:
            out.append("masters: at least one dfs-master address is needed")
        if not self.rack:
            out.append("rack must not be empty")
        if self.heartbeat_interval_s <= 0 or self.io_threads < 1 or self.capacity_bytes < 0:
            out.append("heartbeat_interval_s > 0, io_threads >= 1 and capacity_bytes >= 0 are required")
        return out


def master_caller(client: Client, addresses: list[str], **options: Any) -> Router:
    """The kit's router to the Pangu master leader among ``addresses`` (``options``: the Router's timeouts; one
    attempt 5 s unless given). A full disk or no usable chunk server ends a call at once: another master would
    answer the same."""
    options.setdefault("attempt_timeout_s", 5.0)
    return Router(
        client,
        addresses,
        service="dfs master",
        fatal_reasons=(UnavailableReason.DISK_FULL, UnavailableReason.NO_SERVERS),
        unreachable_hint="are the dfs masters running? `feitian cluster status` shows them",
        **options,
    )
