"""One simulated replica: a RawNode, its durable "disk", a hash-chain state machine (and optionally a service's),
with crash and restart; its Ready cycle is the real driver's (:mod:`feitian.replica.cycle`)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    Snapshot,
)
from feitian.replica import ReadyCycle, apply_entry, carry_out
from feitian.replica import StateMachine as ServiceMachine


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


class ServiceImage(msgspec.Struct, frozen=True, array_like=True):
    """A snapshot of a replica that also runs a service state machine: the hash chain's image and the
    service's own snapshot bytes."""

    chain: bytes
    service: bytes


class _Crashed(Exception):
    """The simulation crashed the replica in the middle of a Ready cycle."""


@dataclass(slots=True)
class SimNode:
    """One replica. Its Ready cycles run through the same :class:`~feitian.replica.cycle.ReadyCycle` as the
    real driver's (:meth:`handle_ready`); it implements the cycle's effects on an in-memory disk that survives
    crashes and a seeded network. Optionally it runs a service's state machine (``service_factory``, the
    driver's ``StateMachine`` protocol) next to the hash chain, restored from the disk's snapshot on restart."""

    node_id: int
    config: Config
    disk: MemoryStorage = field(default_factory=MemoryStorage)
    raw: RawNode | None = None
    sm: StateMachine | None = None
    restarts: int = 0
    service_factory: Callable[[], ServiceMachine] | None = None
    service: ServiceMachine | None = None
    last_result: Any = None  # what the service returned for the entry applied last
    restored: Callable[[SimNode], None] | None = None  # called when the service state is replaced
    _hooks: ReadyHooks | None = None
    _cycle: ReadyCycle | None = None

    @property
    def up(self) -> bool:
        return self.raw is not None

    def start(self, rand_seed: int) -> None:
        """Boot from exactly what is on disk."""
        self.raw = RawNode(self.config, self.disk, random.Random(rand_seed))
        self._restore(self.disk.snapshot())
        self.restarts += 1

    def crash(self) -> None:
        """Lose everything that is not on disk."""
        self.raw = None
        self.sm = None
        self.service = None

    def image(self) -> bytes:
        """What a snapshot of this replica holds (at the index its state machine has applied)."""
        assert self.sm is not None
        if self.service is None:
            return self.sm.image()
        return msgspec.msgpack.encode(ServiceImage(chain=self.sm.image(), service=self.service.snapshot()))

    def _restore(self, snapshot: Snapshot) -> None:
        chain = snapshot
        if self.service_factory is not None:
            self.service = self.service_factory()
            if snapshot.data:
                image = msgspec.msgpack.decode(snapshot.data, type=ServiceImage)
                self.service.restore(image.service)
                chain = Snapshot(meta=snapshot.meta, data=image.chain)
        self.sm = StateMachine.from_snapshot(chain)
        if self.restored is not None:
            self.restored(self)

    def handle_ready(self, hooks: ReadyHooks) -> None:
        """Run Ready cycles until there is no more work (or the node crashes mid-cycle)."""
        self._hooks = hooks
        while self.raw is not None:
            rd = self.raw.ready()
            if rd is None:
                return
            hooks.before_persist(self, rd)
            self._cycle = ReadyCycle.plan(rd, self.disk.hard_state, self.raw.role)
            try:
                carry_out(self._cycle, self)
            except _Crashed:
                self.crash()
                return
            finally:
                self._cycle = None

    # -- the cycle's effects (feitian.replica.cycle.CycleEffects) -----------------------------------------------

    def send(self, ready: Ready) -> None:
        assert self._hooks is not None
        for message in ready.messages:
            self._hooks.send(message)

    def persist(self, ready: Ready) -> None:
        hooks = self._hooks
        assert hooks is not None and self._cycle is not None
        if self._cycle.early and hooks.crash_before_persist(self):
            raise _Crashed
        if ready.snapshot is not None:
            self.disk.apply_snapshot(ready.snapshot)
        self.disk.append(ready.entries)
        if ready.hard_state is not None:
            self.disk.set_hard_state(ready.hard_state)
        hooks.after_persist(self, ready)
        if hooks.crash_after_persist(self):
            raise _Crashed

    def apply(self, ready: Ready) -> None:
        hooks = self._hooks
        assert hooks is not None and self.sm is not None
        if ready.snapshot is not None and ready.snapshot.meta.index > self.sm.index:
            self._restore(ready.snapshot)
            hooks.snapshot_restored(self, ready.snapshot)
        for entry in ready.committed_entries:
            assert self.sm is not None
            if entry.index <= self.sm.index:
                continue  # applied already (the driver skips them the same way)
            if self.service is not None:
                self.last_result = apply_entry(self.service, entry)
            self.sm.apply(entry)
            hooks.applied(self, entry)
        for rs in ready.read_states:
            hooks.read_state(self, rs)

    def advance(self, ready: Ready) -> None:
        assert self.raw is not None
        self.raw.advance(ready)
