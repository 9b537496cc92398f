"""Snapshots: an exact round trip, deterministic bytes, and refusal of inconsistent data."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from coord_fixtures import ALICE, BOB, Harness

from feitian.coord.core import (
    CoordStateMachine,
    CreateNode,
    CreateSession,
    ExpireSessions,
    Selector,
    SetNode,
    StartLeaderTerm,
    encode_command,
)
from feitian.coord.core import snapshot as snapshot_module
from feitian.coord.core.snapshot import NodeRecord, Snapshot
from feitian.errors import ConflictError, DataCorruptionError, NotFoundError


def busy() -> Harness:
    h = Harness()
    h.apply(StartLeaderTerm(epoch=3))
    a = h.session()
    b = h.session(principal=BOB)
    h.create("/locks/job-", b"x", ephemeral=True, sequential=True, parents=True, session_id=a)
    h.create("/locks/job-", ephemeral=True, sequential=True, session_id=b, principal=BOB, client_id="b", request_seq=1)
    h.create("/cfg/", client_id="a", request_seq=1, session_id=a)
    h.set("/cfg/missing", b"", client_id="a", request_seq=2)  # an error, remembered
    h.create("/cfg/x", b"1")
    h.set("/cfg/x", b"2")
    h.delete("/locks/job-0000000000")
    return h


def test_round_trip_is_exact() -> None:
    h = busy()
    data = h.sm.snapshot()
    other = CoordStateMachine()
    other.restore(data)
    assert other.snapshot() == data
    assert (other.revision, other.applied_index, other.leader_epoch) == (h.sm.revision, h.sm.applied_index, 3)
    assert other.sessions.next_id == 3
    assert other.list("/locks/") == h.sm.list("/locks/")
    assert other.session(1) == h.sm.session(1)
    assert other.events_since(0) == h.sm.events_since(0)
    assert other.dedupe.by_session == h.sm.dedupe.by_session
    assert other.tree.ephemerals == h.sm.tree.ephemerals
    # ... and it behaves the same afterwards: the remembered error, sequence counters, expiry.
    for command in [
        CreateNode(principal=ALICE, path="/cfg/", client_id="a", request_seq=1, session_id=1),
        CreateNode(principal=ALICE, path="/locks/job-", sequential=True),
        ExpireSessions(session_ids=(1, 2), epoch=3),
        CreateSession(principal=ALICE, ttl_ms=5_000),
    ]:
        index = h.index = h.index + 1
        assert repr(h.sm.apply(index, encode_command(command))) == repr(other.apply(index, encode_command(command)))
    assert other.snapshot() == h.sm.snapshot()


def test_the_remembered_error_survives_as_the_same_error() -> None:
    h = busy()
    other = CoordStateMachine()
    other.restore(h.sm.snapshot())
    retry = other.apply(
        100, encode_command(SetNode(principal=ALICE, path="/cfg/missing", value=b"", client_id="a", request_seq=2))
    )
    assert isinstance(retry, NotFoundError)
    assert retry.message == "set /cfg/missing: node does not exist" and retry.fields == {"path": "/cfg/missing"}


def test_equal_states_give_equal_bytes_whatever_the_history() -> None:
    one, two = Harness(), Harness()
    for path in ["/a", "/b", "/c"]:
        one.create(path)
    for path in ["/c", "/a", "/b"]:
        two.create(path)
    one.sm.history = two.sm.history  # the histories differ by construction; the tree does not
    assert [n.path for n in one.sm.select(Selector.subtree("/")).nodes] == ["/", "/a", "/b", "/c"]
    decoded_one = msgspec.msgpack.decode(one.sm.snapshot(), type=Snapshot)
    decoded_two = msgspec.msgpack.decode(two.sm.snapshot(), type=Snapshot)
    assert [n.path for n in nodes_of(decoded_one)] == [n.path for n in nodes_of(decoded_two)]


def nodes_of(snapshot: Snapshot) -> list[NodeRecord]:
    """The node records of a format-3 snapshot (stored in chunks)."""
    return [r for chunk in snapshot.node_chunks for r in msgspec.msgpack.decode(chunk, type=list[NodeRecord])]


def with_nodes(snapshot: Snapshot, nodes: list[NodeRecord], per_chunk: int = 2) -> Snapshot:
    chunks = [msgspec.msgpack.encode(nodes[i : i + per_chunk]) for i in range(0, len(nodes), per_chunk)]
    return msgspec.structs.replace(snapshot, node_chunks=chunks)


def corrupt(h: Harness, **changes: object) -> bytes:
    snapshot = msgspec.msgpack.decode(h.sm.snapshot(), type=Snapshot)
    return msgspec.msgpack.encode(msgspec.structs.replace(snapshot, **changes))


def _nodes(change: Callable[[list[NodeRecord]], list[NodeRecord]]) -> Callable[[Snapshot], Snapshot]:
    return lambda s: with_nodes(s, change(nodes_of(s)))


def _fields(**changes: Callable[[Snapshot], object]) -> Callable[[Snapshot], Snapshot]:
    return lambda s: msgspec.structs.replace(s, **{k: f(s) for k, f in changes.items()})


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (_fields(format=lambda s: 99), "format 99"),
        (_nodes(lambda n: n[1:]), "root is missing"),
        (_nodes(lambda n: []), "root is missing"),
        (_nodes(lambda n: [*n[:2], n[3], n[2], *n[4:]]), "out of order"),
        (_nodes(lambda n: [*n, NodeRecord("/nowhere/x", b"", "", 1, 1, 1, 0, 0)]), "no parent"),
        (_nodes(lambda n: [*n, NodeRecord("/zz", b"", "", 1, 1, 1, 77, 0)]), "session that does not exist"),
        (_nodes(lambda n: [*n, NodeRecord("/zz", b"", "", 99, 99, 1, 0, 0)]), "revisions out of range"),
        (_fields(node_chunks=lambda s: [*s.node_chunks, b"\xc1"]), "cannot decode node chunk"),
        (_fields(sessions=lambda s: [*s.sessions, s.sessions[0]]), "appears twice"),
        (_fields(next_session_id=lambda s: 1), "out of range"),
        (_fields(revision=lambda s: s.revision + 1), "history ends"),
        (_fields(clients=lambda s: [*s.clients, s.clients[0]]), "client appears twice"),
    ],
)
def test_inconsistent_snapshots_are_refused_and_change_nothing(
    mutate: Callable[[Snapshot], Snapshot], fragment: str
) -> None:
    h = busy()
    snapshot = msgspec.msgpack.decode(h.sm.snapshot(), type=Snapshot)
    bad = msgspec.msgpack.encode(mutate(snapshot))
    target = busy()
    target.create("/only-here")
    before = target.sm.snapshot()
    with pytest.raises(DataCorruptionError, match=fragment):
        target.sm.restore(bad)
    assert target.sm.snapshot() == before


def test_garbage_is_refused() -> None:
    with pytest.raises(DataCorruptionError, match="cannot decode"):
        CoordStateMachine().restore(b"\x00garbage")


def test_a_file_and_directory_of_one_name_in_a_snapshot_are_refused() -> None:
    h = Harness()
    h.create("/a")
    snapshot = msgspec.msgpack.decode(h.sm.snapshot(), type=Snapshot)
    nodes = [*nodes_of(snapshot), NodeRecord("/a/", b"", "", 1, 1, 1, 0, 0)]
    with pytest.raises(DataCorruptionError, match="both file and directory"):
        CoordStateMachine().restore(msgspec.msgpack.encode(with_nodes(snapshot, nodes)))
    assert isinstance(h.set("/a", b"1", expected_version=5), ConflictError)


def test_a_format_2_snapshot_still_loads() -> None:
    """Snapshots written before the nodes were chunked (format 2: one list) load as they are."""
    h = busy()
    snapshot = msgspec.msgpack.decode(h.sm.snapshot(), type=Snapshot)
    old = msgspec.structs.replace(snapshot, format=2, nodes=nodes_of(snapshot), node_chunks=[])
    restored = CoordStateMachine()
    restored.restore(msgspec.msgpack.encode(old))
    assert restored.snapshot() == h.sm.snapshot()


def test_a_snapshot_of_many_chunks_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_module, "NODES_PER_CHUNK", 3)
    h = busy()
    for i in range(20):
        h.create(f"/many/n{i:02d}", parents=True)
    data = h.sm.snapshot()
    assert len(msgspec.msgpack.decode(data, type=Snapshot).node_chunks) > 5
    restored = CoordStateMachine()
    restored.restore(data)
    assert restored.snapshot() == data


def test_release_frees_the_old_tree_in_steps_and_install_brings_the_new_one() -> None:
    h = busy()
    for i in range(20_000):
        h.create(f"/r/n{i:05d}", parents=True)
    data = h.sm.snapshot()
    steps = h.sm.release()
    assert list(h.sm.tree.nodes) == ["/"]  # released at once; the old tree goes as the steps run
    assert sum(1 for _ in steps) >= 2
    h.sm.install(h.sm.prepare_restore(data))
    assert h.sm.snapshot() == data
