"""Resources: what a capability or a token is about, written ``component:path``.

Grammar (a *pattern* in a capability and a *requested resource* in a call use the same syntax)::

    resource  := "*"                       every resource of every component
               | component ":" "*"         every resource of one component
               | component ":" path
    component := [a-z][a-z0-9_-]{0,31}      coord, dfs, job, sched, monitor, ...
    path      := "/" | "/" segs ["/"]      hierarchical path (coordination nodes, files)
               | segs ["/"]                relative name (a job id, a table), may have "/" inside
    segs      := seg ("/" seg)*
    seg       := 1+ characters, none of them "/", "*", or a control character; not "." or ".."

Matching is on whole ``/``-separated segments: pattern ``coord:/apps/web`` (with or without a trailing
``/``) covers ``coord:/apps/web`` itself and everything below it (``coord:/apps/web/x``) but not
``coord:/apps/webx``.
``coord:/`` covers every absolute ``coord`` path; ``coord:*`` also covers relative names. An absolute path
never matches a relative name (``job:/17`` and ``job:17`` are different resources). There are no other
wildcards: a ``*`` inside a path is rejected, so a path can never be read as a glob.

A trailing ``/`` is not significant: the canonical form drops it (except for the root ``/``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from feitian.errors import InvalidArgumentError

__all__ = ["MAX_RESOURCE_CHARS", "Resource", "canonical_resources", "parse_resource", "resources_cover"]

MAX_RESOURCE_CHARS = 4352  # a Nuwa path may be 4096 bytes: room for it and a component
_COMPONENT_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_BAD_SEGMENT_CHARS = re.compile(r"[\x00-\x1f\x7f*]")


@dataclass(frozen=True, slots=True)
class Resource:
    """A parsed resource pattern. ``component`` None means every component; ``path`` None means every path."""

    component: str | None
    path: tuple[str, ...] | None
    absolute: bool = True

    def covers(self, other: Resource) -> bool:
        """True when every resource ``other`` names is also named by ``self``."""
        if self.component is None:
            return True
        if self.component != other.component:
            return False
        if self.path is None:
            return True
        if other.path is None or self.absolute != other.absolute:
            return False
        n = len(self.path)
        return len(other.path) >= n and other.path[:n] == self.path

    def __str__(self) -> str:
        if self.component is None:
            return "*"
        if self.path is None:
            return f"{self.component}:*"
        joined = "/".join(self.path)
        return f"{self.component}:/{joined}" if self.absolute else f"{self.component}:{joined}"


_EVERYTHING = Resource(component=None, path=None)


@functools.lru_cache(maxsize=4096)
def parse_resource(text: str) -> Resource:
    """Parse ``component:path`` (see the module docstring); :class:`InvalidArgumentError` when malformed.

    Memoised: the hot path of every verifier parses the same few strings again and again.
    """
    if len(text) > MAX_RESOURCE_CHARS:
        raise InvalidArgumentError(f"resource {text[:40]!r}...: longer than {MAX_RESOURCE_CHARS} characters")
    if text == "*":
        return _EVERYTHING
    component, sep, path = text.partition(":")
    if not sep or not _COMPONENT_RE.fullmatch(component):
        raise InvalidArgumentError(
            f"resource {text!r}: expected 'component:path' with a component like 'coord' (lower-case "
            "letters, digits, '_' or '-'), or '*'"
        )
    if path == "*":
        return Resource(component=component, path=None)
    if "//" in path:
        raise InvalidArgumentError(f"resource {text!r}: empty path segment ('//')")
    absolute = path.startswith("/")
    body = path[1:] if absolute else path
    if body.endswith("/"):
        body = body[:-1]
    if not body:
        if absolute:
            return Resource(component=component, path=())
        raise InvalidArgumentError(f"resource {text!r}: empty path")
    segments = tuple(body.split("/"))
    for segment in segments:
        if not segment or segment in (".", "..") or _BAD_SEGMENT_CHARS.search(segment):
            raise InvalidArgumentError(
                f"resource {text!r}: bad path segment {segment!r} (empty, '.', '..', '*' and control "
                "characters are not allowed)"
            )
    return Resource(component=component, path=segments, absolute=absolute)


def resources_cover(granted: Iterable[Resource], wanted: Iterable[Resource]) -> bool:
    """True when each resource in ``wanted`` is covered by at least one in ``granted``.

    Complete as well as sound: a pattern names a whole subtree, so a union of patterns covers a subtree only
    if one of them does.
    """
    granted = tuple(granted)
    return all(any(g.covers(w) for g in granted) for w in wanted)


def canonical_resources(texts: Iterable[str]) -> tuple[str, ...]:
    """Parse, normalise, deduplicate and sort resource strings (the form signed encodings use)."""
    return tuple(sorted({str(parse_resource(t)) for t in texts}))
