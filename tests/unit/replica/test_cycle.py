"""The shared Ready cycle (feitian.replica.cycle): the order of its steps, and resuming after a failed step."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from feitian.consensus import (
    AppendEntries,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)
from feitian.replica import cycle as cycle_module
from feitian.replica.cycle import CycleStep, ReadyCycle, apply_entry, carry_out

S = CycleStep


def _steps(cycle: ReadyCycle) -> list[CycleStep]:
    out = []
    while (step := cycle.next_step()) is not None:
        out.append(step)
        cycle.done(step)
    return out


def _ready(*, messages: bool = True, snapshot: bool = False, term: int = 1) -> Ready:
    msgs = (AppendEntries(from_id=1, to_id=2, term=term, prev_log_index=0, prev_log_term=0),) if messages else ()
    snap = Snapshot(meta=SnapshotMeta(index=5, term=1, conf=ConfState(voters=(1, 2, 3)))) if snapshot else None
    return Ready(
        soft_state=SoftState(leader_id=1, role=Role.LEADER),
        hard_state=HardState(term=term, vote=1, commit=1),
        entries=(Entry(index=1, term=term),),
        snapshot=snap,
        committed_entries=(),
        messages=msgs,
        read_states=(),
    )


def test_a_follower_persists_before_it_sends_and_applies() -> None:
    cycle = ReadyCycle.plan(_ready(), HardState(term=1, vote=1, commit=0), Role.FOLLOWER)
    assert _steps(cycle) == [S.PERSIST, S.SEND, S.APPLY, S.ADVANCE]


def test_a_leader_sends_and_applies_while_it_writes() -> None:
    """Thesis §10.2.1: appends go out first; committed entries (durable on a quorum) apply before the write."""
    cycle = ReadyCycle.plan(_ready(), HardState(term=1, vote=1, commit=0), Role.LEADER)
    assert (cycle.early, cycle.ahead) == (True, True)
    assert _steps(cycle) == [S.SEND, S.APPLY, S.PERSIST, S.ADVANCE]


def test_a_leader_whose_term_is_not_durable_persists_first() -> None:
    """A leader's first Ready of a new term holds its vote: it may not send before that is on disk."""
    cycle = ReadyCycle.plan(_ready(term=2), HardState(term=1, vote=1, commit=0), Role.LEADER)
    assert not cycle.early
    assert _steps(cycle) == [S.APPLY, S.PERSIST, S.SEND, S.ADVANCE]


def test_a_snapshot_is_persisted_before_it_is_installed() -> None:
    cycle = ReadyCycle.plan(_ready(snapshot=True), HardState(term=1, vote=1, commit=0), Role.LEADER)
    assert not cycle.ahead
    assert _steps(cycle)[-2:] == [S.APPLY, S.ADVANCE]
    assert _steps(ReadyCycle.plan(_ready(snapshot=True), HardState(term=1), Role.FOLLOWER)) == [
        S.PERSIST,
        S.SEND,
        S.APPLY,
        S.ADVANCE,
    ]


class _Effects:
    def __init__(self, fail_persist: int) -> None:
        self.calls: list[str] = []
        self.fail_persist = fail_persist

    def send(self, ready: Ready) -> None:
        self.calls.append("send")

    def persist(self, ready: Ready) -> None:
        self.calls.append("persist")
        if self.fail_persist:
            self.fail_persist -= 1
            raise OSError("disk full")

    def apply(self, ready: Ready) -> None:
        self.calls.append("apply")

    def advance(self, ready: Ready) -> None:
        self.calls.append("advance")


def test_a_failed_step_resumes_where_it_stopped() -> None:
    """A leader's write fails after it sent and applied: the retry neither sends nor applies again."""
    effects = _Effects(fail_persist=1)
    cycle = ReadyCycle.plan(_ready(), HardState(term=1, vote=1, commit=0), Role.LEADER)
    with pytest.raises(OSError):
        carry_out(cycle, effects)
    assert effects.calls == ["send", "apply", "persist"]
    carry_out(cycle, effects)
    assert effects.calls == ["send", "apply", "persist", "persist", "advance"]
    assert cycle.next_step() is None


class _Counter:
    def __init__(self) -> None:
        self.applied: list[int] = []

    def apply(self, index: int, data: bytes) -> int:
        if data == b"boom":
            raise ValueError("nondeterministic")
        self.applied.append(index)
        return index * 10

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


def test_apply_entry_applies_normal_entries_with_data_only() -> None:
    sm = _Counter()
    failures: list[int] = []
    assert apply_entry(sm, Entry(index=1, term=1)) is None  # a new leader's empty entry
    assert apply_entry(sm, Entry(index=2, term=1, kind=EntryKind.CONF_CHANGE, data=b"cc")) is None
    assert apply_entry(sm, Entry(index=3, term=1, data=b"x")) == 30
    error = apply_entry(sm, Entry(index=4, term=1, data=b"boom"), lambda e, exc: failures.append(e.index))
    assert isinstance(error, ValueError)
    assert sm.applied == [3]
    assert failures == [4]


def test_the_cycle_is_pure() -> None:
    """The cycle is shared with the simulator: it imports no I/O, clock, randomness or asyncio."""
    path = Path(cycle_module.__file__)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"asyncio", "socket", "time", "random", "os", "io", "threading", "pathlib"}
    assert names <= {"__future__", "enum", "dataclasses", "collections", "typing", "feitian"}


def test_steps_are_done_in_order() -> None:
    cycle = ReadyCycle.plan(_ready(), HardState(term=1), Role.FOLLOWER)
    with pytest.raises(ValueError, match="out of order"):
        cycle.done(S.SEND)  # the follower must persist first
    assert cycle.next_step() is S.PERSIST
