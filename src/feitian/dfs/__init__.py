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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feitian.deploy.dfs_local import connect_local
    from feitian.dfs.client.client import DfsClient, DfsClientConfig
    from feitian.dfs.client.sync import SyncDfs
    from feitian.dfs.client.transfer import (
        copy_file,
        download,
        into_local_dir,
        into_remote_dir,
        local_sink,
        open_local,
        remote_file,
        upload,
    )
    from feitian.dfs.messages.master import Locate, LocateReply, MasterStatus
    from feitian.dfs.roles import ChunkServerRole, DfsMasterRole

# Exported on first use (the core alone stays light), for users and other components, which import only through
# this root (ARCHITECTURE.md, Layers).
_LAZY = {
    "ChunkServerRole": "feitian.dfs.roles",
    "DfsClient": "feitian.dfs.client.client",
    "DfsClientConfig": "feitian.dfs.client.client",
    "DfsMasterRole": "feitian.dfs.roles",
    "Locate": "feitian.dfs.messages.master",
    "LocateReply": "feitian.dfs.messages.master",
    "MasterStatus": "feitian.dfs.messages.master",
    "SyncDfs": "feitian.dfs.client.sync",
    "copy_file": "feitian.dfs.client.transfer",
    "download": "feitian.dfs.client.transfer",
    "into_local_dir": "feitian.dfs.client.transfer",
    "into_remote_dir": "feitian.dfs.client.transfer",
    "local_sink": "feitian.dfs.client.transfer",
    "open_local": "feitian.dfs.client.transfer",
    "remote_file": "feitian.dfs.client.transfer",
    "upload": "feitian.dfs.client.transfer",
}

__all__ = [
    "ChunkServerRole",
    "DfsClient",
    "DfsClientConfig",
    "DfsMasterRole",
    "Locate",
    "LocateReply",
    "MasterStatus",
    "SyncDfs",
    "connect_local",
    "copy_file",
    "download",
    "into_local_dir",
    "into_remote_dir",
    "local_sink",
    "open_local",
    "remote_file",
    "upload",
]


def __getattr__(name: str) -> Any:
    if name == "connect_local":  # the deploy layer's: see the docstring (the one allowed upward import)
        from feitian.deploy.dfs_local import connect_local

        return connect_local
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
