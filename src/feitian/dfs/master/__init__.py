"""The ``dfs-master`` role's service: the replicated namespace (``master.py``: :class:`DfsMaster` on the
replicated-service kit), the leader's soft state and maintenance (``leader.py``), the Kuafu handlers
(``service.py``) and chunk-token minting (``tokens.py``). Imports the core and the shared messages, never the
chunk server's or the client's modules."""
