"""Resource patterns and rights: the matching rules docs/security.md states."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feitian.errors import InvalidArgumentError
from feitian.security import ALL_RIGHTS, Right, implied, parse_resource, parse_rights, resources_cover
from feitian.security.core.rights import canonical_rights, rights_cover


def covers(pattern: str, wanted: str) -> bool:
    return parse_resource(pattern).covers(parse_resource(wanted))


@pytest.mark.parametrize(
    ("pattern", "wanted", "expected"),
    [
        ("coord:/apps/web/", "coord:/apps/web/x", True),
        ("coord:/apps/web/", "coord:/apps/web/x/y/z", True),
        ("coord:/apps/web/", "coord:/apps/web", True),  # the subtree includes its root
        ("coord:/apps/web/", "coord:/apps/webx", False),  # segment boundaries, not string prefixes
        ("coord:/apps/web", "coord:/apps/webx/y", False),
        ("coord:/apps/web", "coord:/apps", False),
        ("coord:/apps/web", "dfs:/apps/web", False),
        ("coord:/", "coord:/anything/at/all", True),
        ("coord:/", "coord:relative", False),
        ("coord:*", "coord:relative", True),
        ("coord:*", "coord:/x", True),
        ("coord:*", "dfs:/x", False),
        ("*", "dfs:/x", True),
        ("*", "job:*", True),
        ("job:*", "*", False),
        ("job:17", "job:17", True),
        ("job:17", "job:/17", False),  # absolute and relative names never match
        ("job:17", "job:170", False),
        ("job:app", "job:app/17", True),
        ("coord:/a", "coord:*", False),
    ],
)
def test_pattern_matching(pattern: str, wanted: str, expected: bool) -> None:
    assert covers(pattern, wanted) is expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("coord:/apps/web/", "coord:/apps/web"), ("coord:/", "coord:/"), ("job:*", "job:*"), ("*", "*")],
)
def test_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_resource(text)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "coord",
        "Coord:/x",
        "coord:",
        "coord:/a//b",
        "coord://",
        "coord:/a/../b",
        "coord:/a/./b",
        "coord:/a*",
        "coord:/a/*",
        "coord:/a\x00b",
        "coord:/a\nb",
        ":/x",
        "co ord:/x",
        "coord:/" + "x" * 4400,
    ],
)
def test_malformed_resources_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_resource(text)


def test_union_of_patterns_covers_only_through_one_pattern() -> None:
    granted = [parse_resource("coord:/a"), parse_resource("coord:/b")]
    assert resources_cover(granted, [parse_resource("coord:/a/x"), parse_resource("coord:/b")])
    assert not resources_cover(granted, [parse_resource("coord:/")])


def test_admin_implies_every_right_and_nothing_else_implies_anything() -> None:
    assert implied([Right.ADMIN]) == ALL_RIGHTS
    assert implied([Right.READ, Right.WRITE]) == {Right.READ, Right.WRITE}
    assert rights_cover([Right.ADMIN], [Right.DELETE, Right.EXECUTE])
    assert not rights_cover([Right.READ, Right.WRITE, Right.CREATE, Right.DELETE], [Right.ADMIN])


def test_unknown_rights_are_all_listed() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_rights(["read", "fly", "teleport"])
    assert "'fly'" in info.value.message and "'teleport'" in info.value.message
    assert parse_rights(["admin", "read"]) == {Right.ADMIN, Right.READ}
    assert canonical_rights([Right.ADMIN, Right.READ, Right.READ]) == (Right.READ, Right.ADMIN)


# Property tests against an independent, string-based oracle of the documented rule.

segments = st.sampled_from(["a", "b", "ab", "a.b", "x-1"])
paths = st.lists(segments, min_size=0, max_size=4)


@st.composite
def resource_texts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["all", "component", "absolute", "relative"]))
    component = draw(st.sampled_from(["coord", "dfs"]))
    segs = draw(paths)
    if kind == "all":
        return "*"
    if kind == "component":
        return f"{component}:*"
    if kind == "absolute":
        trailing = draw(st.sampled_from(["", "/"])) if segs else ""
        return f"{component}:/" + "/".join(segs) + trailing
    return f"{component}:" + "/".join(segs or ["a"])


def oracle_covers(pattern: str, wanted: str) -> bool:
    if pattern == "*":
        return True
    if wanted == "*":
        return False
    p_comp, p_path = pattern.split(":", 1)
    w_comp, w_path = wanted.split(":", 1)
    if p_comp != w_comp:
        return False
    if p_path == "*":
        return True
    if w_path == "*" or p_path.startswith("/") != w_path.startswith("/"):
        return False
    p_path, w_path = p_path.rstrip("/"), w_path.rstrip("/")
    return p_path == "" or w_path == p_path or w_path.startswith(p_path + "/")


@given(resource_texts(), resource_texts())
def test_matching_agrees_with_the_oracle(pattern: str, wanted: str) -> None:
    assert covers(pattern, wanted) == oracle_covers(pattern, wanted)


@given(resource_texts(), resource_texts(), resource_texts())
def test_covers_is_a_preorder(a: str, b: str, c: str) -> None:
    assert covers(a, a)
    if covers(a, b) and covers(b, c):
        assert covers(a, c)


@given(resource_texts())
def test_canonical_form_round_trips(text: str) -> None:
    parsed = parse_resource(text)
    assert parse_resource(str(parsed)) == parsed
