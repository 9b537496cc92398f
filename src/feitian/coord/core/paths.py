"""Paths of the coordination tree (NUWA-2).

Grammar::

    path  := "/"                          the root directory
           | "/" segs                     a file
           | "/" segs "/"                 a directory
    segs  := name ("/" name)*
    name  := 1..max_name_bytes UTF-8 bytes, no "/", "*" or control character; not "." or ".."

``/apps/web`` and ``/apps/web/`` name the same entry of ``/apps/``, so at most one of them exists: the trailing
``/`` says which kind the caller means. ``*`` is refused because Zhongkui resources (``coord:/apps/...``) refuse
it, so a node named with one could never be authorized.
"""

from __future__ import annotations

import re

from feitian.coord.core.limits import CoordLimits
from feitian.errors import InvalidArgumentError

__all__ = [
    "MAX_SEQUENCE",
    "ROOT",
    "SEQUENCE_DIGITS",
    "ancestors",
    "is_directory",
    "name_of",
    "other_kind",
    "parent_of",
    "sequential_path",
    "validate_path",
]

ROOT = "/"
SEQUENCE_DIGITS = 10
MAX_SEQUENCE = 10**SEQUENCE_DIGITS - 1
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f*]")


# Paths found well formed under (max_path_bytes, max_name_bytes, max_depth): the same keys are written again and
# again, and a hit skips the checks. Bounded: cleared when full. Only speed depends on it, never a result.
_WELL_FORMED: dict[str, tuple[int, int, int]] = {}
_WELL_FORMED_MAX = 16_384


def validate_path(op: str, path: str, limits: CoordLimits, *, allow_root: bool = True) -> None:
    """Raise :class:`InvalidArgumentError` naming ``op`` and ``path`` unless ``path`` is well formed."""
    bounds = (limits.max_path_bytes, limits.max_name_bytes, limits.max_depth)
    if type(path) is str and _WELL_FORMED.get(path) == bounds:
        return
    _check_path(op, path, limits, allow_root)
    if path != ROOT:
        if len(_WELL_FORMED) >= _WELL_FORMED_MAX:
            _WELL_FORMED.clear()
        _WELL_FORMED[path] = bounds


def _check_path(op: str, path: str, limits: CoordLimits, allow_root: bool) -> None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgumentError(f"{op} {path!r}: a path must be absolute (start with '/')", path=str(path))
    try:
        size = len(path.encode())
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{op} {path!r}: a path must be valid UTF-8", path=path) from None
    if size > limits.max_path_bytes:
        raise InvalidArgumentError(
            f"{op} {path[:64]}...: path of {size} bytes exceeds {limits.max_path_bytes}",
            path=path[:64],
            limit=limits.max_path_bytes,
            size=size,
        )
    if path == ROOT:
        if not allow_root:
            raise InvalidArgumentError(f"{op} /: not allowed on the root directory", path=path)
        return
    body = path[1:-1] if path.endswith("/") else path[1:]
    segments = body.split("/")
    if len(segments) > limits.max_depth:
        raise InvalidArgumentError(
            f"{op} {path}: depth {len(segments)} exceeds {limits.max_depth}", path=path, limit=limits.max_depth
        )
    for name in segments:
        if not name:
            raise InvalidArgumentError(f"{op} {path}: empty name ('//')", path=path)
        if name in (".", ".."):
            raise InvalidArgumentError(f"{op} {path}: '.' and '..' are not names", path=path)
        if _BAD_CHARS.search(name):
            raise InvalidArgumentError(f"{op} {path}: '*' and control characters are not allowed in names", path=path)
        if len(name.encode()) > limits.max_name_bytes:
            raise InvalidArgumentError(
                f"{op} {path}: name {name[:32]!r} exceeds {limits.max_name_bytes} bytes",
                path=path,
                limit=limits.max_name_bytes,
            )


def is_directory(path: str) -> bool:
    return path.endswith("/")


def parent_of(path: str) -> str:
    """The directory holding ``path``: ``/a/`` for ``/a/b`` and ``/a/b/``; ``/`` for ``/a``. Not for the root."""
    body = path[:-1] if path.endswith("/") else path
    return body[: body.rindex("/") + 1]


def name_of(path: str) -> str:
    """The entry name within the parent, with the trailing ``/`` of a directory: ``b`` or ``b/``."""
    return path[len(parent_of(path)) :]


def other_kind(path: str) -> str:
    """The same entry as the other kind: ``/a`` <-> ``/a/``."""
    return path[:-1] if path.endswith("/") else path + "/"


def ancestors(path: str) -> list[str]:
    """Every directory above ``path``, from the root down to its parent (empty for the root)."""
    if path == ROOT:
        return []
    out = [ROOT]
    body = path[1:-1] if path.endswith("/") else path[1:]
    prefix = ROOT
    for name in body.split("/")[:-1]:
        prefix = f"{prefix}{name}/"
        out.append(prefix)
    return out


def sequential_path(path: str, sequence: int) -> str:
    """``path`` with the zero-padded ``sequence`` appended to its name: ``/q/job-`` -> ``/q/job-0000000007``."""
    suffix = f"{sequence:0{SEQUENCE_DIGITS}d}"
    return f"{path[:-1]}{suffix}/" if path.endswith("/") else f"{path}{suffix}"
