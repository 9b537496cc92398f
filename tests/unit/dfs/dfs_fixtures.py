"""Helpers for the DFS core tests: a state machine driven through encoded commands, like the replica driver."""

from __future__ import annotations

import random
from typing import Any

from feitian.dfs.core import (
    AcquireLease,
    AddChunk,
    Command,
    Create,
    DfsStateMachine,
    NamespaceConfig,
    RegisterServer,
    encode_command,
)
from feitian.errors import FeitianError

SECOND_NS = 1_000_000_000
T0 = 1_700_000_000 * SECOND_NS
BLOCK = 4096
SMALL = NamespaceConfig(
    block_size_bytes=BLOCK,
    min_chunk_size_bytes=BLOCK,
    default_chunk_size_bytes=4 * BLOCK,
    max_chunk_size_bytes=64 * BLOCK,
)


class Master:
    """A DfsStateMachine fed encoded commands with increasing log indexes; ``now`` is the leader's clock."""

    def __init__(self, config: NamespaceConfig = SMALL) -> None:
        self.sm = DfsStateMachine(config)
        self.index = 0
        self.now = T0

    def apply(self, command: Command) -> Any:
        self.index += 1
        return self.sm.apply(self.index, encode_command(command))

    def ok(self, command: Command) -> Any:
        result = self.apply(command)
        assert not isinstance(result, FeitianError), f"{command!r} refused: {result!r}"
        self.sm.validate()
        return result

    def refused(self, command: Command, kind: type[FeitianError], *words: str) -> FeitianError:
        before = self.sm.snapshot()
        result = self.apply(command)
        assert isinstance(result, kind), f"{command!r}: expected {kind.__name__}, got {result!r}"
        for word in words:
            assert word in result.message, f"{word!r} not in {result.message!r}"
        after = self.sm.snapshot()
        # a refused command changes nothing but the applied index (and the leader clock it carried)
        probe = DfsStateMachine(self.sm.config)
        probe.restore(before)
        probe.applied_index, probe.clock_ns = self.sm.applied_index, self.sm.clock_ns
        assert probe.snapshot() == after, f"{command!r} was refused but changed the state"
        return result

    def tick(self, seconds: float = 1.0) -> int:
        self.now += int(seconds * SECOND_NS)
        return self.now

    def servers(self, count: int, racks: int = 3, capacity: int = 1 << 40) -> list[str]:
        ids = []
        for i in range(count):
            server_id = f"cs{i}"
            self.ok(
                RegisterServer(server_id, f"tcp://10.0.{i % racks}.{i}:7200", f"rack{i % racks}", capacity, self.now)
            )
            ids.append(server_id)
        return ids

    def create(self, path: str, holder: str = "client-a", ttl_s: float = 60, **kwargs: Any) -> tuple[int, int]:
        result = self.ok(
            Create(path, self.now, holder=holder, lease_expires_ns=self.now + int(ttl_s * SECOND_NS), **kwargs)
        )
        return result.file_id, result.lease_id

    def open_write(self, path: str, holder: str, mode: Any, ttl_s: float = 60) -> Any:
        return self.ok(AcquireLease(path, holder, mode, self.now, self.now + int(ttl_s * SECOND_NS)))

    def add_chunk(self, file_id: int, lease_id: int, replicas: tuple[str, ...], previous_length: int = -1) -> Any:
        return self.ok(AddChunk(file_id, lease_id, self.sm.next_chunk_id, replicas, self.now, previous_length))


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)
