"""Issue 17, one error wire form: ErrorInfo carries ``retryable``; an unknown code keeps it; coord's stored error
results are ErrorInfo and still decode what the code before it stored; each class declares its HTTP status;
reasons are declared enums; every code is registered from feitian.errors."""

from __future__ import annotations

import ast
import pathlib
from typing import Any

import msgspec
import pytest

from feitian import errors
from feitian.coord.core.results import Created, ErrorValue, NodeStat, StoredResult
from feitian.coord.messages import WriteBatchReply
from feitian.rpc.core.messages import ErrorInfo

SRC = pathlib.Path(errors.__file__).parent


def all_error_classes() -> list[type[errors.FeitianError]]:
    out, todo = [], [errors.FeitianError]
    while todo:
        klass = todo.pop()
        out.append(klass)
        todo.extend(klass.__subclasses__())
    return out


def wire(info: ErrorInfo) -> ErrorInfo:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(info), type=ErrorInfo)


# -- retryable on the wire, unknown codes -------------------------------------------------------------------------


@pytest.mark.parametrize("klass", all_error_classes())
def test_the_wire_form_carries_retryable(klass: type[errors.FeitianError]) -> None:
    info = wire(ErrorInfo.from_exception(klass("x")))
    assert info.retryable is klass.retryable and info.code == klass.code


def test_an_unknown_retryable_code_stays_retryable_and_keeps_its_code() -> None:
    newer = ErrorInfo(code="quota_rebalancing", message="try later", hint="h", fields={"n": 1}, retryable=True)
    exc = wire(newer).to_exception()
    assert isinstance(exc, errors.UnavailableError) and exc.retryable
    assert exc.wire_code == "quota_rebalancing" and exc.n == 1 and exc.hint == "h"
    # Passed on (a proxy, a REST answer, a stored result): the same code and retryable, not "unavailable".
    again = wire(ErrorInfo.from_exception(exc))
    assert again.code == "quota_rebalancing" and again.retryable is True


@pytest.mark.parametrize("retryable", [False, None])
def test_an_unknown_code_that_is_not_retryable_is_a_plain_error(retryable: bool | None) -> None:
    exc = ErrorInfo(code="from_the_future", message="no", retryable=retryable).to_exception()
    assert type(exc) is errors.FeitianError and not exc.retryable and exc.wire_code == "from_the_future"


def test_an_error_frame_of_an_older_peer_without_retryable_decodes() -> None:
    old = msgspec.msgpack.encode({"type": "kuafu.Error", "code": "not_leader", "message": "m", "hint": None})
    exc = msgspec.msgpack.decode(old, type=ErrorInfo).to_exception()
    assert type(exc) is errors.NotLeaderError and exc.retryable


def test_a_newer_peer_reads_the_new_field_as_an_unknown_one() -> None:
    """An older decoder (no ``retryable`` field) ignores the new key: the frame stays readable for it."""

    class OldErrorInfo(msgspec.Struct, frozen=True, tag="kuafu.Error"):
        code: str
        message: str
        hint: str | None = None
        fields: dict[str, Any] = {}

    data = msgspec.msgpack.encode(ErrorInfo.from_exception(errors.OverloadedError("full", lane="bulk")))
    old = msgspec.msgpack.decode(data, type=OldErrorInfo)
    assert old.code == "overloaded" and old.fields == {"lane": "bulk"}


def test_pickle_keeps_an_unknown_code_and_retryable() -> None:
    import pickle

    exc = ErrorInfo(code="newer", message="m", retryable=True).to_exception()
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, errors.UnavailableError) and back.wire_code == "newer"


# -- coord's stored errors are ErrorInfo; what the code before stored still loads ------------------------------


class _OldErrorValue(msgspec.Struct, frozen=True, kw_only=True, tag="error", tag_field="result"):
    """ErrorValue exactly as the landed code defined it (before it became an ErrorInfo)."""

    code: str
    message: str
    hint: str | None = None
    fields: dict[str, Any] = msgspec.field(default_factory=dict)


class _OldReply(msgspec.Struct, frozen=True, kw_only=True):
    results: tuple[Created | _OldErrorValue, ...]


def _stat() -> NodeStat:
    return NodeStat(path="/a", creator="admin", create_revision=3, mod_revision=3, version=1)


def test_stored_error_results_of_the_old_code_still_decode() -> None:
    """A dedupe table / snapshot / WriteBatch reply written by the landed code decodes with this one."""
    old_error = _OldErrorValue(code="conflict", message="set /a: version 2, not 1", fields={"reason": "no_lease"})
    stored = msgspec.msgpack.encode({"7": old_error, "8": Created(revision=3, stat=_stat())})
    table = msgspec.msgpack.decode(stored, type=dict[str, StoredResult])
    assert isinstance(table["7"], ErrorValue) and isinstance(table["7"], ErrorInfo)
    assert table["7"].retryable is None
    error = table["7"].to_error()
    assert type(error) is errors.ConflictError and error.reason is errors.ConflictReason.NO_LEASE
    assert table["8"] == Created(revision=3, stat=_stat())
    reply = msgspec.msgpack.decode(msgspec.msgpack.encode(_OldReply(results=(old_error,))), type=WriteBatchReply)
    assert reply.results[0].to_error().message == "set /a: version 2, not 1"  # type: ignore[union-attr]


def test_stored_error_results_keep_their_old_encoding_plus_retryable() -> None:
    """The new encoding is the old one with one more key, which the old code ignores when it reads it back."""
    error = errors.NotFoundError("get /a: no such node", hint="h", path="/a")
    new = msgspec.msgpack.decode(msgspec.msgpack.encode(ErrorValue.from_error(error)))
    old = msgspec.msgpack.decode(
        msgspec.msgpack.encode(_OldErrorValue(code="not_found", message=error.message, hint="h", fields={"path": "/a"}))
    )
    assert new == {**old, "retryable": False}
    assert list(new)[: len(old)] == list(old)  # same keys in the same order
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(ErrorValue.from_error(error)), type=_OldErrorValue)
    assert back.code == "not_found" and back.fields == {"path": "/a"}


# -- HTTP status declared by each class ---------------------------------------------------------------------------

# The status table coord/server/rest.py had before each class declared its own (the REST API must answer the same).
_REST_TABLE = {
    "invalid_argument": 400,
    "config": 400,
    "message_too_large": 413,
    "not_found": 404,
    "already_exists": 409,
    "conflict": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "unavailable": 503,
    "not_leader": 503,
    "connection_lost": 503,
    "overloaded": 503,
    "deadline_exceeded": 504,
    "cancelled": 499,
    "session_expired": 410,
    "data_corruption": 500,
    "protocol": 500,
    "internal": 500,
}


@pytest.mark.parametrize("code", sorted(_REST_TABLE))
def test_each_class_declares_the_status_the_rest_api_answered(code: str) -> None:
    klass = errors.error_class_for_code(code)
    assert klass.http_status == _REST_TABLE[code] and klass("x").http_status == _REST_TABLE[code]


def test_classes_added_since_inherit_their_parents_status() -> None:
    assert errors.LogCompactedError.http_status == 404
    assert ErrorInfo(code="newer", message="m", retryable=True).to_exception().http_status == 503
    assert ErrorInfo(code="newer", message="m").to_exception().http_status == 500


# -- declared reasons ---------------------------------------------------------------------------------------------


def test_a_reason_is_its_enum_member_on_both_sides_and_a_string_on_the_wire() -> None:
    exc = errors.ConflictError("write: no lease", reason=errors.ConflictReason.NO_LEASE)
    data = msgspec.msgpack.encode(ErrorInfo.from_exception(exc))
    assert msgspec.msgpack.decode(data)["fields"]["reason"] == "no_lease"  # what an older peer reads
    back = msgspec.msgpack.decode(data, type=ErrorInfo).to_exception()
    assert back.fields["reason"] is errors.ConflictReason.NO_LEASE
    # A string from an older sender becomes the member too; a newer peer's unknown reason stays a string.
    assert errors.ConflictError("x", reason="stale_lease").reason is errors.ConflictReason.STALE_LEASE
    newer = errors.ConflictError("x", reason="lease_moved_to_mars")
    assert newer.reason == "lease_moved_to_mars" and not isinstance(newer.reason, errors.ConflictReason)


def test_security_refusals_pick_their_class_from_the_reason() -> None:
    from feitian.security.core.reasons import Reason, refusal

    assert Reason is errors.AccessReason
    assert type(refusal(Reason.WRONG_PATH, "x")) is errors.PermissionDeniedError
    assert type(refusal(Reason.PROXY_DISABLED, "x")) is errors.PermissionDeniedError
    assert type(refusal(Reason.TLS_REQUIRED, "x")) is errors.UnauthenticatedError
    assert refusal(Reason.EXPIRED, "x").fields["reason"] is Reason.EXPIRED


def test_subclasses_share_their_category_reasons() -> None:
    assert errors.NotLeaderError.Reason is errors.UnavailableReason
    assert errors.OverloadedError("x", reason="replay_cache_full").reason is errors.UnavailableReason.REPLAY_CACHE_FULL
    assert errors.PermissionDeniedError.Reason is errors.UnauthenticatedError.Reason is errors.AccessReason


def _reason_literals() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.keyword) and node.arg == "reason"):
                continue
            values = [node.value]
            while values:  # the value, and both branches of a conditional expression
                value = values.pop()
                if isinstance(value, ast.IfExp):
                    values += [value.body, value.orelse]
                elif isinstance(value, ast.Constant | ast.JoinedStr):
                    found.append(f"{path.relative_to(SRC)}:{value.lineno}: reason={ast.unparse(value)}")
    return found


def test_no_error_is_raised_with_a_free_text_reason() -> None:
    """Every ``reason=`` passed in src is a declared enum member (or a variable holding one), not a literal."""
    assert _reason_literals() == []


# -- every code registered from feitian.errors --------------------------------------------------------------------


def test_no_module_but_errors_defines_a_wire_code() -> None:
    """A code defined elsewhere exists only once its module is imported: a peer would decode it as unknown."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            for statement in node.body:
                targets = statement.targets if isinstance(statement, ast.Assign) else []
                if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                    offenders.append(f"{path.relative_to(SRC)}: class {node.name}")
    assert offenders == []


def test_every_class_of_the_tree_lives_in_errors() -> None:
    import feitian.consensus  # noqa: F401  (re-exports the log errors)

    assert {c.__module__ for c in all_error_classes()} == {"feitian.errors"}
