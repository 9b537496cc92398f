"""Snapshots of the coordination state: msgpack, deterministic (equal states give equal bytes), checked on load.

Stored: the nodes in path order, the sessions by id, the remembered client results in least-recently-used order,
the event history, and the counters (revision, applied index, leader epoch, next session id). Derived indexes
(children lists, each session's ephemerals, client-to-session bindings) are rebuilt on load.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

import msgspec

from feitian.coord.core.dedupe import ClientRecord, DedupeTable
from feitian.coord.core.events import Event, EventHistory
from feitian.coord.core.limits import CoordLimits
from feitian.coord.core.paths import ROOT, other_kind, parent_of
from feitian.coord.core.sessions import SessionRecord, SessionTable
from feitian.coord.core.tree import Node, Tree
from feitian.errors import DataCorruptionError, FeitianError

__all__ = ["SNAPSHOT_FORMAT", "decode_snapshot", "encode_snapshot"]

# 2: the retried-write table keys clients by principal and fingerprints requests. A format-1 snapshot's table
# would answer retries differently from replicas that replayed the same entries, so it is refused, not read.
SNAPSHOT_FORMAT = 2


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
    nodes: list[NodeRecord]
    sessions: list[SessionRecord]
    clients: list[ClientRecord]
    compacted_through: int
    history: list[tuple[Event, ...]]


class _Source(Protocol):
    tree: Tree
    sessions: SessionTable
    dedupe: DedupeTable
    history: EventHistory
    revision: int
    applied_index: int
    leader_epoch: int


@dataclass
class Restored:
    tree: Tree
    sessions: SessionTable
    dedupe: DedupeTable
    history: EventHistory
    revision: int
    applied_index: int
    leader_epoch: int


_LOADED = NodeRecord("", b"", "", 0, 0, 0, 0, 0)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


def encode_snapshot(state: _Source) -> bytes:
    nodes = [
        NodeRecord(
            n.path, n.value, n.creator, n.create_revision, n.mod_revision, n.version, n.ephemeral_owner, n.sequence
        )
        for n in sorted(state.tree.nodes.values(), key=lambda n: n.path)
    ]
    compacted_through, groups = state.history.export()
    snapshot = Snapshot(
        format=SNAPSHOT_FORMAT,
        applied_index=state.applied_index,
        revision=state.revision,
        leader_epoch=state.leader_epoch,
        next_session_id=state.sessions.next_id,
        nodes=nodes,
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
    if snapshot.format != SNAPSHOT_FORMAT:
        raise DataCorruptionError(
            f"coord snapshot: format {snapshot.format}, this version reads {SNAPSHOT_FORMAT}",
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
    dedupe = DedupeTable(limits.dedupe_window, limits.max_dedupe_clients)
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
    tree = Tree(limits)
    records = snapshot.nodes
    _expect(bool(records) and records[0].path == ROOT, "the root is missing")
    root = tree.nodes[ROOT]
    root.version, root.sequence = records[0].version, records[0].sequence
    previous = ROOT
    for i in range(1, len(records)):
        record = records[i]
        records[i] = _LOADED  # let the record go as soon as its node exists: restore holds one copy at a time
        _expect(record.path > previous, f"nodes out of order at {record.path}")
        previous = record.path
        _expect(parent_of(record.path) in tree.nodes, f"{record.path} has no parent directory")
        _expect(other_kind(record.path) not in tree.nodes, f"{record.path} exists as both file and directory")
        _expect(
            0 < record.create_revision <= record.mod_revision <= snapshot.revision,
            f"{record.path} has revisions out of range",
        )
        _expect(
            not record.ephemeral_owner or record.ephemeral_owner in sessions,
            f"{record.path} belongs to a session that does not exist",
        )
        node = Node(
            record.path,
            value=record.value,
            creator=sys.intern(record.creator),
            create_revision=record.create_revision,
            mod_revision=record.mod_revision,
            version=record.version,
            ephemeral_owner=record.ephemeral_owner,
            sequence=record.sequence,
        )
        tree.load(node)
    return tree


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise DataCorruptionError(f"coord snapshot: {problem}")
