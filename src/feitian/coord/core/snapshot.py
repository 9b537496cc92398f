"""Snapshots of the coordination state: msgpack, deterministic (equal states give equal bytes), checked on load.

Stored: the nodes in path order, the sessions by id, the remembered client results in least-recently-used order,
the event history, and the counters (revision, applied index, leader epoch, next session id). Derived indexes
(children lists, each session's ephemerals, client-to-session bindings) are rebuilt on load.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import msgspec

from feitian.coord.core.events import Event, EventHistory
from feitian.coord.core.limits import CoordLimits
from feitian.coord.core.paths import ROOT, other_kind, parent_of
from feitian.coord.core.results import StoredResult
from feitian.coord.core.sessions import SessionRecord, SessionTable
from feitian.coord.core.tree import Node, Tree
from feitian.errors import DataCorruptionError, FeitianError
from feitian.replica.core import ClientRecord, DedupeTable

__all__ = ["SNAPSHOT_FORMAT", "decode_snapshot", "encode_snapshot"]

# 2: the retried-write table keys clients by principal and fingerprints requests. A format-1 snapshot's table
# would answer retries differently from replicas that replayed the same entries, so it is refused, not read.
# 3: the nodes are stored in chunks of NODES_PER_CHUNK records, each its own msgpack, so a large snapshot is
# decoded a piece at a time (a worker thread decoding it lets the event loop run between pieces). Format 2 is
# still read.
SNAPSHOT_FORMAT = 3
READABLE_FORMATS = (2, 3)
NODES_PER_CHUNK = 4096


class NodeRecord(msgspec.Struct, array_like=True, gc=False):
    path: str
    value: bytes
    creator: str
    create_revision: int
    mod_revision: int
    version: int
    ephemeral_owner: int
    sequence: int


class Snapshot(msgspec.Struct, kw_only=True):
    format: int
    applied_index: int
    revision: int
    leader_epoch: int
    next_session_id: int
    nodes: list[NodeRecord] = []  # format 2
    node_chunks: list[bytes] = []  # format 3: each the msgpack of a list of NodeRecords, in path order
    sessions: list[SessionRecord]
    clients: list[ClientRecord[StoredResult]]
    compacted_through: int
    history: list[tuple[Event, ...]]


class _Source(Protocol):
    tree: Tree
    sessions: SessionTable
    dedupe: DedupeTable[StoredResult]
    history: EventHistory
    revision: int
    applied_index: int
    leader_epoch: int


@dataclass
class Restored:
    tree: Tree
    sessions: SessionTable
    dedupe: DedupeTable[StoredResult]
    history: EventHistory
    revision: int
    applied_index: int
    leader_epoch: int


_LOADED = NodeRecord("", b"", "", 0, 0, 0, 0, 0)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)
_chunk_decoder = msgspec.msgpack.Decoder(list[NodeRecord])


def encode_snapshot(state: _Source) -> bytes:
    ordered = sorted(state.tree.nodes.values(), key=lambda n: n.path)
    chunks = []
    for start in range(0, len(ordered), NODES_PER_CHUNK):
        records = [
            NodeRecord(
                n.path, n.value, n.creator, n.create_revision, n.mod_revision, n.version, n.ephemeral_owner, n.sequence
            )
            for n in ordered[start : start + NODES_PER_CHUNK]
        ]
        chunks.append(_encoder.encode(records))
    del ordered
    compacted_through, groups = state.history.export()
    snapshot = Snapshot(
        format=SNAPSHOT_FORMAT,
        applied_index=state.applied_index,
        revision=state.revision,
        leader_epoch=state.leader_epoch,
        next_session_id=state.sessions.next_id,
        node_chunks=chunks,
        sessions=sorted(state.sessions.sessions.values(), key=lambda s: s.session_id),
        clients=list(state.dedupe.clients.values()),
        compacted_through=compacted_through,
        history=groups,
    )
    return _encoder.encode(snapshot)


def decode_snapshot(data: bytes, limits: CoordLimits) -> Restored:
    try:
        snapshot = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DataCorruptionError(f"coord snapshot: cannot decode {len(data)} bytes: {exc}") from None
    if snapshot.format not in READABLE_FORMATS:
        raise DataCorruptionError(
            f"coord snapshot: format {snapshot.format}, this version reads {', '.join(map(str, READABLE_FORMATS))}",
            hint="it was written by another feitian version: start from a backup saved by this version, or a new "
            "data directory",
        )
    sessions = SessionTable(limits)
    for record in snapshot.sessions:
        _expect(record.session_id not in sessions, f"session {record.session_id:#x} appears twice")
        _expect(0 < record.session_id < snapshot.next_session_id, f"session id {record.session_id:#x} out of range")
        sessions.sessions[record.session_id] = record
    sessions.next_id = snapshot.next_session_id
    tree = _restore_tree(snapshot, sessions, limits)
    dedupe: DedupeTable[StoredResult] = DedupeTable(limits.dedupe_window, limits.max_dedupe_clients)
    dedupe.restore(snapshot.clients)
    _expect(len(dedupe.clients) == len(snapshot.clients), "a client appears twice")
    try:
        history = EventHistory.restore(
            limits.history_max_events, limits.history_max_bytes, snapshot.compacted_through, snapshot.history
        )
    except FeitianError as exc:
        raise DataCorruptionError(f"coord snapshot: {exc.message}") from None
    _expect(history.revision == snapshot.revision, f"history ends at {history.revision}, state at {snapshot.revision}")
    return Restored(tree, sessions, dedupe, history, snapshot.revision, snapshot.applied_index, snapshot.leader_epoch)


def _restore_tree(snapshot: Snapshot, sessions: SessionTable, limits: CoordLimits) -> Tree:
    """Rebuild the tree from records in path order, checking each: parents come before their entries (so each
    directory's entries arrive sorted and are set once, at the end), no path is both a file and a directory,
    revisions are in range, owners exist. Each record is let go as soon as its node exists."""
    tree = Tree(limits)
    nodes, ephemerals, revision = tree.nodes, tree.ephemerals, snapshot.revision
    entries: dict[str, list[str]] = {}
    previous = ""
    intern = sys.intern
    for record in _records(snapshot):
        if not previous:
            _expect(record.path == ROOT, "the root is missing")
            root = nodes[ROOT]
            root.version, root.sequence = record.version, record.sequence
            previous = ROOT
            continue
        path, owner = record.path, record.ephemeral_owner
        body = path[:-1] if path.endswith("/") else path
        parent = body[: body.rindex("/") + 1]
        if not (
            path > previous
            and parent in nodes
            and (body if body != path else path + "/") not in nodes
            and 0 < record.create_revision <= record.mod_revision <= revision
            and (not owner or owner in sessions)
        ):
            raise _bad_record(record, previous, nodes, sessions, revision)
        previous = path
        nodes[path] = Node(
            path,
            value=record.value,
            children=() if body != path else None,
            creator=intern(record.creator),
            create_revision=record.create_revision,
            mod_revision=record.mod_revision,
            version=record.version,
            ephemeral_owner=owner,
            sequence=record.sequence,
        )
        listed = entries.get(parent)
        if listed is None:
            entries[parent] = [path]
        else:
            listed.append(path)
        if owner:
            owned = ephemerals.get(owner)
            if owned is None:
                ephemerals[owner] = {path}
            else:
                owned.add(path)
    _expect(bool(previous), "the root is missing")
    for directory, paths in entries.items():
        tree.set_entries(nodes[directory], paths)
    return tree


def _records(snapshot: Snapshot) -> Iterator[NodeRecord]:
    """The node records, a chunk decoded at a time; each is let go once taken (the restore holds one copy)."""
    if snapshot.format == 2:
        records = snapshot.nodes
        for i in range(len(records)):
            record = records[i]
            records[i] = _LOADED
            yield record
        return
    chunks = snapshot.node_chunks
    for i in range(len(chunks)):
        try:
            records = _chunk_decoder.decode(chunks[i])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DataCorruptionError(f"coord snapshot: cannot decode node chunk {i}: {exc}") from None
        chunks[i] = b""
        yield from records


def _bad_record(
    record: NodeRecord, previous: str, nodes: dict[str, Node], sessions: SessionTable, revision: int
) -> DataCorruptionError:
    """Why ``record`` cannot be loaded (found only once a check failed: the happy path formats nothing)."""
    path = record.path
    if path <= previous:
        problem = f"nodes out of order at {path}"
    elif parent_of(path) not in nodes:
        problem = f"{path} has no parent directory"
    elif other_kind(path) in nodes:
        problem = f"{path} exists as both file and directory"
    elif not 0 < record.create_revision <= record.mod_revision <= revision:
        problem = f"{path} has revisions out of range"
    else:
        problem = f"{path} belongs to a session that does not exist"
    return DataCorruptionError(f"coord snapshot: {problem}")


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise DataCorruptionError(f"coord snapshot: {problem}")
