"""One simulated replica: a RawNode, its durable "disk" and a tiny state machine, with crash and restart."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from feitian.consensus import (
    Config,
    Entry,
    EntryKind,
    MemoryStorage,
    Message,
    RawNode,
    ReadState,
    Ready,
    may_send_before_persist,
)
from feitian.consensus.types import Snapshot


class StateImage(msgspec.Struct, frozen=True, array_like=True):
    """What the sim state machine snapshots: the applied index and a digest of every entry up to it."""

    index: int
    digest: bytes
    writes: int


@dataclass(slots=True)
class StateMachine:
    """Applies entries into a hash chain, so two replicas with equal digests applied identical prefixes."""

    index: int = 0
    digest: bytes = b""
    writes: int = 0

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> StateMachine:
        if not snapshot.data:
            return cls(index=snapshot.meta.index)
        image = msgspec.msgpack.decode(snapshot.data, type=StateImage)
        if image.index != snapshot.meta.index:
            raise AssertionError(f"snapshot image at {image.index} stored as snapshot {snapshot.meta.index}")
        return cls(index=image.index, digest=image.digest, writes=image.writes)

    def apply(self, entry: Entry) -> None:
        if entry.index != self.index + 1:
            raise AssertionError(f"applying entry {entry.index} after {self.index}")
        h = hashlib.blake2b(self.digest, digest_size=16)
        h.update(entry.index.to_bytes(8, "big"))
        h.update(entry.term.to_bytes(8, "big"))
        h.update(bytes([entry.kind]))
        h.update(entry.data)
        self.digest = h.digest()
        self.index = entry.index
        if entry.kind == EntryKind.NORMAL:
            self.writes += 1

    def image(self) -> bytes:
        return msgspec.msgpack.encode(StateImage(index=self.index, digest=self.digest, writes=self.writes))


@dataclass(slots=True)
class ReadyHooks:
    """Callbacks the simulation gives a node to observe each step of the Ready cycle (for invariants)."""

    before_persist: Callable[[SimNode, Ready], None]
    after_persist: Callable[[SimNode, Ready], None]
    send: Callable[[Message], None]
    applied: Callable[[SimNode, Entry], None]
    snapshot_restored: Callable[[SimNode, Snapshot], None]
    read_state: Callable[[SimNode, ReadState], None]
    crash_after_persist: Callable[[SimNode], bool]
    crash_before_persist: Callable[[SimNode], bool]


@dataclass(slots=True)
class SimNode:
    node_id: int
    config: Config
    disk: MemoryStorage = field(default_factory=MemoryStorage)
    raw: RawNode | None = None
    sm: StateMachine | None = None
    restarts: int = 0

    @property
    def up(self) -> bool:
        return self.raw is not None

    def start(self, rand_seed: int) -> None:
        """Boot from exactly what is on disk."""
        self.raw = RawNode(self.config, self.disk, random.Random(rand_seed))
        self.sm = StateMachine.from_snapshot(self.disk.snapshot())
        self.restarts += 1

    def crash(self) -> None:
        """Lose everything that is not on disk."""
        self.raw = None
        self.sm = None

    def handle_ready(self, hooks: ReadyHooks) -> None:
        """Run Ready cycles until there is no more work (or the node crashes mid-cycle)."""
        while self.raw is not None:
            rd = self.raw.ready()
            if rd is None:
                return
            hooks.before_persist(self, rd)
            early = may_send_before_persist(rd, self.disk.hard_state, self.raw.role)
            if early:  # a leader sends while it writes (the driver does the same)
                for message in rd.messages:
                    hooks.send(message)
                if hooks.crash_before_persist(self):
                    self.crash()
                    return
            if rd.snapshot is not None:
                self.disk.apply_snapshot(rd.snapshot)
            self.disk.append(rd.entries)
            if rd.hard_state is not None:
                self.disk.set_hard_state(rd.hard_state)
            hooks.after_persist(self, rd)
            if hooks.crash_after_persist(self):
                self.crash()
                return
            if not early:
                for message in rd.messages:
                    hooks.send(message)
            assert self.sm is not None
            if rd.snapshot is not None:
                self.sm = StateMachine.from_snapshot(rd.snapshot)
                hooks.snapshot_restored(self, rd.snapshot)
            for entry in rd.committed_entries:
                self.sm.apply(entry)
                hooks.applied(self, entry)
            for rs in rd.read_states:
                hooks.read_state(self, rs)
            self.raw.advance(rd)
