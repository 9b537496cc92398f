"""Pangu (盘古): the distributed file system (PANGU-1..9); docs/dfs.md.

One sub-package per role, over a shared level:

* :mod:`feitian.dfs.core` — the pure core: the masters' replicated metadata state machine, placement,
  repair/balance/decommission planning, chunk checksums and file geometry, the write-pipeline state of a
  replica, token claims.
* Shared by every side (import only the core): :mod:`feitian.dfs.messages` (the wire messages of the master and
  of the chunk servers), ``options.py`` (role options, the router to the masters), ``presenter.py`` (chunk tokens
  presented to chunk servers).
* :mod:`feitian.dfs.master` — the ``dfs-master`` role's service; :mod:`feitian.dfs.chunkserver` — the
  ``chunkserver`` role's; :mod:`feitian.dfs.client` — the client side. None of the three imports another.
* ``roles.py`` — the two node roles (registered in ``feitian.deploy.roles``), the one module above them.
* This root — what other components and users import: :class:`DfsClient` (asyncio), :class:`SyncDfs` (file
  objects for scripts), ``pangu://`` for fsspec (registered when :mod:`feitian.dfs.client` is imported),
  :func:`connect_local` (a client of a local cluster; it lives in the deploy layer, which knows the cluster
  directory, and is looked up here only when asked for), the two roles.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChunkServerRole", "DfsClient", "DfsClientConfig", "DfsMasterRole", "SyncDfs", "connect_local"]


def __getattr__(name: str) -> Any:  # the client is imported on first use: the core alone stays light
    if name in ("DfsClient", "DfsClientConfig"):
        from feitian.dfs import client

        return getattr(client, name)
    if name == "SyncDfs":
        from feitian.dfs.client.sync import SyncDfs

        return SyncDfs
    if name in ("ChunkServerRole", "DfsMasterRole"):
        from feitian.dfs import roles

        return getattr(roles, name)
    if name == "connect_local":  # the deploy layer's: see the docstring (the one allowed upward import)
        from feitian.deploy.dfs_local import connect_local

        return connect_local
    raise AttributeError(name)
