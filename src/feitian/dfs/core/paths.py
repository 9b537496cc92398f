"""DFS paths: absolute, ``/``-separated, checked against the named bounds before anything else happens.

A path is ``/`` or ``/seg(/seg)*``; one trailing ``/`` is accepted and dropped (``/a/`` is ``/a``). A segment is
1..``max_name_bytes`` UTF-8 bytes, not ``.`` or ``..``, with no ``/``, NUL or other control character. The same
segments are valid in a Zhongkui resource, so ``dfs:`` + path is always a well-formed capability resource.
"""

from __future__ import annotations

import re

from feitian.dfs.core.config import NamespaceConfig
from feitian.errors import InvalidArgumentError

__all__ = ["join_path", "parent_of", "split_path"]

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f*]")


def split_path(op: str, path: str, config: NamespaceConfig) -> tuple[str, ...]:
    """The segments of ``path`` (``()`` for the root); InvalidArgumentError naming ``op`` when malformed."""
    if not isinstance(path, str):
        raise InvalidArgumentError(f"{op}: path must be a string, got {type(path).__name__}")
    size = len(path.encode("utf-8", "surrogatepass"))
    if size > config.max_path_bytes:
        raise InvalidArgumentError(
            f"{op} {path[:64]!r}...: path of {size} bytes exceeds max_path_bytes {config.max_path_bytes}",
            path=path[:256],
            limit=config.max_path_bytes,
        )
    if not path.startswith("/"):
        raise InvalidArgumentError(f"{op} {path!r}: path is not absolute (it must start with '/')", path=path)
    body = path[1:-1] if len(path) > 1 and path.endswith("/") else path[1:]
    if not body:
        return ()
    segments = tuple(body.split("/"))
    if len(segments) > config.max_depth:
        raise InvalidArgumentError(
            f"{op} {path!r}: {len(segments)} segments exceed max_depth {config.max_depth}", path=path
        )
    for segment in segments:
        if not segment:
            raise InvalidArgumentError(f"{op} {path!r}: empty path segment ('//')", path=path)
        if segment in (".", ".."):
            raise InvalidArgumentError(f"{op} {path!r}: '.' and '..' are not allowed in a path", path=path)
        if _BAD_CHARS.search(segment):
            raise InvalidArgumentError(f"{op} {path!r}: segment {segment!r} has a control character or '*'", path=path)
        if len(segment.encode("utf-8", "surrogatepass")) > config.max_name_bytes:
            raise InvalidArgumentError(
                f"{op} {path!r}: name {segment[:32]!r}... exceeds max_name_bytes {config.max_name_bytes}",
                path=path,
                limit=config.max_name_bytes,
            )
    return segments


def join_path(segments: tuple[str, ...]) -> str:
    return "/" + "/".join(segments)


def parent_of(segments: tuple[str, ...]) -> tuple[str, ...]:
    return segments[:-1]
