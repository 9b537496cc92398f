"""The chunk table and the registered chunk servers: chunk records, their replica sets and versions.

An index from server id to the chunks it holds is kept alongside (derived state: rebuilt on restore, never
snapshotted) so decommission, balance and ``RemoveServer`` never scan every chunk.
"""

from __future__ import annotations

from collections.abc import Iterable

from feitian.dfs.core.config import NamespaceConfig
from feitian.dfs.core.records import ChunkRecord, ServerRecord, ServerState
from feitian.errors import InvalidArgumentError, NotFoundError

__all__ = ["ChunkTable"]

FIRST_CHUNK_ID = 1


class ChunkTable:
    def __init__(self, config: NamespaceConfig) -> None:
        self.config = config
        self.chunks: dict[int, ChunkRecord] = {}
        self.servers: dict[str, ServerRecord] = {}
        self.by_server: dict[str, set[int]] = {}
        self.next_chunk_id = FIRST_CHUNK_ID  # ids below it were allocated once and are never reused

    def rebuild_index(self) -> None:
        self.by_server = {server_id: set() for server_id in self.servers}
        for chunk in self.chunks.values():
            for server_id in chunk.replicas:
                self.by_server.setdefault(server_id, set()).add(chunk.chunk_id)

    # -- lookups -------------------------------------------------------------------------------------------------

    def chunk(self, op: str, chunk_id: int) -> ChunkRecord:
        chunk = self.chunks.get(chunk_id)
        if chunk is None:
            raise NotFoundError(f"{op}: chunk {chunk_id} does not exist (its file was deleted?)", chunk_id=chunk_id)
        return chunk

    def server(self, op: str, server_id: str) -> ServerRecord:
        server = self.servers.get(server_id)
        if server is None:
            raise NotFoundError(f"{op}: chunk server {server_id!r} is not registered", server_id=server_id)
        return server

    def check_id(self, op: str, what: str, value: str) -> None:
        if not value or len(value) > self.config.max_id_chars:
            raise InvalidArgumentError(
                f"{op}: {what} must be 1..{self.config.max_id_chars} characters, got {len(value)}",
                limit=self.config.max_id_chars,
            )

    def check_replica_set(self, op: str, replicas: Iterable[str], *, at_least: int, at_most: int) -> tuple[str, ...]:
        replicas = tuple(replicas)
        if len(set(replicas)) != len(replicas):
            raise InvalidArgumentError(f"{op}: replica set {list(replicas)} names a server twice")
        if not at_least <= len(replicas) <= at_most:
            raise InvalidArgumentError(
                f"{op}: {len(replicas)} replicas given, this file needs {at_least}..{at_most}",
                given=len(replicas),
                at_least=at_least,
                at_most=at_most,
            )
        for server_id in replicas:
            self.server(op, server_id)
        return replicas

    # -- servers -------------------------------------------------------------------------------------------------

    def register_server(
        self, op: str, server_id: str, address: str, rack: str, capacity_bytes: int, now_ns: int
    ) -> bool:
        for what, value in (("server id", server_id), ("address", address), ("rack", rack)):
            self.check_id(op, what, value)
        if capacity_bytes <= 0:
            raise InvalidArgumentError(f"{op} {server_id}: capacity_bytes must be > 0, got {capacity_bytes}")
        existing = self.servers.get(server_id)
        if existing is not None:
            existing.address, existing.rack, existing.capacity_bytes = address, rack, capacity_bytes
            return False
        if len(self.servers) >= self.config.max_servers:
            raise InvalidArgumentError(f"{op} {server_id}: max_servers {self.config.max_servers} are registered")
        self.servers[server_id] = ServerRecord(server_id, address, rack, capacity_bytes, now_ns)
        self.by_server[server_id] = set()
        return True

    def set_server_state(self, op: str, server_id: str, state: ServerState) -> None:
        """Decommissioned only once it holds no replica (decommissioning migrates them off first)."""
        server = self.server(op, server_id)
        held = len(self.by_server.get(server_id, ()))
        if state is ServerState.DECOMMISSIONED and held:
            raise InvalidArgumentError(
                f"{op} {server_id}: it still holds {held} replicas",
                hint="decommissioning migrates them off first",
                server_id=server_id,
                replicas=held,
            )
        server.state = state

    def remove_server(self, op: str, server_id: str, force: bool) -> list[int]:
        """Forget a server; with ``force`` drop it from every replica set. Returns the chunks it held."""
        self.server(op, server_id)
        held = sorted(self.by_server.get(server_id, ()))
        if held and not force:
            raise InvalidArgumentError(
                f"{op} {server_id}: it still holds {len(held)} replicas",
                hint="decommission it first (its chunks migrate off), or force if it is gone for good",
                server_id=server_id,
                replicas=len(held),
            )
        for chunk_id in held:
            self.chunks[chunk_id].replicas.remove(server_id)
        del self.servers[server_id]
        self.by_server.pop(server_id, None)
        return held

    # -- chunks --------------------------------------------------------------------------------------------------

    def check_new_id(self, op: str, chunk_id: int) -> None:
        if chunk_id < self.next_chunk_id:
            raise InvalidArgumentError(
                f"{op}: chunk id {chunk_id} was already allocated (next free id is {self.next_chunk_id})",
                chunk_id=chunk_id,
                next_chunk_id=self.next_chunk_id,
            )

    def add(self, chunk: ChunkRecord) -> None:
        self.chunks[chunk.chunk_id] = chunk
        self.next_chunk_id = chunk.chunk_id + 1
        for server_id in chunk.replicas:
            self.by_server[server_id].add(chunk.chunk_id)

    def set_replicas(self, chunk: ChunkRecord, replicas: Iterable[str]) -> None:
        for server_id in chunk.replicas:
            self.by_server[server_id].discard(chunk.chunk_id)
        chunk.replicas = list(replicas)
        for server_id in chunk.replicas:
            self.by_server[server_id].add(chunk.chunk_id)

    def drop(self, chunk_ids: Iterable[int]) -> int:
        count = 0
        for chunk_id in chunk_ids:
            chunk = self.chunks.pop(chunk_id)
            for server_id in chunk.replicas:
                self.by_server[server_id].discard(chunk_id)
            count += 1
        return count
