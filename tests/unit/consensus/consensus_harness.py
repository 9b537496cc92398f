"""Helpers to drive consensus cores message by message in unit tests (like etcd's raft_test.go harness)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from feitian.consensus import (
    Config,
    Entry,
    MemoryStorage,
    Message,
    RawNode,
    ReadState,
    Ready,
    Role,
    bootstrap,
)


def make_storage(voters: Iterable[int] = (1, 2, 3), learners: Iterable[int] = ()) -> MemoryStorage:
    storage = MemoryStorage()
    snapshot, hard_state = bootstrap(tuple(voters), tuple(learners))
    storage.apply_snapshot(snapshot)
    storage.set_hard_state(hard_state)
    return storage


def make_node(
    node_id: int,
    voters: Iterable[int] = (1, 2, 3),
    *,
    storage: MemoryStorage | None = None,
    seed: int | None = None,
    **config: object,
) -> tuple[RawNode, MemoryStorage]:
    storage = storage if storage is not None else make_storage(voters)
    options: dict[str, object] = {"election_tick": 10, "heartbeat_tick": 1}
    options.update(config)
    cfg = Config(id=node_id, **options)  # type: ignore[arg-type]
    return RawNode(cfg, storage, random.Random(node_id if seed is None else seed)), storage


@dataclass
class Handled:
    """What one or more Ready cycles produced."""

    messages: list[Message] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    readies: list[Ready] = field(default_factory=list)


def handle(node: RawNode, storage: MemoryStorage) -> Handled:
    """Run Ready cycles until quiet: persist to ``storage``, collect messages/applied entries, advance."""
    out = Handled()
    while (rd := node.ready()) is not None:
        out.readies.append(rd)
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        out.messages.extend(rd.messages)
        out.entries.extend(rd.entries)
        out.committed.extend(rd.committed_entries)
        out.read_states.extend(rd.read_states)
        node.advance(rd)
    return out


def of_type(messages: Iterable[Message], kind: type) -> list[Message]:
    return [m for m in messages if isinstance(m, kind)]


class Cluster:
    """Several cores with an in-order, lossless network; filters drop messages."""

    def __init__(self, ids: Iterable[int] = (1, 2, 3), *, voters: Iterable[int] | None = None, **config: object):
        self.ids = list(ids)
        voter_ids = tuple(voters) if voters is not None else tuple(self.ids)
        self.nodes: dict[int, RawNode] = {}
        self.storages: dict[int, MemoryStorage] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.config = config
        for node_id in self.ids:
            storage = make_storage(voter_ids) if node_id in voter_ids else MemoryStorage()
            self.add(node_id, storage)
        self.queue: list[Message] = []
        self.drop: Callable[[Message], bool] = lambda m: False
        self.delivered: list[Message] = []

    def add(self, node_id: int, storage: MemoryStorage | None = None) -> RawNode:
        if node_id not in self.ids:
            self.ids.append(node_id)
        storage = storage if storage is not None else MemoryStorage()
        node, _ = make_node(node_id, storage=storage, **self.config)
        self.nodes[node_id] = node
        self.storages[node_id] = storage
        self.applied.setdefault(node_id, [])
        self.read_states.setdefault(node_id, [])
        return node

    def restart(self, node_id: int) -> RawNode:
        """Crash and restart from what was persisted; the test's applied list restarts from the snapshot."""
        self.applied[node_id] = []
        return self.add(node_id, self.storages[node_id])

    def isolate(self, *isolated: int) -> None:
        cut = set(isolated)
        self.drop = lambda m: (m.from_id in cut) != (m.to_id in cut)

    def heal(self) -> None:
        self.drop = lambda m: False

    def handle(self, node_id: int) -> Handled:
        out = handle(self.nodes[node_id], self.storages[node_id])
        self.queue.extend(out.messages)
        self.applied[node_id].extend(out.committed)
        self.read_states[node_id].extend(out.read_states)
        return out

    def settle(self, max_messages: int = 100_000) -> None:
        """Deliver messages (and the ones they cause) until the network is quiet."""
        for node_id in self.ids:
            self.handle(node_id)
        count = 0
        while self.queue:
            message = self.queue.pop(0)
            count += 1
            assert count < max_messages, "cluster does not settle"
            if self.drop(message) or message.to_id not in self.nodes:
                continue
            self.delivered.append(message)
            self.nodes[message.to_id].step(message)
            self.handle(message.to_id)

    def tick(self, node_ids: Iterable[int] | None = None, times: int = 1) -> None:
        for _ in range(times):
            for node_id in node_ids if node_ids is not None else self.ids:
                self.nodes[node_id].tick()
            self.settle()

    def elect(self, node_id: int) -> RawNode:
        self.nodes[node_id].campaign()
        self.settle()
        assert self.nodes[node_id].role == Role.LEADER, f"{node_id} did not win: {self.nodes[node_id].status()}"
        return self.nodes[node_id]

    def leader(self) -> RawNode | None:
        leaders = [n for n in self.nodes.values() if n.role == Role.LEADER]
        return max(leaders, key=lambda n: n.term) if leaders else None

    def data_applied(self, node_id: int) -> list[bytes]:
        return [e.data for e in self.applied[node_id] if e.data]
