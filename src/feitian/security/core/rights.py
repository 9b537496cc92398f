"""Rights: the small fixed set of things a capability lets its holder do to a resource.

=========  ==========================================================================================
right      meaning
=========  ==========================================================================================
read       read data or metadata: get a node, stat or read a file, read a job's status
list       enumerate the children of a resource (directory listing, child nodes, jobs)
write      modify something that exists: set a node, write/append a file, update a job
create     create something new under the resource: a node, a file, a job
delete     remove it: delete a node or file, kill a job
execute    run code on the cluster's behalf: start processes (Tubo), run instances
admin      every right above, plus administrative operations on the resource (policy, quotas,
           revocation). ``admin`` *implies* all other rights; no other right implies another.
=========  ==========================================================================================

Sets of rights compare through :func:`implied`: ``{admin}`` covers ``{read, write}``; ``{read, write}`` does
not cover ``{admin}``. The set is closed: an unknown right string is an error, never ignored, so a newer
peer's right is refused rather than silently widened or dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from feitian.errors import InvalidArgumentError

__all__ = ["ALL_RIGHTS", "Right", "canonical_rights", "implied", "parse_rights", "rights_cover"]


class Right(enum.StrEnum):
    READ = "read"
    LIST = "list"
    WRITE = "write"
    CREATE = "create"
    DELETE = "delete"
    EXECUTE = "execute"
    ADMIN = "admin"


ALL_RIGHTS: frozenset[Right] = frozenset(Right)
_ORDER = {right: index for index, right in enumerate(Right)}


def implied(rights: Iterable[Right]) -> frozenset[Right]:
    """The rights ``rights`` actually grant: all of them when ``admin`` is among them."""
    granted = frozenset(rights)
    return ALL_RIGHTS if Right.ADMIN in granted else granted


def rights_cover(granted: Iterable[Right], wanted: Iterable[Right]) -> bool:
    """True when ``granted`` allows every right in ``wanted``."""
    return frozenset(wanted) <= implied(granted)


def parse_rights(values: Iterable[str]) -> frozenset[Right]:
    """Parse right names; every unknown name is listed in one :class:`InvalidArgumentError`."""
    rights: set[Right] = set()
    unknown: list[str] = []
    for value in values:
        try:
            rights.add(Right(value))
        except ValueError:
            unknown.append(value)
    if unknown:
        known = ", ".join(r.value for r in Right)
        raise InvalidArgumentError(f"unknown right(s) {', '.join(map(repr, unknown))} (known: {known})")
    return frozenset(rights)


def canonical_rights(rights: Iterable[Right]) -> tuple[Right, ...]:
    """Rights deduplicated, in the fixed order of :class:`Right` (the order signed encodings use)."""
    return tuple(sorted(set(rights), key=_ORDER.__getitem__))
