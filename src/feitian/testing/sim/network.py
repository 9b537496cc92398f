"""A simulated network: seeded loss, delay, duplication, reordering and partitions, in ticks."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Addressed(Protocol):
    @property
    def from_id(self) -> int: ...

    @property
    def to_id(self) -> int: ...


M = TypeVar("M", bound=Addressed)


@dataclass(slots=True)
class NetworkFaults:
    """Fault rates; ``delay`` is drawn uniformly from [min_delay_ticks, max_delay_ticks]."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    min_delay_ticks: int = 0
    max_delay_ticks: int = 0
    # Rarely, a message is held back much longer (reordering across many others).
    long_delay_rate: float = 0.0
    long_delay_ticks: int = 20


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    partitioned: int = 0


@dataclass(slots=True)
class SimNetwork(Generic[M]):
    rng: random.Random
    faults: NetworkFaults = field(default_factory=NetworkFaults)
    stats: NetworkStats = field(default_factory=NetworkStats)
    # node id -> partition group; nodes in different groups cannot talk. Empty: fully connected.
    groups: dict[int, int] = field(default_factory=dict)
    _queue: list[tuple[int, int, M]] = field(default_factory=list)
    _seq: int = 0

    def connected(self, a: int, b: int) -> bool:
        return self.groups.get(a, 0) == self.groups.get(b, 0)

    def partition(self, groups: list[list[int]]) -> None:
        self.groups = {node: g for g, members in enumerate(groups) for node in members}

    def heal(self) -> None:
        self.groups = {}

    def __len__(self) -> int:
        return len(self._queue)

    def send(self, message: M, now: int) -> None:
        self.stats.sent += 1
        if not self.connected(message.from_id, message.to_id):
            self.stats.partitioned += 1
            return
        if self.rng.random() < self.faults.drop_rate:
            self.stats.dropped += 1
            return
        copies = 1
        if self.rng.random() < self.faults.duplicate_rate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            delay = self.rng.randint(self.faults.min_delay_ticks, self.faults.max_delay_ticks)
            if self.rng.random() < self.faults.long_delay_rate:
                delay += self.rng.randint(1, self.faults.long_delay_ticks)
            self._seq += 1
            heapq.heappush(self._queue, (now + delay, self._seq, message))

    def due(self, now: int) -> list[M]:
        """Messages whose delivery time has come, in a shuffled order; partitions apply at delivery too."""
        ready: list[M] = []
        while self._queue and self._queue[0][0] <= now:
            ready.append(heapq.heappop(self._queue)[2])
        self.rng.shuffle(ready)
        out: list[M] = []
        for message in ready:
            if self.connected(message.from_id, message.to_id):
                out.append(message)
            else:
                self.stats.partitioned += 1
        self.stats.delivered += len(out)
        return out
