"""Connecting to the file system of a local cluster (``feitian cluster up``): its masters and identities.

Until Nuwa resolves service names, a cluster's directory is where a client finds the masters' addresses (the
cluster state file) and the identity to act as (``security/identities``). The CLI, :class:`SyncDfs` and the
``pangu://`` fsspec filesystem use this; programs that know their masters build a
:class:`~feitian.dfs.client.DfsClient` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from feitian.dfs.client import DfsClient, DfsClientConfig
from feitian.errors import NotFoundError
from feitian.rpc import ClientConfig

__all__ = ["connect_local", "master_addresses"]


def master_addresses(cluster: str | None = None) -> list[str]:
    from feitian.deploy.cluster import LocalCluster, resolve_cluster_dir

    lc = LocalCluster(resolve_cluster_dir(cluster))
    addresses = [p.addresses[0] for p in lc.load().processes if p.role == "dfs-master" and p.addresses]
    if not addresses:
        raise NotFoundError(
            f"the cluster at {lc.dir} runs no dfs-master", hint="start one with `feitian cluster up --dfs-masters 3`"
        )
    return addresses


async def connect_local(
    cluster: str | None = None,
    *,
    identity: str | None = None,
    capability_files: Sequence[str] = (),
    config: DfsClientConfig | None = None,
    name: str = "feitian-dfs",
) -> DfsClient:
    """A DFS client of the local cluster at ``cluster`` (``--cluster``, ``$FEITIAN_CLUSTER``, the default)."""
    from feitian.deploy.cluster import LocalCluster, resolve_cluster_dir

    lc = LocalCluster(resolve_cluster_dir(cluster))
    state = lc.load()
    masters = master_addresses(cluster)
    rpc = await lc.client(
        ClientConfig(name=name, connect_timeout_s=2.0),
        state=state,
        identity=identity,
        capability_files=capability_files,
    )
    return DfsClient(rpc, masters, config)
