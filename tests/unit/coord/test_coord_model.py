"""The state machine against a deliberately simple model, under random creates, sets, deletes, transactions,
session closes and expiries, retries and snapshot/restore: same visible state, all-or-nothing transactions,
strictly increasing revisions, one event per change, exact resume from any revision (or Compacted)."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

import msgspec
from coord_fixtures import ALICE
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from feitian.coord.core import (
    CheckOp,
    CloseSession,
    Compacted,
    CoordLimits,
    CoordStateMachine,
    CreateNode,
    CreateOp,
    CreateSession,
    DeleteNode,
    DeleteOp,
    EventBatch,
    ExpireSessions,
    Selector,
    SetNode,
    SetOp,
    Transaction,
    encode_command,
)
from feitian.coord.core.paths import ancestors, other_kind, parent_of
from feitian.errors import FeitianError

EXAMPLES = int(os.environ.get("FEITIAN_PROPERTY_EXAMPLES", "200"))
LIMITS = CoordLimits(history_max_events=6, dedupe_window=4)
FILES = ["/a", "/a/x", "/a/y", "/a/b/z", "/c/w", "/q", "/a/s-"]
DIRS = ["/a/", "/a/b/", "/c/", "/a/d-/"]
SELECTORS = [Selector.subtree("/"), Selector.children("/a/"), Selector.subtree("/a/"), Selector.node("/a/x")]


class Refused(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


@dataclass
class MNode:
    value: bytes
    version: int
    create_revision: int
    mod_revision: int
    owner: int = 0
    sequence: int = 0


@dataclass
class Model:
    nodes: dict[str, MNode] = field(default_factory=lambda: {"/": MNode(b"", 1, 0, 0)})
    sessions: set[int] = field(default_factory=set)
    next_session: int = 1
    revision: int = 0
    events: list[tuple[int, str, str]] = field(default_factory=list)


def children(model: Model, directory: str) -> list[str]:
    return [p for p in model.nodes if p != "/" and parent_of(p) == directory]


def static_check(op: Any, session: int) -> None:
    is_dir = op.path.endswith("/")
    if isinstance(op, CreateOp) and ((is_dir and op.value) or (op.ephemeral and (is_dir or not session))):
        raise Refused("InvalidArgumentError")
    if isinstance(op, SetOp) and is_dir:
        raise Refused("InvalidArgumentError")
    if isinstance(op, DeleteOp) and op.path == "/":
        raise Refused("InvalidArgumentError")


def run_op(model: Model, op: Any, session: int, out: list[tuple[str, str]]) -> None:
    rev = model.revision + 1
    nodes = model.nodes
    if isinstance(op, CreateOp):
        path, parent = op.path, parent_of(op.path)
        if parent not in nodes:
            if not op.parents:
                raise Refused("NotFoundError")
            for directory in ancestors(path):
                if directory not in nodes:
                    if other_kind(directory) in nodes:
                        raise Refused("AlreadyExistsError")
                    nodes[directory] = MNode(b"", 1, rev, rev)
                    out.append(("created", directory))
        if op.sequential:
            number = nodes[parent].sequence
            nodes[parent].sequence += 1
            path = f"{path[:-1]}{number:010d}/" if path.endswith("/") else f"{path}{number:010d}"
        if path in nodes or other_kind(path) in nodes:
            raise Refused("AlreadyExistsError")
        nodes[path] = MNode(op.value, 1, rev, rev, session if op.ephemeral else 0)
        out.append(("created", path))
    elif isinstance(op, SetOp):
        node = nodes.get(op.path)
        if node is None:
            raise Refused("NotFoundError")
        if op.expected_version is not None and op.expected_version != node.version:
            raise Refused("ConflictError")
        node.value, node.version, node.mod_revision = op.value, node.version + 1, rev
        out.append(("changed", op.path))
    elif isinstance(op, DeleteOp):
        node = nodes.get(op.path)
        if node is None:
            raise Refused("NotFoundError")
        if op.expected_version is not None and op.expected_version != node.version:
            raise Refused("ConflictError")
        if op.path.endswith("/") and children(model, op.path):
            raise Refused("ConflictError")
        del nodes[op.path]
        out.append(("deleted", op.path))
    else:
        node = nodes.get(op.path)
        if (node is not None) != op.exists or (node and op.version is not None and node.version != op.version):
            raise Refused("ConflictError")


def model_write(model: Model, ops: list[Any], session: int) -> tuple[Model, str | None]:
    """Apply ``ops`` all or nothing; returns the new model and the error class name (None: success)."""
    try:
        for op in ops:
            static_check(op, session)
        if session and session not in model.sessions:
            raise Refused("SessionExpiredError")
        after = copy.deepcopy(model)
        changes: list[tuple[str, str]] = []
        for op in ops:
            run_op(after, op, session, changes)
    except Refused as refused:
        return model, refused.kind
    commit(after, changes)
    return after, None


def commit(model: Model, changes: list[tuple[str, str]]) -> None:
    if changes:
        model.revision += 1
        model.events.extend((model.revision, kind, path) for kind, path in changes)


def end_sessions(model: Model, sessions: list[int]) -> None:
    changes: list[tuple[str, str]] = []
    for session in sorted(s for s in set(sessions) if s in model.sessions):
        for path in sorted(p for p, n in model.nodes.items() if n.owner == session):
            del model.nodes[path]
            changes.append(("deleted", path))
        model.sessions.discard(session)
    commit(model, changes)


values = st.binary(max_size=3)
versions = st.none() | st.integers(1, 3)
files, dirs = st.sampled_from(FILES), st.sampled_from(DIRS)
create_ops = st.one_of(
    st.builds(
        CreateOp,
        path=files,
        value=values,
        ephemeral=st.sampled_from([False, False, True]),
        sequential=st.booleans(),
        parents=st.booleans(),
    ),
    st.builds(CreateOp, path=dirs, sequential=st.booleans(), parents=st.booleans()),
    st.builds(CreateOp, path=dirs, value=values, ephemeral=st.booleans()),  # mostly refused
)
set_ops = st.builds(SetOp, path=files | st.just("/a/"), value=values, expected_version=versions)
delete_ops = st.builds(DeleteOp, path=st.sampled_from(["/", *FILES, *DIRS]), expected_version=versions)
check_ops = st.builds(CheckOp, path=st.sampled_from(FILES + DIRS), exists=st.booleans()).map(
    lambda c: c if c.exists else CheckOp(path=c.path, exists=False)
)
any_op = st.one_of(create_ops, set_ops, delete_ops, check_ops)


class CoordModelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sm = CoordStateMachine(LIMITS)
        self.model = Model()
        self.index = 0
        self.seq = 0
        self.last: tuple[Any, Any] | None = None  # (tagged command, its result)
        self.ended: set[int] = set()  # sessions that ended after the last tagged write

    # -- helpers ---------------------------------------------------------------------------------------------

    def apply(self, command: Any) -> Any:
        self.index += 1
        return self.sm.apply(self.index, encode_command(command))

    def write(self, ops: list[Any], session: int, as_txn: bool, tagged: bool) -> None:
        header: dict[str, Any] = {"principal": ALICE, "session_id": session}
        if tagged:
            self.seq += 1
            header |= {"client_id": "client", "request_seq": self.seq}
        if as_txn:
            command: Any = Transaction(ops=tuple(ops), **header)
        else:
            op = ops[0]
            command = {
                CreateOp: lambda: CreateNode(**header, **msgspec.structs.asdict(op)),
                SetOp: lambda: SetNode(**header, **msgspec.structs.asdict(op)),
                DeleteOp: lambda: DeleteNode(**header, **msgspec.structs.asdict(op)),
            }[type(op)]()
        revision = self.sm.revision
        result = self.apply(command)
        self.model, error = model_write(self.model, ops, session)
        event(f"{'txn' if as_txn else type(ops[0]).__name__}: {error or 'applied'}")
        if error is None:
            assert not isinstance(result, FeitianError), f"{command!r} -> {result!r}"
        else:
            assert type(result).__name__ == error, f"{command!r}: {error} expected, got {result!r}"
        self.check_new_events(revision)
        self.last = (command, result) if tagged else None
        self.ended = set()

    def check_new_events(self, revision: int) -> None:
        got = self.sm.events_since(revision)
        assert isinstance(got, EventBatch)
        expected = [e for e in self.model.events if e[0] > revision]
        assert [(e.revision, e.kind.value, e.path) for e in got.events] == expected

    def session_choice(self, data: st.DataObject) -> int:
        live = sorted(self.model.sessions)
        return data.draw(st.sampled_from([0] * 6 + live * 3 + [self.model.next_session + 5]), "session")

    # -- rules -----------------------------------------------------------------------------------------------

    @initialize()
    def some_directories(self) -> None:
        self.write([CreateOp(path="/a/"), CreateOp(path="/c/")], 0, True, False)

    @rule(data=st.data(), op=st.one_of(create_ops, set_ops, delete_ops), tagged=st.booleans())
    def single(self, data: st.DataObject, op: Any, tagged: bool) -> None:
        self.write([op], self.session_choice(data), False, tagged)

    @rule(data=st.data(), ops=st.lists(any_op, min_size=1, max_size=4), tagged=st.booleans())
    def transaction(self, data: st.DataObject, ops: list[Any], tagged: bool) -> None:
        self.write(ops, self.session_choice(data), True, tagged)

    @precondition(lambda self: len(self.model.nodes) > 1)
    @rule(data=st.data(), value=values, check_version=st.booleans(), delete=st.booleans(), tagged=st.booleans())
    def change_an_existing_node(
        self, data: st.DataObject, value: bytes, check_version: bool, delete: bool, tagged: bool
    ) -> None:
        """Sets and deletes of nodes that exist (random paths mostly miss), alone or guarded by a check."""
        path = data.draw(st.sampled_from(sorted(p for p in self.model.nodes if p != "/")), "existing")
        version = self.model.nodes[path].version
        op: Any = (
            DeleteOp(path=path, expected_version=version)
            if delete or path.endswith("/")
            else SetOp(path=path, value=value)
        )
        if check_version:
            self.write([CheckOp(path=path, version=version), op], self.session_choice(data), True, tagged)
        else:
            self.write([op], self.session_choice(data), False, tagged)

    @rule()
    def create_session(self) -> None:
        result = self.apply(CreateSession(principal=ALICE, ttl_ms=5_000))
        assert result.session_id == self.model.next_session
        self.model.sessions.add(self.model.next_session)
        self.model.next_session += 1

    @precondition(lambda self: self.model.sessions)
    @rule(data=st.data(), close=st.booleans())
    def end_session(self, data: st.DataObject, close: bool) -> None:
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.model.sessions)), min_size=1, max_size=2))
        revision = self.sm.revision
        if close:
            self.apply(CloseSession(principal=ALICE, session_id=chosen[0]))
            end_sessions(self.model, chosen[:1])
        else:
            self.apply(ExpireSessions(session_ids=(*chosen, 999), epoch=0))
            end_sessions(self.model, chosen)
        self.ended.update(chosen if not close else chosen[:1])
        self.check_new_events(revision)

    @precondition(lambda self: self.last is not None)
    @rule()
    def retry_last_write(self) -> None:
        assert self.last is not None
        command, first = self.last
        revision = self.sm.revision
        again = self.apply(command)
        assert self.sm.revision == revision
        if getattr(command, "session_id", 0) in self.ended and type(first).__name__ != "InvalidArgumentError":
            # Its session ended since: the client was forgotten with it, and the retry meets the dead session.
            assert type(again).__name__ == "SessionExpiredError"
            event("retry: session gone")
            return
        assert repr(again) == repr(first) and type(again) is type(first)
        # Refused by validation: refused again the same way, without being remembered.
        assert self.sm.last_applied.duplicate or type(first).__name__ == "InvalidArgumentError"

    @rule()
    def snapshot_and_restore_elsewhere(self) -> None:
        data = self.sm.snapshot()
        replacement = CoordStateMachine(LIMITS)
        replacement.restore(data)
        assert replacement.snapshot() == data
        self.sm = replacement

    @rule(data=st.data(), selector=st.sampled_from(SELECTORS), limit=st.integers(1, 5))
    def resume_from_any_revision(self, data: st.DataObject, selector: Selector, limit: int) -> None:
        since = data.draw(st.integers(0, self.model.revision + 1), "since")
        expected = [e for e in self.model.events if e[0] > since and selector.matches(_event(e))]
        got: list[tuple[int, str, str]] = []
        cursor = since
        while True:
            page = self.sm.events_since(cursor, selector, limit=limit)
            if isinstance(page, Compacted):
                event("resume: compacted")
                assert since < self.sm.history.compacted_through and cursor == since
                assert page.current_revision == self.model.revision
                return
            got.extend((e.revision, e.kind.value, e.path) for e in page.events)
            assert page.through_revision >= cursor
            cursor = page.through_revision
            if not page.more:
                break
        assert got == expected
        event(f"resume: {'some' if got else 'no'} events")

    def teardown(self) -> None:
        event(f"revision reached: {min(self.model.revision // 10 * 10, 50)}+")
        event(f"steps: {min(self.index // 10 * 10, 50)}+")

    # -- invariants ------------------------------------------------------------------------------------------

    @invariant()
    def same_visible_state(self) -> None:
        assert self.sm.revision == self.model.revision
        stats = self.sm.select(Selector.subtree("/"), limit=10_000).nodes
        assert [s.path for s in stats] == sorted(self.model.nodes)
        for stat in stats:
            node = self.model.nodes[stat.path]
            assert (stat.version, stat.create_revision, stat.mod_revision, stat.ephemeral_owner, stat.sequence) == (
                node.version,
                node.create_revision,
                node.mod_revision,
                node.owner,
                node.sequence,
            ), stat
            if not stat.is_directory:
                assert self.sm.get(stat.path).value == node.value
        assert sorted(self.sm.sessions.sessions) == sorted(self.model.sessions)

    @invariant()
    def revisions_strictly_increase_and_are_dense(self) -> None:
        revisions = [e[0] for e in self.model.events]
        assert revisions == sorted(revisions)
        assert sorted(set(revisions)) == list(range(1, self.model.revision + 1))


def _event(entry: tuple[int, str, str]) -> Any:
    from feitian.coord.core import Event, EventKind

    return Event(entry[0], EventKind(entry[1]), entry[2])


CoordModelMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoordModel = CoordModelMachine.TestCase
