"""Deliberately broken variants of the services' state machines, to show the service simulation catches them.

A mutant replaces one piece of a pure core for the length of one run (``applied``); it is never used outside the
simulator. ``python -m feitian.testing.sim coord --mutant NAME`` (or ``dfs``) runs one.

* coord ``double-grant``: creating an ephemeral node that another session's ephemeral node already holds
  replaces it instead of failing with AlreadyExistsError — a lock granted twice, the old holder never told.
* coord ``local-clock``: nondeterministic apply: a created node records the replica's own wall clock
  (``time.time_ns()``) in its value, so replicas that applied the same entries hold different states.
* coord ``no-dedupe``: the exactly-once table never finds a retried request, so a retry applies a second time.
* dfs ``early-takeover``: a write lease is taken over by another holder while it is live (the takeover check
  ignores the lease's expiry and grace).
* dfs ``replica-drift``: nondeterministic apply: a new chunk's replica list is kept in a per-process order
  (a set) rather than the leader's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

from feitian.coord.core import CreateOp
from feitian.coord.core import tree as coord_tree
from feitian.dfs.core import ChunkTable
from feitian.dfs.core import namespace as dfs_namespace
from feitian.errors import InvalidArgumentError
from feitian.replica.core import DedupeTable

DOUBLE_GRANT = "double-grant"
LOCAL_CLOCK = "local-clock"
NO_DEDUPE = "no-dedupe"
EARLY_TAKEOVER = "early-takeover"
REPLICA_DRIFT = "replica-drift"
SERVICE_MUTANTS: dict[str, tuple[str, ...]] = {
    "coord": (DOUBLE_GRANT, LOCAL_CLOCK, NO_DEDUPE),
    "dfs": (EARLY_TAKEOVER, REPLICA_DRIFT),
}

_real_create = coord_tree.Tree.create
_real_table_add = ChunkTable.add


def _double_grant_create(self: coord_tree.Tree, op: CreateOp, principal: str, session_id: int) -> Any:
    existing = self.nodes.get(op.path)
    if op.ephemeral and not op.sequential and existing is not None and existing.ephemeral_owner:
        self._remove(existing)  # the bug: the holder's node is replaced, not refused
    return _real_create(self, op, principal, session_id)


def _local_clock_create(self: coord_tree.Tree, op: CreateOp, principal: str, session_id: int) -> Any:
    op = CreateOp(
        path=op.path,
        value=op.value + str(time.time_ns()).encode(),
        ephemeral=op.ephemeral,
        sequential=op.sequential,
        parents=op.parents,
    )
    return _real_create(self, op, principal, session_id)


def _drifting_add(self: Any, chunk: Any) -> None:
    chunk.replicas = sorted(chunk.replicas, key=lambda s: hash((s, id(self))))  # per-process, per-replica order
    _real_table_add(self, chunk)


@contextlib.contextmanager
def applied(service: str, name: str | None) -> Iterator[None]:
    """Run the block with mutant ``name`` of ``service`` in place of the real code (nothing when None)."""
    if name is None:
        yield
        return
    known = SERVICE_MUTANTS.get(service, ())
    if name not in known:
        raise InvalidArgumentError(f"unknown {service} mutant {name!r}; known: {', '.join(known)}")
    patch: Any
    if name == DOUBLE_GRANT:
        patch = mock.patch.object(coord_tree.Tree, "create", _double_grant_create)
    elif name == LOCAL_CLOCK:
        patch = mock.patch.object(coord_tree.Tree, "create", _local_clock_create)
    elif name == NO_DEDUPE:
        patch = mock.patch.object(DedupeTable, "lookup", lambda self, *args: None)
    elif name == EARLY_TAKEOVER:
        patch = mock.patch.object(dfs_namespace, "takeover_blocked", lambda lease, now_ns, config: False)
    else:
        patch = mock.patch.object(ChunkTable, "add", _drifting_add)
    with patch:
        yield
