"""Decoding Nuwa REST requests (``feitian.coord.server.rest``): query parameters into typed values (JSON bodies and
transaction operations: ``feitian.coord.ops_json``). Every problem is an InvalidArgumentError naming it."""

from __future__ import annotations

from aiohttp import web

from feitian.coord.core import Selector
from feitian.coord.ops_json import in_range
from feitian.errors import InvalidArgumentError

__all__ = ["SELECTOR_MODES", "flag", "float_param", "int_param"]


def flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise InvalidArgumentError(f"query parameter {name}={value!r}: expected true or false")


def int_param(request: web.Request, name: str, default: int | None = None, *, minimum: int = 0) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"query parameter {name}={raw!r}: expected an integer") from None
    return in_range(value, f"query parameter {name}", minimum)


def float_param(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgumentError(f"query parameter {name}={raw!r}: expected a number of seconds") from None
    if not 0 <= value <= 3600:
        raise InvalidArgumentError(f"query parameter {name}={raw!r}: out of range")
    return value


SELECTOR_MODES = {"node": Selector.node, "children": Selector.children, "subtree": Selector.subtree}
