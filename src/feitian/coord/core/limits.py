"""Named bounds of the coordination core (every bound is named: ARCHITECTURE.md, Invariants).

Every replica of one quorum must run with the same :class:`CoordLimits`: the limits decide whether a command
is refused, so replicas with different limits could diverge. (The event-history bounds are the exception: they
only decide how far back a watcher can resume, never the tree's state.)
"""

from __future__ import annotations

import msgspec

from feitian.errors import ConfigError

__all__ = ["DEFAULT_LIMITS", "CoordLimits"]


class CoordLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # -- the tree
    max_value_bytes: int = 1 << 20  # a file's value (NUWA-2: at most 1 MB)
    max_path_bytes: int = 4096  # a whole path, UTF-8
    max_name_bytes: int = 255  # one path segment, UTF-8 (without the trailing "/" of a directory)
    max_depth: int = 64  # segments below the root
    max_nodes: int = 10_000_000  # nodes in the tree; beyond it a create is refused with OverloadedError
    # -- transactions
    max_txn_ops: int = 128
    max_txn_bytes: int = 4 << 20  # sum of the paths and values of one transaction's operations
    # -- write batches (a client's concurrent writes in one request and one log entry)
    max_batch_writes: int = 128
    max_batch_bytes: int = 4 << 20  # sum of the paths and values of a batch's writes
    # -- sessions
    max_sessions: int = 100_000
    max_ephemerals_per_session: int = 10_000
    min_session_ttl_ms: int = 1_000
    max_session_ttl_ms: int = 300_000
    max_expire_batch: int = 1_024  # sessions in one ExpireSessions command
    # -- retried writes
    max_client_id_bytes: int = 64
    max_principal_bytes: int = 256
    dedupe_window: int = 32  # results remembered per client: at most this many writes in flight per client
    max_dedupe_clients: int = 50_000  # clients remembered; the least recently used one is forgotten first
    # -- reads
    max_list_children: int = 10_000  # stats returned by one list/select call; page with start_after
    # -- event history (not part of the tree's state; see the module docstring)
    history_max_events: int = 100_000
    history_max_bytes: int = 16 << 20
    max_events_per_batch: int = 10_000  # events_since returns whole revisions, about this many events

    def problems(self) -> list[str]:
        out = [f"{name} must be >= 1" for name in self.__struct_fields__ if getattr(self, name) < 1]
        if self.min_session_ttl_ms > self.max_session_ttl_ms:
            out.append("min_session_ttl_ms must be <= max_session_ttl_ms")
        if self.max_name_bytes > self.max_path_bytes:
            out.append("max_name_bytes must be <= max_path_bytes")
        return out

    def validate(self) -> CoordLimits:
        problems = self.problems()
        if problems:
            raise ConfigError("invalid coordination limits", problems=problems)
        return self


DEFAULT_LIMITS = CoordLimits()
