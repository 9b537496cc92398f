"""The key-value state machine and the durable log adapter (real files, real fsync)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from feitian.consensus import Config, Entry, HardState, RawNode, Ready
from feitian.errors import ConflictError
from feitian.examples.kv import DeleteCommand, KvStateMachine, PutCommand
from feitian.replica.core import RequestKey
from feitian.replica.log import DurableLog


def enc(cmd: object) -> bytes:
    return msgspec.msgpack.encode(cmd)


def test_put_versions_conditions_and_delete() -> None:
    sm = KvStateMachine()
    assert sm.apply(2, enc(PutCommand("a", b"1"))) == 1
    assert sm.apply(3, enc(PutCommand("a", b"2"))) == 2
    conflict = sm.apply(4, enc(PutCommand("a", b"3", expect_version=1)))
    assert isinstance(conflict, ConflictError) and conflict.found == 2
    assert sm.apply(5, enc(PutCommand("b", b"x", expect_version=0))) == 1
    assert sm.apply(6, enc(DeleteCommand("a"))) is True
    assert sm.apply(7, enc(DeleteCommand("a"))) is False
    assert sm.data == {"b": (b"x", 1)}


def test_snapshot_round_trip() -> None:
    sm = KvStateMachine()
    for i in range(100):
        sm.apply(i + 2, enc(PutCommand(f"k{i}", bytes([i]))))
    other = KvStateMachine()
    other.restore(sm.snapshot())
    assert other.data == sm.data and other.applied_index == 101


def test_a_retried_write_is_applied_once_and_the_table_survives_a_snapshot() -> None:
    sm = KvStateMachine()
    key = RequestKey("", "client-1", 1, fingerprint=9)
    assert sm.apply(2, enc(PutCommand("a", b"1", request=key))) == 1
    assert sm.apply(3, enc(PutCommand("a", b"1", request=key))) == 1  # the retry: not version 2
    assert sm.data == {"a": (b"1", 1)}
    gone = RequestKey("", "client-1", 2, fingerprint=10)
    assert sm.apply(4, enc(DeleteCommand("a", request=gone))) is True
    assert sm.apply(5, enc(DeleteCommand("a", request=gone))) is True  # not False: the first answer
    other = KvStateMachine()
    other.restore(sm.snapshot())
    assert other.apply(6, enc(PutCommand("a", b"1", request=key))) == 1 and "a" not in other.data


def test_a_snapshot_written_before_the_dedupe_table_loads() -> None:
    old = msgspec.msgpack.encode([7, {"k": (b"v", 3)}])  # [applied_index, data], as written before
    sm = KvStateMachine()
    sm.restore(old)
    assert sm.applied_index == 7 and sm.data == {"k": (b"v", 3)} and len(sm.dedupe) == 0
    assert sm.snapshot() == old  # and an empty table writes the same form


async def test_durable_log_bootstraps_persists_and_reopens(tmp_path: Path) -> None:
    log = await asyncio.to_thread(DurableLog.open, tmp_path, (1, 2, 3))
    assert log.snapshot.meta.conf.voters == (1, 2, 3)
    entries = tuple(Entry(term=2, index=i, data=f"e{i}".encode()) for i in range(2, 12))
    await log.persist(Ready(hard_state=HardState(term=2, vote=1, commit=1), entries=entries))
    assert log.fsyncs == 1
    # A commit-only change is written without its own fsync.
    await log.persist(Ready(hard_state=HardState(term=2, vote=1, commit=11)))
    assert log.fsyncs == 1
    await log.persist(Ready(entries=(Entry(term=2, index=12, data=b"last"),)))
    assert log.fsyncs == 2
    await log.close()
    again = await asyncio.to_thread(DurableLog.open, tmp_path, (1, 2, 3))
    assert again.memory.last_index() == 12 and again.memory.hard_state == HardState(term=2, vote=1, commit=11)
    assert again.memory.entries(2, 13, 1 << 20)[-1].data == b"last"
    # The core can start on it.
    node = RawNode(Config(id=1), again.memory, __import__("random").Random(1))
    assert node.term == 2
    await again.close()
