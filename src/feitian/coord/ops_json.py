"""Nuwa operations written as JSON objects — the REST API's bodies and ``feitian coord txn`` — into typed values.

Strict: a field the operation does not know, a wrong type, an integer beyond 64 bits or text that cannot be
UTF-8 is an InvalidArgumentError naming it, so a misspelt condition never turns into an unconditional write.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from feitian.coord.core import CheckOp, CreateOp, DeleteOp, Op, SetOp
from feitian.errors import InvalidArgumentError

__all__ = ["MAX_INT", "VALUE_KEYS", "in_range", "only", "op_of", "opt_bool", "opt_int", "text", "value_of"]

MAX_INT = 2**63 - 1  # integers travel as signed 64-bit values (msgpack); beyond that is bad input, not a bug


def in_range(value: int, what: str, minimum: int = 0) -> int:
    if not minimum <= value <= MAX_INT:
        raise InvalidArgumentError(f"{what}: {value} is out of range ({minimum} to {MAX_INT})")
    return value


def only(body: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    """Refuse keys the operation does not know: a misspelt ``version`` must not turn a conditional write into an
    unconditional one."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidArgumentError(
            f"{what}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
            hint=f"the fields are {', '.join(sorted(allowed))}",
        )


def text(value: str, what: str) -> str:
    """``value`` if it can be sent as UTF-8 (no lone surrogates)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{what}: not valid Unicode text (a lone surrogate)") from None
    return value


def value_of(body: dict[str, Any], what: str) -> bytes:
    """``value`` (base64) or ``value_text`` (UTF-8); neither: empty."""
    if "value" in body and "value_text" in body:
        raise InvalidArgumentError(f"{what}: give value (base64) or value_text, not both")
    if "value_text" in body:
        value_text = body["value_text"]
        if not isinstance(value_text, str):
            raise InvalidArgumentError(f"{what}: value_text must be a string")
        return text(value_text, f"{what}: value_text").encode()
    raw = body.get("value", "")
    if not isinstance(raw, str):
        raise InvalidArgumentError(f"{what}: value must be a base64 string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f"{what}: value is not valid base64") from None


def opt_int(body: dict[str, Any], key: str, what: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgumentError(f"{what}: {key} must be an integer")
    return in_range(value, f"{what}: {key}")


def opt_bool(body: dict[str, Any], key: str, what: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{what}: {key} must be true or false")
    return value


VALUE_KEYS = frozenset({"value", "value_text"})
_OP_KEYS = {
    "create": frozenset({"op", "path", "ephemeral", "sequential", "parents"}) | VALUE_KEYS,
    "set": frozenset({"op", "path", "version"}) | VALUE_KEYS,
    "delete": frozenset({"op", "path", "version"}),
    "check": frozenset({"op", "path", "exists", "version", "create_revision", "mod_revision"}),
}


def op_of(item: Any, index: int) -> Op:
    what = f"txn op {index}"
    if not isinstance(item, dict):
        raise InvalidArgumentError(f"{what}: must be an object")
    kind, path = item.get("op"), item.get("path")
    if kind not in _OP_KEYS:
        raise InvalidArgumentError(f"{what}: op must be create, set, delete or check, got {kind!r}")
    only(item, _OP_KEYS[kind], what)
    if not isinstance(path, str):
        raise InvalidArgumentError(f"{what}: path must be a string")
    path = text(path, f"{what}: path")
    if kind == "create":
        return CreateOp(
            path=path,
            value=value_of(item, what),
            ephemeral=opt_bool(item, "ephemeral", what),
            sequential=opt_bool(item, "sequential", what),
            parents=opt_bool(item, "parents", what),
        )
    if kind == "set":
        if not VALUE_KEYS & set(item):
            raise InvalidArgumentError(f'{what}: a set needs its value (value or value_text; "" for empty)')
        return SetOp(path=path, value=value_of(item, what), expected_version=opt_int(item, "version", what))
    if kind == "delete":
        return DeleteOp(path=path, expected_version=opt_int(item, "version", what))
    return CheckOp(
        path=path,
        exists=opt_bool(item, "exists", what, default=True),
        version=opt_int(item, "version", what),
        create_revision=opt_int(item, "create_revision", what),
        mod_revision=opt_int(item, "mod_revision", what),
    )
