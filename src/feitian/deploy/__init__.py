"""Dayu (大禹): node processes (``node.py``: ``feitian node run ROLE``), the roles a node can run (``roles.py``),
the local cluster (``cluster.py``: ``feitian cluster up``) and a DFS client of it (``dfs_local.py``). The top of
the services: it may import every component's root; nothing below it imports it (ARCHITECTURE.md, Layers)."""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes

if TYPE_CHECKING:
    from feitian.deploy.cluster import (
        ClusterResolver,
        ClusterState,
        LocalCluster,
        NodeSpec,
        ProcessRecord,
        ProcessStatus,
        coord_specs,
        default_spec,
        dfs_specs,
        free_ports,
        fuxi_specs,
        replica_specs,
        resolve_cluster_dir,
    )
    from feitian.deploy.dfs_local import connect_local, master_addresses, remember_leader
    from feitian.deploy.echo_methods import EchoBytes
    from feitian.deploy.node import load_config, run_node
    from feitian.deploy.roles import ROLES, make_role

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "ClusterResolver": "feitian.deploy.cluster",
    "ClusterState": "feitian.deploy.cluster",
    "EchoBytes": "feitian.deploy.echo_methods",
    "LocalCluster": "feitian.deploy.cluster",
    "NodeSpec": "feitian.deploy.cluster",
    "ProcessRecord": "feitian.deploy.cluster",
    "ProcessStatus": "feitian.deploy.cluster",
    "ROLES": "feitian.deploy.roles",
    "connect_local": "feitian.deploy.dfs_local",
    "coord_specs": "feitian.deploy.cluster",
    "default_spec": "feitian.deploy.cluster",
    "dfs_specs": "feitian.deploy.cluster",
    "free_ports": "feitian.deploy.cluster",
    "fuxi_specs": "feitian.deploy.cluster",
    "load_config": "feitian.deploy.node",
    "make_role": "feitian.deploy.roles",
    "master_addresses": "feitian.deploy.dfs_local",
    "remember_leader": "feitian.deploy.dfs_local",
    "replica_specs": "feitian.deploy.cluster",
    "resolve_cluster_dir": "feitian.deploy.cluster",
    "run_node": "feitian.deploy.node",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "ROLES",
    "ClusterResolver",
    "ClusterState",
    "EchoBytes",
    "LocalCluster",
    "NodeSpec",
    "ProcessRecord",
    "ProcessStatus",
    "connect_local",
    "coord_specs",
    "default_spec",
    "dfs_specs",
    "free_ports",
    "fuxi_specs",
    "load_config",
    "make_role",
    "master_addresses",
    "remember_leader",
    "replica_specs",
    "resolve_cluster_dir",
    "run_node",
]
