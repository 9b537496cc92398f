"""The coordination tree and its journaled mutations (NUWA-2, NUWA-4).

Every mutation goes through ``_add`` / ``_remove`` / an undo-recorded field change inside a
``begin(revision)`` ... ``commit()`` or ``rollback()`` bracket, so a command — a transaction, a create with
``parents``, a session's expiry — either applies completely or leaves no trace, and yields one event per
changed node.
"""

from __future__ import annotations

import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

import msgspec
from sortedcontainers import SortedList

from feitian.coord.core.commands import CheckOp, CreateOp, DeleteOp, SetOp
from feitian.coord.core.events import Event, EventKind
from feitian.coord.core.limits import CoordLimits
from feitian.coord.core.paths import (
    MAX_SEQUENCE,
    ROOT,
    ancestors,
    is_directory,
    other_kind,
    parent_of,
    sequential_path,
    validate_path,
)
from feitian.coord.core.results import Checked, Created, Deleted, NodeStat, Updated
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
)

__all__ = ["Node", "Tree"]


# A directory's entries are kept in a tuple while it has at most this many (a tuple of strings is not tracked by
# the cyclic garbage collector, and costs 8 bytes an entry), and in a SortedList when it has more (inserting into
# a big tuple copies it; a list's insert moves half of it): O(log n) inserts and deletes in directories of
# millions of entries.
SMALL_DIRECTORY = 32

Children = tuple[str, ...] | SortedList[str]


def empty_entries(path: str) -> tuple[()] | None:
    """What a new node's ``children`` start as: no entries for a directory, None for a file."""
    return () if path.endswith("/") else None


def _bisect_left(children: Children, path: str) -> int:
    return children.bisect_left(path) if isinstance(children, SortedList) else bisect_left(children, path)


def _bisect_right(children: Children, path: str) -> int:
    return children.bisect_right(path) if isinstance(children, SortedList) else bisect_right(children, path)


class Node(msgspec.Struct, gc=False):
    """One node of the tree. Never part of a reference cycle, so the cyclic garbage collector does not track it
    (``gc=False``): a tree of millions of nodes costs a full collection nothing. ``children`` holds a directory's
    entries as their full paths, sorted (the same string objects as the keys of ``Tree.nodes``, and path order
    is name order within a directory): a tuple while small, a SortedList past ``SMALL_DIRECTORY``; None for a
    file."""

    path: str
    value: bytes = b""
    creator: str = ""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 1
    ephemeral_owner: int = 0
    sequence: int = 0
    children: Children | None = None  # () for an empty directory: give it when making one (see empty_entries)

    def stat(self) -> NodeStat:
        return NodeStat(
            path=self.path,
            creator=self.creator,
            create_revision=self.create_revision,
            mod_revision=self.mod_revision,
            version=self.version,
            ephemeral_owner=self.ephemeral_owner,
            value_bytes=len(self.value),
            children=0 if self.children is None else len(self.children),
            sequence=self.sequence,
        )


class Tree:
    def __init__(self, limits: CoordLimits) -> None:
        self.limits = limits
        self.nodes: dict[str, Node] = {ROOT: Node(ROOT, children=())}
        self.ephemerals: dict[int, set[str]] = {}  # session id -> paths of its ephemeral nodes
        self._revision = 0  # the revision mutations are stamped with (between begin and commit)
        self._undo: list[Callable[[], None]] | None = None
        self._events: list[Event] = []

    # -- the journal ---------------------------------------------------------------------------------------------

    def begin(self, revision: int) -> None:
        if self._undo is not None:
            raise InternalError("coord tree: begin inside an open journal")
        self._revision = revision
        self._undo = []
        self._events = []

    def commit(self) -> tuple[Event, ...]:
        """Close the journal and return the events of what changed (empty if nothing did)."""
        events = tuple(self._events)
        self._undo, self._events = None, []
        return events

    def rollback(self) -> None:
        undo, self._undo, self._events = self._undo or [], None, []
        for step in reversed(undo):
            step()

    def _record(self, step: Callable[[], None]) -> None:
        if self._undo is None:
            raise InternalError("coord tree: mutation outside a journal")
        self._undo.append(step)

    def _add(self, node: Node) -> None:
        self._link(node)
        self._record(lambda: self._unlink(node))
        self._events.append(Event(self._revision, EventKind.CREATED, node.path))

    def _remove(self, node: Node) -> None:
        self._unlink(node)
        self._record(lambda: self._link(node))
        self._events.append(Event(self._revision, EventKind.DELETED, node.path))

    @staticmethod
    def set_entries(directory: Node, paths: list[str]) -> None:
        """Give ``directory`` its entries at once (``paths`` sorted: restoring a snapshot)."""
        directory.children = tuple(paths) if len(paths) <= SMALL_DIRECTORY else SortedList(paths)

    def _link(self, node: Node) -> None:
        path = node.path
        self.nodes[path] = node
        parent = self.nodes[parent_of(path)]
        siblings = parent.children
        assert siblings is not None
        if isinstance(siblings, SortedList):
            siblings.add(path)
        elif len(siblings) < SMALL_DIRECTORY:
            at = bisect_left(siblings, path)
            parent.children = (*siblings[:at], path, *siblings[at:])
        else:
            parent.children = SortedList((*siblings, path))
        if node.ephemeral_owner:
            self.ephemerals.setdefault(node.ephemeral_owner, set()).add(path)

    def _unlink(self, node: Node) -> None:
        path = node.path
        del self.nodes[path]
        parent = self.nodes[parent_of(path)]
        siblings = parent.children
        assert siblings is not None
        if isinstance(siblings, SortedList):
            siblings.remove(path)
            if len(siblings) <= SMALL_DIRECTORY // 2:
                parent.children = tuple(siblings)
        else:
            at = bisect_left(siblings, path)
            parent.children = siblings[:at] + siblings[at + 1 :]
        if node.ephemeral_owner:
            owned = self.ephemerals[node.ephemeral_owner]
            owned.discard(node.path)
            if not owned:
                del self.ephemerals[node.ephemeral_owner]

    # -- lookups -------------------------------------------------------------------------------------------------

    def require(self, op: str, path: str) -> Node:
        node = self.nodes.get(path)
        if node is not None:
            return node
        if path != ROOT and other_kind(path) in self.nodes:
            kind = "directory" if is_directory(other_kind(path)) else "file"
            raise NotFoundError(
                f"{op} {path}: node does not exist ({other_kind(path)} is a {kind})",
                path=path,
                hint=f"use {other_kind(path)}",
            )
        raise NotFoundError(f"{op} {path}: node does not exist", path=path)

    def _require_free(self, path: str, target: str) -> None:
        existing = self.nodes.get(path) or self.nodes.get(other_kind(path))
        if existing is not None:
            owner = f" (owner session {existing.ephemeral_owner:#x})" if existing.ephemeral_owner else ""
            if existing.path == target:
                message = f"create {target}: node already exists{owner}"
            else:
                message = f"create {target}: {existing.path} already exists{owner}"
            raise AlreadyExistsError(message, path=existing.path, owner_session=existing.ephemeral_owner)
        if len(self.nodes) >= self.limits.max_nodes:
            raise OverloadedError(f"create {target}: the tree holds {len(self.nodes)} nodes (the limit)", path=target)

    # -- operations ----------------------------------------------------------------------------------------------

    def create(self, op: CreateOp, principal: str, session_id: int) -> Created:
        revision, target = self._revision, op.path
        parent_path = parent_of(target)
        made: list[str] = []
        if parent_path not in self.nodes:
            if not op.parents:
                blocked = other_kind(parent_path) in self.nodes
                detail = f" ({other_kind(parent_path)} is a file)" if blocked else ""
                raise NotFoundError(
                    f"create {target}: parent directory {parent_path} does not exist{detail}",
                    path=target,
                    parent=parent_path,
                )
            for directory in ancestors(target):
                if directory not in self.nodes:
                    self._require_free(directory, target)
                    self._add(
                        Node(
                            directory,
                            creator=sys.intern(principal),
                            create_revision=revision,
                            mod_revision=revision,
                            children=(),
                        )
                    )
                    made.append(directory)
        parent = self.nodes[parent_path]
        if op.sequential:
            sequence = parent.sequence
            if sequence > MAX_SEQUENCE:
                raise ConflictError(f"create {target}: the sequence numbers of {parent_path} are exhausted")
            parent.sequence = sequence + 1
            self._record(lambda: setattr(parent, "sequence", sequence))
            target = sequential_path(target, sequence)
            validate_path("create", target, self.limits)
        self._require_free(target, target)
        owner = session_id if op.ephemeral else 0
        if owner and len(self.ephemerals.get(owner, ())) >= self.limits.max_ephemerals_per_session:
            raise InvalidArgumentError(
                f"create {target}: session {owner:#x} already owns {self.limits.max_ephemerals_per_session} "
                "ephemeral nodes (the limit)",
                path=target,
                limit=self.limits.max_ephemerals_per_session,
            )
        node = Node(
            target,
            value=op.value,
            children=empty_entries(target),
            creator=sys.intern(principal),  # one string per principal, not one per node
            create_revision=revision,
            mod_revision=revision,
            ephemeral_owner=owner,
        )
        self._add(node)
        return Created(revision=revision, stat=node.stat(), parents=tuple(made))

    def set(self, op: SetOp) -> Updated:
        node = self.require("set", op.path)
        if op.expected_version is not None and op.expected_version != node.version:
            raise ConflictError(
                f"set {op.path}: version {op.expected_version} expected, found {node.version}",
                path=op.path,
                expected=op.expected_version,
                found=node.version,
            )
        before = (node.value, node.version, node.mod_revision)

        def undo() -> None:
            node.value, node.version, node.mod_revision = before

        node.value, node.version, node.mod_revision = op.value, node.version + 1, self._revision
        self._record(undo)
        self._events.append(Event(self._revision, EventKind.CHANGED, node.path))
        return Updated(revision=self._revision, stat=node.stat())

    def delete(self, op: DeleteOp) -> Deleted:
        node = self.require("delete", op.path)
        if op.expected_version is not None and op.expected_version != node.version:
            raise ConflictError(
                f"delete {op.path}: version {op.expected_version} expected, found {node.version}",
                path=op.path,
                expected=op.expected_version,
                found=node.version,
            )
        if node.children:
            n = len(node.children)
            raise ConflictError(
                f"delete {op.path}: directory not empty ({n} {'entry' if n == 1 else 'entries'})",
                path=op.path,
                children=n,
                hint="delete its entries first",
            )
        stat = node.stat()
        self._remove(node)
        return Deleted(revision=self._revision, stat=stat)

    def check(self, op: CheckOp) -> Checked:
        node = self.nodes.get(op.path)
        if not op.exists:
            if node is not None:
                raise ConflictError(
                    f"check {op.path}: node exists, expected none", path=op.path, expected="missing", found="exists"
                )
            return Checked(path=op.path)
        if node is None:
            raise ConflictError(
                f"check {op.path}: node does not exist", path=op.path, expected="exists", found="missing"
            )
        for field, wanted in (
            ("version", op.version),
            ("create_revision", op.create_revision),
            ("mod_revision", op.mod_revision),
        ):
            found = getattr(node, field)
            if wanted is not None and wanted != found:
                raise ConflictError(
                    f"check {op.path}: {field} {wanted} expected, found {found}",
                    path=op.path,
                    field=field,
                    expected=wanted,
                    found=found,
                )
        return Checked(path=op.path)

    def delete_ephemerals(self, session_id: int) -> tuple[str, ...]:
        paths = tuple(sorted(self.ephemerals.get(session_id, ())))
        for path in paths:
            self._remove(self.nodes[path])
        return paths

    # -- reads ---------------------------------------------------------------------------------------------------

    def children_page(self, directory: Node, start_after: str, limit: int) -> tuple[list[NodeStat], bool]:
        """Entries of ``directory`` after the path ``start_after`` ("" from the start), at most ``limit``."""
        paths = directory.children or ()
        if not start_after or start_after < directory.path:
            first = 0
        elif start_after.startswith(directory.path):
            first = _bisect_right(paths, start_after)
        else:
            first = len(paths)
        page = paths[first : first + limit]
        return [self.nodes[path].stat() for path in page], first + limit < len(paths)

    def walk(self, directory: str, start_after: str, limit: int) -> tuple[list[NodeStat], bool]:
        """The subtree of ``directory`` (itself included) in path order, after ``start_after``, at most ``limit``."""
        if not start_after or start_after < directory:
            nodes = self._walk(directory, "", include_self=True)
        elif start_after.startswith(directory) and start_after != directory:
            nodes = self._walk(directory, start_after, include_self=False)
        elif start_after == directory:
            nodes = self._walk(directory, "", include_self=False)
        else:
            return [], False
        out: list[NodeStat] = []
        for node in nodes:
            if len(out) == limit:
                return out, True
            out.append(node.stat())
        return out, False

    def _walk(self, directory: str, after: str, *, include_self: bool) -> Iterator[Node]:
        # Children are sorted by name with a directory's trailing "/", so depth-first order is path order.
        node = self.nodes[directory]
        if include_self:
            yield node
        paths = node.children or ()
        index = 0
        if after:  # a path strictly inside this directory's subtree
            first, slash, _ = after[len(directory) :].partition("/")
            if slash:
                sub = directory + first + "/"
                index = _bisect_left(paths, sub)
                if index < len(paths) and paths[index] == sub:
                    yield from self._walk(sub, "" if after == sub else after, include_self=False)
                    index += 1
            else:
                index = _bisect_right(paths, directory + first)
        for path in paths.islice(index) if isinstance(paths, SortedList) else paths[index:]:
            child = self.nodes[path]
            if child.children is None:
                yield child
            else:
                yield from self._walk(child.path, "", include_self=True)
