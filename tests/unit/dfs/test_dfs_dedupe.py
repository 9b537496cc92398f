"""The master's namespace writes are applied once per client request (the kit's dedupe table in the DFS state
machine): a retry, even one proposed by another leader at another time, gets the first result."""

from __future__ import annotations

import msgspec
from dfs_fixtures import Master

from feitian.dfs.core import Delete, DfsStateMachine, Mkdir, MkdirResult
from feitian.dfs.core.namespace import _Snapshot
from feitian.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from feitian.replica.core import RequestKey


def key(seq: int, fingerprint: int = 1, client: str = "c1") -> RequestKey:
    return RequestKey("alice", client, seq, fingerprint)


def test_a_retried_mkdir_gets_its_first_result_not_already_exists() -> None:
    m = Master()
    first = m.ok(Mkdir("/d", m.now, False, key(1)))
    assert isinstance(first, MkdirResult) and first.created
    again = m.apply(Mkdir("/d", m.tick(), False, key(1)))  # proposed later, by another leader: same request
    assert again == first
    assert isinstance(m.apply(Mkdir("/d", m.now, False, key(2))), AlreadyExistsError)  # a new request is new
    m.refused(Mkdir("/d", m.now), AlreadyExistsError)  # and a client that sends no key gets no dedupe


def test_an_error_result_is_remembered_too() -> None:
    m = Master()
    first = m.apply(Delete("/missing", m.now, request=key(1)))
    assert isinstance(first, NotFoundError)
    m.ok(Mkdir("/missing", m.now))
    again = m.apply(Delete("/missing", m.now, request=key(1)))  # the retry does not delete what appeared since
    assert isinstance(again, NotFoundError) and again.message == first.message
    assert m.sm.exists("/missing")


def test_a_sequence_number_reused_for_another_request_is_refused() -> None:
    m = Master()
    m.ok(Mkdir("/a", m.now, False, key(1, fingerprint=1)))
    refused = m.apply(Mkdir("/b", m.now, False, key(1, fingerprint=2)))
    assert isinstance(refused, InvalidArgumentError) and "different request" in refused.message
    assert not m.sm.exists("/b")


def test_the_table_survives_a_snapshot_and_old_snapshots_load() -> None:
    m = Master()
    first = m.ok(Mkdir("/d", m.now, False, key(1)))
    restored = DfsStateMachine(m.sm.config)
    restored.restore(m.sm.snapshot())
    assert restored.apply_command(Mkdir("/d", m.now, False, key(1))) == first
    # A snapshot written before the table existed has no ``clients``: it loads, with an empty table.
    fields = msgspec.msgpack.decode(m.sm.snapshot())
    assert len(fields) == len(_Snapshot.__struct_fields__)
    old = msgspec.msgpack.encode(fields[:-1])
    before = DfsStateMachine(m.sm.config)
    before.restore(old)
    assert before.exists("/d") and len(before.dedupe) == 0
