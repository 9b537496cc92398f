"""Invariants of the master's metadata, checked by :meth:`DfsStateMachine.validate` (tests run it after every
step; an operator tool may run it on a snapshot). A broken invariant is a bug: InternalError."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feitian.dfs.core.records import ROOT_INODE, DirNode, ServerState
from feitian.errors import InternalError

if TYPE_CHECKING:
    from feitian.dfs.core.namespace import DfsStateMachine

__all__ = ["check_invariants"]


def check_invariants(sm: DfsStateMachine) -> None:
    problems: list[str] = []
    nodes, table = sm.tree.nodes, sm.table
    root = nodes.get(ROOT_INODE)
    if not isinstance(root, DirNode):
        problems.append("the root is missing or not a directory")
    owned: dict[int, int] = {}
    for inode, node in nodes.items():
        if inode >= sm.tree.next_inode:
            problems.append(f"inode {inode} >= next_inode {sm.tree.next_inode}")
        if inode != ROOT_INODE:
            parent = nodes.get(node.parent)
            if not isinstance(parent, DirNode) or parent.children.get(node.name) != inode:
                problems.append(f"inode {inode} ({node.name!r}) is not listed by its parent {node.parent}")
        if isinstance(node, DirNode):
            for name, child in node.children.items():
                if child not in nodes or nodes[child].name != name or nodes[child].parent != inode:
                    problems.append(f"directory {inode} lists {name!r} -> {child}, which does not point back")
            continue
        total = 0
        for index, chunk_id in enumerate(node.chunks):
            chunk = table.chunks.get(chunk_id)
            if chunk is None:
                problems.append(f"file {inode} lists missing chunk {chunk_id}")
                continue
            owned[chunk_id] = inode
            total += chunk.length
            if chunk.file_id != inode or chunk.index != index:
                problems.append(f"chunk {chunk_id} says file {chunk.file_id} index {chunk.index}, not {inode}/{index}")
            if index < len(node.chunks) - 1 and not chunk.sealed:
                problems.append(f"chunk {chunk_id} of file {inode} is not the last and not sealed")
            if not 0 <= chunk.length <= node.chunk_size_bytes:
                problems.append(f"chunk {chunk_id} length {chunk.length} outside 0..{node.chunk_size_bytes}")
        if total != node.length:
            problems.append(f"file {inode} length {node.length} != sum of its chunk lengths {total}")
        if (node.lease is not None) != (inode in sm.leased_files()):
            problems.append(f"file {inode}: the lease index disagrees with the file")
    for chunk_id, chunk in table.chunks.items():
        if owned.get(chunk_id) != chunk.file_id:
            problems.append(f"chunk {chunk_id} is not listed by its file {chunk.file_id}")
        if chunk_id >= table.next_chunk_id:
            problems.append(f"chunk {chunk_id} >= next_chunk_id {table.next_chunk_id}")
        if len(set(chunk.replicas)) != len(chunk.replicas):
            problems.append(f"chunk {chunk_id} lists a replica twice: {chunk.replicas}")
        for server_id in chunk.replicas:
            if server_id not in table.servers or chunk_id not in table.by_server.get(server_id, ()):
                problems.append(f"chunk {chunk_id} replica {server_id!r} is unregistered or missing from the index")
    for server_id, held in table.by_server.items():
        server = table.servers.get(server_id)
        if server is not None and server.state is ServerState.DECOMMISSIONED and held:
            problems.append(f"decommissioned server {server_id!r} holds {len(held)} replicas")
        for chunk_id in held:
            if chunk_id not in table.chunks or server_id not in table.chunks[chunk_id].replicas:
                problems.append(f"index says {server_id!r} holds chunk {chunk_id}, the chunk disagrees")
    if problems:
        raise InternalError("dfs namespace invariants broken: " + "; ".join(problems[:20]), problems=problems[:100])
