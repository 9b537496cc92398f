"""Pieces of Nuwa's client and service that need no replicas: the resource a transaction is authorized on,
selectors from paths, lock contender ordering, transaction operations from the CLI's JSON."""

from __future__ import annotations

import asyncio

import pytest

from feitian.cli.coord import parse_ops
from feitian.coord.client.recipes.lock import contenders
from feitian.coord.client.watch import selector_for
from feitian.coord.core import CheckOp, CreateOp, DeleteOp, NodeStat, Selector, SetOp
from feitian.coord.messages import TXN_RULE, SetRequest, StatusRequest, TxnRequest
from feitian.errors import InvalidArgumentError, NotLeaderError, UnavailableError
from feitian.replica.router import Router
from feitian.security.core import Right


def test_a_transaction_needs_for_each_operation_the_right_it_would_need_alone() -> None:
    request = TxnRequest(
        ops=(
            CheckOp(path="/a/c"),
            CreateOp(path="/a/n"),
            SetOp(path="/b/s", value=b""),
            DeleteOp(path="/a/d"),
        )
    )
    assert TXN_RULE.each is not None
    needed = [(rule.right, rule.resource_for(op)) for rule, op in TXN_RULE.each(request)]
    assert needed == [
        (Right.READ, "coord:/a/c"),
        (Right.CREATE, "coord:/a/n"),
        (Right.WRITE, "coord:/b/s"),
        (Right.DELETE, "coord:/a/d"),
    ]


def test_selectors_from_paths() -> None:
    assert selector_for("/a/b") == Selector.node("/a/b")
    assert selector_for("/a/") == Selector.children("/a/")
    assert selector_for("/a/", recursive=True) == Selector.subtree("/a/")
    assert selector_for(Selector.node("/x")) == Selector.node("/x")
    with pytest.raises(InvalidArgumentError):
        selector_for("/a", recursive=True)


def stat(path: str, revision: int) -> NodeStat:
    return NodeStat(path=path, creator="t", create_revision=revision, mod_revision=revision, version=1)


def test_contenders_rank_by_sequence_across_kinds_and_ignore_other_entries() -> None:
    children = [
        stat("/l/lock-0000000003", 9),
        stat("/l/read-0000000001", 7),
        stat("/l/notes", 5),
        stat("/l/candidate-0000000002", 8),
        stat("/l/lock-12", 4),
    ]
    assert [(seq, kind) for seq, kind, _ in contenders("/l/", children)] == [
        (1, "read"),
        (2, "candidate"),
        (3, "lock"),
    ]


def test_transaction_operations_from_json() -> None:
    ops = parse_ops(
        '[{"op": "check", "path": "/a", "version": 2}, {"op": "set", "path": "/a", "value": "x", "version": 2},'
        ' {"op": "create", "path": "/b", "value": "y", "parents": true}, {"op": "delete", "path": "/c"}]'
    )
    assert ops == [
        CheckOp(path="/a", version=2),
        SetOp(path="/a", value=b"x", expected_version=2),
        CreateOp(path="/b", value=b"y", parents=True),
        DeleteOp(path="/c"),
    ]
    for bad in (
        "{}",
        "[1]",
        '[{"op": "move", "path": "/a"}]',
        '[{"op": "set", "path": "/a"}]',  # a set without its value
        '[{"op": "create", "path": "/n", "value": null}]',  # not stored as "None"
        '[{"op": "create", "path": "/n", "value": {"a": 1}}]',
        '[{"op": "set", "path": "/a", "value": "x", "version": "1"}]',
        '[{"op": "set", "path": "/a", "value": "x", "versoin": 1}]',  # a misspelt condition
        '[{"op": "check", "path": "/a", "exists": 0}]',
        '[{"op": "create", "path": "/e", "ephemeral": true}]',  # it would die as the command ends
        "not json",
    ):
        with pytest.raises(InvalidArgumentError):
            parse_ops(bad)


async def test_stale_leader_hints_naming_each_other_pause_the_caller_instead_of_spinning() -> None:
    """Two followers that each name the other as leader (both stale, during an election): following a hint
    counts as a failed attempt, so the router pauses every round instead of bouncing until its deadline."""

    class Stale:
        calls = 0

        async def call(self, target: str, request: object, timeout: float) -> object:
            self.calls += 1
            await asyncio.sleep(0)
            raise NotLeaderError("not the leader", leader_hint="tcp://b" if target == "tcp://a" else "tcp://a")

    rpc = Stale()
    router = Router(rpc, ["tcp://a", "tcp://b"], timeout_s=0.3)  # type: ignore[arg-type]
    with pytest.raises(UnavailableError):
        await router.call(StatusRequest(), leader=True)
    assert 2 <= rpc.calls <= 30


async def test_a_write_whose_attempt_may_have_been_applied_gives_up_with_an_unknown_outcome() -> None:
    """A write sent to a leader that then lost its quorum may sit in that leader's log and commit later: when
    the router gives up, it says so (outcome "unknown"); a read that gave up has no such outcome."""

    class LostQuorum:
        async def call(self, target: str, request: object, timeout: float) -> object:
            await asyncio.sleep(0)
            if target == "tcp://a" and isinstance(request, SetRequest):
                raise UnavailableError("leadership lost before the proposal committed", outcome="unknown")
            raise NotLeaderError("not the leader", leader_hint=None)

    router = Router(LostQuorum(), ["tcp://a", "tcp://b"], timeout_s=0.3)  # type: ignore[arg-type]
    with pytest.raises(UnavailableError) as write:
        await router.call(SetRequest(path="/k", value=b"v", client_id="c", request_seq=1), leader=True)
    assert write.value.fields.get("outcome") == "unknown" and "may still be applied" in write.value.message
    with pytest.raises(UnavailableError) as read:
        await router.call(StatusRequest(), leader=True)
    assert "outcome" not in read.value.fields
