"""Pangu (盘古): the distributed file system (PANGU-1..9); docs/dfs.md.

* :mod:`feitian.dfs.core` — the pure core: the masters' replicated metadata state machine, placement,
  repair/balance/decommission planning, chunk checksums, the write-pipeline state of a replica, token claims.
* The services: the ``dfs-master`` role (:mod:`~feitian.dfs.master`) and the ``chunkserver`` role
  (:mod:`~feitian.dfs.chunkserver`), registered in ``feitian.deploy.roles``.
* The client: :class:`DfsClient` (asyncio), :class:`SyncDfs` (file objects for scripts), ``pangu://`` for
  fsspec (registered when :mod:`feitian.dfs.client` is imported), :func:`connect_local` (a local cluster).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers; at run time the client is imported on first use (below)
    from feitian.dfs.client import DfsClient, DfsClientConfig
    from feitian.dfs.local import connect_local
    from feitian.dfs.sync import SyncDfs

__all__ = ["DfsClient", "DfsClientConfig", "SyncDfs", "connect_local"]


def __getattr__(name: str) -> Any:  # the client is imported on first use: the core alone stays light
    if name in ("DfsClient", "DfsClientConfig"):
        from feitian.dfs import client

        return getattr(client, name)
    if name == "SyncDfs":
        from feitian.dfs.sync import SyncDfs

        return SyncDfs
    if name == "connect_local":
        from feitian.dfs.local import connect_local

        return connect_local
    raise AttributeError(name)
