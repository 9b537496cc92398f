"""The kit's exactly-once core (replica/core/dedupe.py): a retried write gets its first result, for any service."""

from __future__ import annotations

import msgspec
import pytest

from feitian.coord.core import CoordStateMachine, CreateNode, CreateSession, StartLeaderTerm
from feitian.coord.core.results import StoredResult
from feitian.errors import InvalidArgumentError
from feitian.replica.core import ClientRecord, DedupeTable, StoredEntry


class Result(msgspec.Struct, frozen=True):
    value: int


def test_a_retry_gets_the_first_result_and_a_new_seq_is_new() -> None:
    table: DedupeTable[Result] = DedupeTable(window=4, max_clients=10)
    assert table.lookup("put", "alice", "c1", 1, fingerprint=7) is None
    table.remember("alice", "c1", 1, 0, Result(41), fingerprint=7)
    assert table.lookup("put", "alice", "c1", 1, fingerprint=7) == Result(41)
    assert table.lookup("put", "alice", "c1", 2, fingerprint=8) is None


def test_another_principal_with_the_same_client_id_is_another_client() -> None:
    table: DedupeTable[Result] = DedupeTable(window=4, max_clients=10)
    table.remember("alice", "c1", 1, 0, Result(1), fingerprint=7)
    assert table.lookup("put", "bob", "c1", 1, fingerprint=7) is None


def test_a_seq_reused_for_another_request_is_refused() -> None:
    table: DedupeTable[Result] = DedupeTable(window=4, max_clients=10)
    table.remember("alice", "c1", 1, 0, Result(1), fingerprint=7)
    with pytest.raises(InvalidArgumentError, match="already used for a different request"):
        table.lookup("put", "alice", "c1", 1, fingerprint=8)


def test_a_retry_older_than_the_window_is_refused_not_applied_again() -> None:
    table: DedupeTable[Result] = DedupeTable(window=2, max_clients=10)
    for seq in (1, 2, 3):
        table.remember("alice", "c1", seq, 0, Result(seq), fingerprint=seq)
    with pytest.raises(InvalidArgumentError, match="outcome is unknown"):
        table.lookup("put", "alice", "c1", 1, fingerprint=1)
    assert table.lookup("put", "alice", "c1", 3, fingerprint=3) == Result(3)


def test_the_least_recently_used_client_is_forgotten_beyond_the_bound() -> None:
    table: DedupeTable[Result] = DedupeTable(window=2, max_clients=2)
    table.remember("alice", "a", 1, 0, Result(1), fingerprint=1)
    table.remember("alice", "b", 1, 0, Result(2), fingerprint=1)
    table.lookup("put", "alice", "a", 1, fingerprint=1)  # a is used again: b is now the oldest
    table.remember("alice", "c", 1, 0, Result(3), fingerprint=1)
    assert [r.client_id for r in table.clients.values()] == ["a", "c"]


def test_results_made_under_a_session_go_with_it() -> None:
    table: DedupeTable[Result] = DedupeTable(window=4, max_clients=10)
    table.remember("alice", "c1", 1, 5, Result(1), fingerprint=1)
    table.remember("alice", "c1", 2, 0, Result(2), fingerprint=2)
    table.forget_session(5)
    assert table.lookup("put", "alice", "c1", 1, fingerprint=1) is None
    assert table.lookup("put", "alice", "c1", 2, fingerprint=2) == Result(2)


def test_a_table_round_trips_through_a_snapshot_in_order() -> None:
    table: DedupeTable[Result] = DedupeTable(window=4, max_clients=10)
    table.remember("alice", "a", 1, 3, Result(1), fingerprint=1)
    table.remember("bob", "b", 1, 0, Result(2), fingerprint=2)
    data = msgspec.msgpack.encode(list(table.clients.values()))
    restored: DedupeTable[Result] = DedupeTable(window=4, max_clients=10)
    restored.restore(msgspec.msgpack.decode(data, type=list[ClientRecord[Result]]))
    assert list(restored.clients) == list(table.clients) and restored.by_session == {3: set(table.by_session[3])}
    assert restored.lookup("put", "bob", "b", 1, fingerprint=2) == Result(2)


# The table's records as Nuwa's snapshots held them before the table moved into the kit (coord/core/dedupe.py):
# the kit's generic records must encode to the same bytes, so those snapshots still load.
class _OldStoredEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    session_id: int
    result: StoredResult
    fingerprint: int = 0


class _OldClientRecord(msgspec.Struct, kw_only=True):
    client_id: str
    principal: str = ""
    floor: int = 0
    results: dict[int, _OldStoredEntry] = msgspec.field(default_factory=dict)


def test_nuwa_snapshots_written_before_the_move_still_load() -> None:
    sm = CoordStateMachine()
    sm.apply_command(1, CreateSession(principal="alice", client_id="c", request_seq=1, ttl_ms=5_000))
    sm.apply_command(2, StartLeaderTerm(epoch=2))
    sm.apply_command(3, CreateNode(principal="alice", path="/a", value=b"x", client_id="c", request_seq=2))
    records = list(sm.dedupe.clients.values())
    old = [
        _OldClientRecord(
            client_id=r.client_id,
            principal=r.principal,
            floor=r.floor,
            results={s: _OldStoredEntry(e.session_id, e.result, e.fingerprint) for s, e in r.results.items()},
        )
        for r in records
    ]
    assert msgspec.msgpack.encode(old) == msgspec.msgpack.encode(records)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=list[ClientRecord[StoredResult]]) == records
    restored = CoordStateMachine()
    restored.restore(sm.snapshot())
    assert [r.client_id for r in restored.dedupe.clients.values()] == ["c"]
    entry = next(iter(restored.dedupe.clients.values())).results[2]
    assert isinstance(entry, StoredEntry) and entry == records[0].results[2]


def test_the_smallest_seq_is_evicted_whatever_the_order_writes_arrived_in() -> None:
    """Writes in flight commit out of order: the window keeps the newest sequence numbers, not the newest
    arrivals, and a session's results forgotten on the way are skipped."""
    table: DedupeTable[Result] = DedupeTable(window=3, max_clients=10)
    for seq in (5, 2, 4, 3):
        table.remember("alice", "c1", seq, 0, Result(seq), fingerprint=seq)
    record = table.clients[next(iter(table.clients))]
    assert sorted(record.results) == [3, 4, 5] and record.floor == 2
    table.remember("alice", "c1", 6, 9, Result(6), fingerprint=6)  # written under session 9
    table.remember("alice", "c1", 7, 0, Result(7), fingerprint=7)
    assert sorted(record.results) == [5, 6, 7] and record.floor == 4
    table.forget_session(9)  # 6 goes with its session
    record = table.clients[next(iter(table.clients))]
    for seq in (9, 8, 10):
        table.remember("alice", "c1", seq, 0, Result(seq), fingerprint=seq)
    assert sorted(record.results) == [8, 9, 10] and record.floor == 7
    with pytest.raises(InvalidArgumentError, match="older than the last 3 writes"):
        table.lookup("put", "alice", "c1", 6, fingerprint=6)
    assert table.by_session == {}


def test_a_large_window_keeps_exactly_its_newest_writes() -> None:
    table: DedupeTable[Result] = DedupeTable(window=1024, max_clients=10)
    seqs = list(range(1, 5001))
    for i in range(0, len(seqs), 8):  # batches of 8 arriving in reverse: out of order, as in flight
        for seq in reversed(seqs[i : i + 8]):
            table.remember("alice", "c1", seq, 0, Result(seq), fingerprint=seq)
    record = table.clients[next(iter(table.clients))]
    assert sorted(record.results) == seqs[-1024:] and record.floor == 5000 - 1024
