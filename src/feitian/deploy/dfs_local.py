"""Connecting to the file system of a local cluster (``feitian cluster up``): its masters and identities.

Until Nuwa resolves service names, a cluster's directory is where a client finds the masters' addresses (the
cluster state file) and the identity to act as (``security/identities``). The CLI, :class:`SyncDfs` and the
``pangu://`` fsspec filesystem use this; programs that know their masters build a
:class:`~feitian.dfs.DfsClient` directly.

**The last known leader.** Each ``feitian dfs`` command is a new process, so it would find the master leader
afresh every time — and pay a dead master's connect retries (about 1.5 s) on every command while that master
is down. :func:`remember_leader` writes the leader a client ended with to ``DIR/dfs-leader``;
:func:`connect_local` tries it first and puts it last in the rotation, so a leader that died since costs one
command the retries, after which the new leader is remembered.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from feitian.dfs import DfsClient, DfsClientConfig
from feitian.errors import FeitianError, NotFoundError
from feitian.rpc import ClientConfig

__all__ = ["LEADER_FILE", "connect_local", "master_addresses", "remember_leader"]

LEADER_FILE = "dfs-leader"  # in the cluster directory: the address of the last master leader a client used


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
    hint = _known_leader(lc.dir, masters)
    if hint is not None:  # tried first; last in the rotation, so a dead one is not tried again right after
        masters = [a for a in masters if a != hint] + [hint]
    rpc = await lc.client(
        ClientConfig(name=name, connect_timeout_s=2.0),
        state=state,
        identity=identity,
        capability_files=capability_files,
    )
    client = DfsClient(rpc, masters, config)
    client.masters.leader = hint
    return client


def _known_leader(directory: str, masters: list[str]) -> str | None:
    try:
        with open(os.path.join(directory, LEADER_FILE), encoding="utf-8") as f:
            address = f.read().strip()
    except OSError:
        return None
    return address if address in masters else None


def remember_leader(cluster: str | None, client: DfsClient) -> None:
    """Write the master leader ``client`` last talked to into the cluster directory (best effort: a directory
    that cannot be written costs later commands time, nothing else)."""
    from feitian.deploy.cluster import resolve_cluster_dir
    from feitian.runtime.files import atomic_write

    leader = client.masters.leader
    directory = resolve_cluster_dir(cluster)
    if leader is None or _known_leader(directory, [leader]) == leader:
        return
    with contextlib.suppress(OSError, FeitianError):
        atomic_write(os.path.join(directory, LEADER_FILE), leader.encode() + b"\n")
