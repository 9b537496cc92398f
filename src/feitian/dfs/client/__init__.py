"""Pangu's client side: :class:`DfsClient` (``client.py``, asyncio) with its readers and writers (``read.py``,
``write.py``, ``pipeline.py``), :class:`~feitian.dfs.client.sync.SyncDfs` for scripts (``sync.py``), ``pangu://``
for fsspec (``fsspec_adapter.py``) and the CLI's file transfers (``transfer.py``). Importing this package
registers ``pangu://``. Imports the core and the shared messages, never the master's or the chunk server's
modules."""

from feitian.dfs.client.client import DfsClient, DfsClientConfig

__all__ = ["DfsClient", "DfsClientConfig"]
