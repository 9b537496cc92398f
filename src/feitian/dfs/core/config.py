"""The named bounds and defaults of the DFS metadata (STYLE.md principle 7).

:class:`NamespaceConfig` is part of the replicated state machine's definition: every master replica must be
built with the same one (a different config could make replicas disagree on which command is refused). It is
recorded in each snapshot and :meth:`DfsStateMachine.restore` refuses a snapshot written under another config.
"""

from __future__ import annotations

import msgspec

from feitian.base.units import SECOND_NS, KiB, MiB
from feitian.errors import ConfigError

__all__ = [
    "DEFAULT_BLOCK_SIZE_BYTES",
    "DEFAULT_CHUNK_SIZE_BYTES",
    "DEFAULT_REPLICATION",
    "NamespaceConfig",
]


DEFAULT_CHUNK_SIZE_BYTES = 64 * MiB
DEFAULT_BLOCK_SIZE_BYTES = 64 * KiB
DEFAULT_REPLICATION = 3


class NamespaceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Bounds of the namespace; a command over a bound is refused with a message naming it."""

    max_path_bytes: int = 4096  # UTF-8 bytes of a whole path
    max_name_bytes: int = 255  # one path segment
    max_depth: int = 128  # segments in a path
    max_entries_per_dir: int = 1_000_000
    max_chunks_per_file: int = 1 << 20  # 64 TiB at 64 MiB chunks
    max_files: int = 200_000_000  # files + directories
    max_servers: int = 100_000
    max_id_chars: int = 256  # server ids, lease holders, racks, addresses
    max_list_entries: int = 10_000  # one list() page
    # chunks
    block_size_bytes: int = DEFAULT_BLOCK_SIZE_BYTES  # checksum block: chunk sizes are multiples of it
    default_chunk_size_bytes: int = DEFAULT_CHUNK_SIZE_BYTES
    min_chunk_size_bytes: int = DEFAULT_BLOCK_SIZE_BYTES
    max_chunk_size_bytes: int = 1 << 30
    default_replication: int = DEFAULT_REPLICATION
    max_replication: int = 16
    # write leases: a lease lasts at most max_lease_ttl_ns from the leader time that granted or renewed it; a
    # lease that expired can be taken over by another holder only takeover_grace_ns later, so a writer whose
    # clock runs a little slow has stopped writing (its chunk tokens expire with the lease) before anyone else
    # starts. The grace must exceed the worst clock skew between clients, chunk servers and masters.
    max_lease_ttl_ns: int = 120 * SECOND_NS
    takeover_grace_ns: int = 5 * SECOND_NS

    def problems(self) -> list[str]:
        out: list[str] = []
        positive = (
            "max_path_bytes",
            "max_name_bytes",
            "max_depth",
            "max_entries_per_dir",
            "max_chunks_per_file",
            "max_files",
            "max_servers",
            "max_id_chars",
            "max_list_entries",
            "block_size_bytes",
            "max_replication",
            "max_lease_ttl_ns",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                out.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.takeover_grace_ns < 0:
            out.append(f"takeover_grace_ns must be >= 0, got {self.takeover_grace_ns}")
        if self.block_size_bytes > 0:
            for name in ("min_chunk_size_bytes", "max_chunk_size_bytes", "default_chunk_size_bytes"):
                value = getattr(self, name)
                if value <= 0 or value % self.block_size_bytes:
                    out.append(
                        f"{name} {value} must be a positive multiple of block_size_bytes {self.block_size_bytes}"
                    )
        if not self.min_chunk_size_bytes <= self.default_chunk_size_bytes <= self.max_chunk_size_bytes:
            out.append("need min_chunk_size_bytes <= default_chunk_size_bytes <= max_chunk_size_bytes")
        if not 1 <= self.default_replication <= self.max_replication:
            out.append(f"default_replication {self.default_replication} must be in 1..max_replication")
        return out

    def validate(self) -> NamespaceConfig:
        problems = self.problems()
        if problems:
            raise ConfigError("dfs namespace config", problems=problems)
        return self
