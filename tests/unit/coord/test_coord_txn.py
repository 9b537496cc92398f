"""Transactions: ordered operations under conditions, all or nothing, one revision."""

from __future__ import annotations

import pytest
from coord_fixtures import ALICE, Harness, fingerprint

from feitian.coord.core import (
    Checked,
    CheckOp,
    CoordLimits,
    Created,
    CreateOp,
    Deleted,
    DeleteOp,
    SetOp,
    Transaction,
    TxnCommitted,
    Updated,
)
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotFoundError,
)


def txn(*ops: CreateOp | SetOp | DeleteOp | CheckOp, **kw: object) -> Transaction:
    return Transaction(principal=ALICE, ops=ops, **kw)  # type: ignore[arg-type]


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.create("/d/")
    h.create("/d/a", b"1")
    return h


def test_a_transaction_applies_in_order_at_one_revision(h: Harness) -> None:
    result = h.ok(
        txn(
            CheckOp(path="/d/a", version=1, create_revision=2, mod_revision=2),
            CreateOp(path="/d/b", value=b"b"),
            SetOp(path="/d/b", value=b"bb", expected_version=1),
            DeleteOp(path="/d/a", expected_version=1),
            CreateOp(path="/d/q-", sequential=True),
        ),
        TxnCommitted,
    )
    assert result.revision == 3 == h.sm.revision
    kinds = [type(r) for r in result.results]
    assert kinds == [Checked, Created, Updated, Deleted, Created]
    assert all(r.revision == 3 for r in result.results if not isinstance(r, Checked))
    assert h.sm.get("/d/b").value == b"bb" and h.sm.get("/d/b").stat.version == 2
    assert h.sm.list("/d/").children[-1].path == "/d/q-0000000000"
    events = h.sm.events_since(2)
    assert [(e.kind, e.path) for e in events.events] == [  # type: ignore[union-attr]
        ("created", "/d/b"),
        ("changed", "/d/b"),
        ("deleted", "/d/a"),
        ("created", "/d/q-0000000000"),
    ]


@pytest.mark.parametrize(
    ("failing", "error_type", "fragment"),
    [
        (CheckOp(path="/d/a", version=7), ConflictError, "check /d/a: version 7 expected, found 2"),
        (CheckOp(path="/d/a", create_revision=9), ConflictError, "create_revision 9 expected, found 2"),
        (CheckOp(path="/d/a", mod_revision=9), ConflictError, "mod_revision 9 expected"),
        (CheckOp(path="/d/zz"), ConflictError, "check /d/zz: node does not exist"),
        (CheckOp(path="/d/a", exists=False), ConflictError, "check /d/a: node exists"),
        (CreateOp(path="/d/a"), AlreadyExistsError, "create /d/a: node already exists"),
        (SetOp(path="/d/zz", value=b""), NotFoundError, "set /d/zz"),
        (DeleteOp(path="/d/"), ConflictError, "directory not empty"),
    ],
)
def test_any_failure_aborts_everything(h: Harness, failing: object, error_type: type, fragment: str) -> None:
    before = fingerprint(h.sm)
    error = h.apply(
        txn(
            CreateOp(path="/d/new", value=b"x"),
            SetOp(path="/d/a", value=b"changed"),
            CreateOp(path="/d/seq-", sequential=True),
            failing,  # type: ignore[arg-type]
            CreateOp(path="/d/never"),
        )
    )
    assert isinstance(error, error_type)
    assert error.message.startswith("txn op 3: ") and fragment in error.message
    assert error.fields["op_index"] == 3
    assert fingerprint(h.sm) == before  # nodes, sequence counter, revision, history: untouched


def test_checks_see_the_effects_of_earlier_operations(h: Harness) -> None:
    result = h.apply(txn(CreateOp(path="/d/n"), CheckOp(path="/d/n", version=1), CheckOp(path="/d/a", exists=True)))
    assert isinstance(result, TxnCommitted)


def test_a_check_only_transaction_takes_no_revision(h: Harness) -> None:
    result = h.ok(txn(CheckOp(path="/d/a"), CheckOp(path="/d/none", exists=False)), TxnCommitted)
    assert result.revision == 2 == h.sm.revision
    assert result.results == (Checked(path="/d/a"), Checked(path="/d/none"))


def test_fencing_a_write_with_the_lock_nodes_create_revision(h: Harness) -> None:
    session = h.session()
    lock = h.create("/d/lock", ephemeral=True, session_id=session)
    token = lock.stat.create_revision
    fenced = txn(CheckOp(path="/d/lock", create_revision=token), SetOp(path="/d/a", value=b"by holder"))
    assert isinstance(h.apply(fenced), TxnCommitted)
    h.delete("/d/lock")
    other = h.create("/d/lock", ephemeral=True, session_id=session)
    assert other.stat.create_revision > token  # a new holder gets a larger token
    error = h.apply(fenced)
    assert isinstance(error, ConflictError) and error.fields["field"] == "create_revision"


def test_transaction_bounds() -> None:
    h = Harness(CoordLimits(max_txn_ops=2, max_txn_bytes=100))
    error = h.apply(txn(*(CheckOp(path="/") for _ in range(3))))
    assert isinstance(error, InvalidArgumentError) and "3 operations exceed 2" in error.message
    error = h.apply(txn(CreateOp(path="/a", value=b"x" * 100)))
    assert isinstance(error, MessageTooLargeError) and "txn:" in error.message
    assert isinstance(h.apply(txn()), InvalidArgumentError)


def test_an_invalid_operation_is_named_by_index(h: Harness) -> None:
    error = h.apply(txn(CheckOp(path="/d/a"), CreateOp(path="/bad//path")))
    assert isinstance(error, InvalidArgumentError)
    assert error.message.startswith("txn op 1: create /bad//path") and error.fields["op_index"] == 1
    error = h.apply(txn(CheckOp(path="/x", exists=False, version=1)))
    assert isinstance(error, InvalidArgumentError) and "exists=False" in error.message


def test_ephemeral_creates_in_a_transaction_use_its_session(h: Harness) -> None:
    session = h.session()
    result = h.ok(txn(CreateOp(path="/d/e1", ephemeral=True), CreateOp(path="/d/e2"), session_id=session), TxnCommitted)
    assert [r.stat.ephemeral_owner for r in result.results] == [session, 0]  # type: ignore[union-attr]
    assert isinstance(h.apply(txn(CreateOp(path="/d/e3", ephemeral=True))), InvalidArgumentError)
