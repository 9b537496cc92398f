"""The ``[role]`` keys every replicated role shares (kv, coord, dfs-master), and how they become a
:class:`~feitian.replica.driver.ReplicaConfig`. Roles subclass :class:`ReplicaOptions` with keys of their own."""

from __future__ import annotations

import os

import msgspec

from feitian.errors import ConfigError
from feitian.replica.driver import ReplicaConfig


class ReplicaOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: int
    peers: dict[str, str]  # replica id (as a string: TOML keys) -> Kuafu address, this replica's included
    peer_addresses: dict[str, str] = {}  # consensus traffic to these peers goes here instead (test proxies)
    tick_ms: int = 50
    election_ticks: int = 20
    heartbeat_ticks: int = 2
    snapshot_every_entries: int = 20_000
    snapshot_log_ratio: float = 0.25
    keep_entries_after_snapshot: int = 5_000
    segment_size_bytes: int = 64 << 20
    follower_sync_inline: bool = True
    leader_sync_inline: bool = True
    read_retry_ms: int = 0
    snapshot_in_child: bool = True

    def replica_config(self, *, role: str, data_dir: str, cluster: str) -> ReplicaConfig:
        """The driver's config, after checking what a node config can get wrong (peer ids)."""
        try:
            peers = {int(k): v for k, v in self.peers.items()}
            peer_addresses = {int(k): v for k, v in self.peer_addresses.items()}
        except ValueError:
            raise ConfigError(f"role {role}: [role] peers: keys must be replica ids (integers)") from None
        return ReplicaConfig(
            id=self.id,
            peers=peers,
            peer_addresses=peer_addresses,
            data_dir=os.path.join(data_dir or ".", "raft"),
            cluster=cluster,
            tick_ms=self.tick_ms,
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            snapshot_every_entries=self.snapshot_every_entries,
            snapshot_log_ratio=self.snapshot_log_ratio,
            keep_entries_after_snapshot=self.keep_entries_after_snapshot,
            segment_size_bytes=self.segment_size_bytes,
            follower_sync_inline=self.follower_sync_inline,
            leader_sync_inline=self.leader_sync_inline,
            read_retry_ms=self.read_retry_ms,
            snapshot_in_child=self.snapshot_in_child,
        )
