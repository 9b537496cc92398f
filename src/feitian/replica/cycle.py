"""The Ready cycle: in which order one ``Ready`` of the consensus core is carried out, shared by the asyncio
driver (:mod:`feitian.replica.driver`) and the seeded simulator (:mod:`feitian.testing.sim`).

One implementation, two drivers: :class:`ReadyCycle` decides the steps and remembers which are done; the
driver carries each one out with its own storage, transport and state machine — the real one with a write-ahead
log, fsync and Kuafu, asynchronously; the simulator with in-memory disks and a seeded network, synchronously
(:func:`carry_out`). The order (etcd-io/raft's, with the Raft thesis §10.2.1 leader optimizations):

1. ``SEND`` first when the Ready allows it (:func:`~feitian.consensus.may_send_before_persist`: a leader's
   appends and heartbeats go out while it writes, so its fsync and the followers' overlap);
2. ``APPLY`` first on a leader without a snapshot to install: what is committed is durable on a quorum
   whatever its own disk holds, so answers never wait for its own fsync;
3. ``PERSIST``: the snapshot, entries and hard state, durably;
4. ``SEND`` (everyone else: a vote or an acknowledgement only after what it promises is on disk);
5. ``APPLY``: install a received snapshot whose index is past the state machine's, then the committed entries,
   the read states and the soft state;
6. ``ADVANCE`` the core.

Every step is marked done when it completes (``SEND`` when it starts: a message is sent at most once, Raft
retransmits what is lost), so a driver whose step failed resumes the same cycle at that step and the state
machine never applies an entry twice (drivers also skip entries at or below the index it holds).

Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from feitian.consensus import Entry, EntryKind, HardState, Ready, Role, may_send_before_persist

__all__ = ["CycleEffects", "CycleStep", "ReadyCycle", "StateMachine", "apply_entry", "carry_out"]


class StateMachine(Protocol):
    """What a replicated service gives the driver (and the simulator): deterministic ``apply``, and a
    ``snapshot``/``restore`` pair such that restoring a snapshot taken at index i gives the state at i."""

    def apply(self, index: int, data: bytes) -> Any:
        """Apply a committed command; the result goes back to the proposer (if it is waiting here)."""
        ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class CycleStep(enum.Enum):
    SEND = "send"
    APPLY = "apply"
    PERSIST = "persist"
    ADVANCE = "advance"


_SEND, _APPLY, _PERSIST, _ADVANCE = CycleStep.SEND, CycleStep.APPLY, CycleStep.PERSIST, CycleStep.ADVANCE
# The order of the steps, by (early, ahead). "early" implies "ahead" (both need a leader and no snapshot).
_ORDERS = {
    (True, True): (_SEND, _APPLY, _PERSIST, _ADVANCE),
    (True, False): (_SEND, _PERSIST, _APPLY, _ADVANCE),
    (False, True): (_APPLY, _PERSIST, _SEND, _ADVANCE),
    (False, False): (_PERSIST, _SEND, _APPLY, _ADVANCE),
}


@dataclass(slots=True)
class ReadyCycle:
    """One Ready being carried out: its steps in order, and how many are done (``position``; see the module
    docstring). A driver on a hot path may read ``steps[position]`` and bump ``position`` itself instead of
    calling :meth:`next_step` and :meth:`done`: the same thing, without two calls per step."""

    ready: Ready
    steps: tuple[CycleStep, ...]
    early: bool = False  # messages go out before the write (a leader's)
    ahead: bool = False  # committed entries are applied before the write (a leader's)
    position: int = 0  # steps[:position] are done

    @classmethod
    def plan(cls, ready: Ready, hard_state: HardState, role: Role) -> ReadyCycle:
        """The cycle of ``ready`` for a replica in ``role`` whose durable hard state is ``hard_state``."""
        early = bool(ready.messages) and may_send_before_persist(ready, hard_state, role)
        ahead = role is Role.LEADER and ready.snapshot is None
        return cls(ready, _ORDERS[early, ahead], early, ahead)

    def next_step(self) -> CycleStep | None:
        """The next step to carry out (None: the cycle is over)."""
        return self.steps[self.position] if self.position < len(self.steps) else None

    def done(self, step: CycleStep) -> None:
        """Mark ``step`` — the one :meth:`next_step` returned — done."""
        if self.steps[self.position] is not step:
            raise ValueError(f"Ready cycle: {step.value} done out of order (next: {self.steps[self.position].value})")
        self.position += 1


class CycleEffects(Protocol):
    """A synchronous driver's side of the cycle (the simulator's replicas implement it)."""

    def send(self, ready: Ready) -> None: ...

    def persist(self, ready: Ready) -> None: ...

    def apply(self, ready: Ready) -> None:
        """Install ``ready.snapshot`` if it is past the state machine's index, then apply the committed entries
        (:func:`apply_entry`), the read states and the soft state."""
        ...

    def advance(self, ready: Ready) -> None: ...


def carry_out(cycle: ReadyCycle, effects: CycleEffects) -> None:
    """Carry out ``cycle`` synchronously. If a step raises, the cycle stays resumable at that step."""
    while (step := cycle.next_step()) is not None:
        ready = cycle.ready
        if step is CycleStep.SEND:
            cycle.done(step)
            effects.send(ready)
            continue
        if step is CycleStep.APPLY:
            effects.apply(ready)
        elif step is CycleStep.PERSIST:
            effects.persist(ready)
        else:
            effects.advance(ready)
        cycle.done(step)


def apply_entry(sm: StateMachine, entry: Entry, failed: Callable[[Entry, Exception], None] | None = None) -> Any:
    """Apply one committed entry to ``sm``: normal entries with data only (empty entries are a new leader's,
    configuration changes the core's). A state machine must be deterministic; if it raises anyway, the
    exception (reported to ``failed``) is the entry's result and the replica goes on."""
    if entry.kind != EntryKind.NORMAL or not entry.data:
        return None
    try:
        return sm.apply(entry.index, entry.data)
    except Exception as exc:
        if failed is not None:
            failed(entry, exc)
        return exc
