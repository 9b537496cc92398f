"""Pangu (盘古): the distributed file system (PANGU-1..9).

So far the pure core (:mod:`feitian.dfs.core`): the masters' replicated metadata state machine, replica
placement, repair/balance/decommission planning, the leader's view of chunk servers, chunk checksums and the
write-pipeline state of a replica. The master service, chunk servers, client, fsspec adapter and CLI are built
on it; see docs/dfs.md.
"""
