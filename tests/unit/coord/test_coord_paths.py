"""Path grammar of the coordination tree (NUWA-2)."""

from __future__ import annotations

import pytest

from feitian.coord.core import DEFAULT_LIMITS, CoordLimits, validate_path
from feitian.coord.core.paths import ancestors, name_of, other_kind, parent_of, sequential_path
from feitian.errors import ConfigError, InvalidArgumentError


@pytest.mark.parametrize("path", ["/", "/a", "/a/", "/a/b/c", "/a/b/c/", "/ünï/кот", "/a b/c-d_e.f@g"])
def test_valid_paths(path: str) -> None:
    validate_path("get", path, DEFAULT_LIMITS)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("", "absolute"),
        ("a/b", "absolute"),
        ("//", "empty name"),
        ("/a//b", "empty name"),
        ("/a/./b", "'.' and '..'"),
        ("/a/..", "'.' and '..'"),
        ("/a*", "'*'"),
        ("/a\x00b", "control"),
        ("/a\nb", "control"),
        ("/\ud800", "UTF-8"),
    ],
)
def test_invalid_paths_name_the_problem(path: str, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_path("create", path, DEFAULT_LIMITS)
    assert fragment in info.value.message
    assert info.value.message.startswith("create ")


def test_bounds_on_path_name_and_depth() -> None:
    limits = CoordLimits(max_path_bytes=64, max_name_bytes=8, max_depth=3)
    validate_path("get", "/12345678/b/c", limits)
    with pytest.raises(InvalidArgumentError, match="exceeds 8 bytes"):
        validate_path("get", "/123456789", limits)
    with pytest.raises(InvalidArgumentError, match="depth 4 exceeds 3"):
        validate_path("get", "/a/b/c/d", limits)
    with pytest.raises(InvalidArgumentError, match="exceeds 64") as info:
        validate_path("get", "/" + "/".join(["abcdefg"] * 9), limits)
    assert info.value.fields["limit"] == 64
    # Names are measured in UTF-8 bytes, not characters.
    with pytest.raises(InvalidArgumentError):
        validate_path("get", "/ééééé", limits)


def test_root_can_be_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="root"):
        validate_path("delete", "/", DEFAULT_LIMITS, allow_root=False)


def test_path_helpers() -> None:
    assert parent_of("/a") == "/"
    assert parent_of("/a/") == "/"
    assert parent_of("/a/b") == "/a/"
    assert parent_of("/a/b/") == "/a/"
    assert name_of("/a/b") == "b"
    assert name_of("/a/b/") == "b/"
    assert other_kind("/a/b") == "/a/b/"
    assert other_kind("/a/b/") == "/a/b"
    assert ancestors("/") == []
    assert ancestors("/a") == ["/"]
    assert ancestors("/a/b/c/") == ["/", "/a/", "/a/b/"]
    assert sequential_path("/q/job-", 7) == "/q/job-0000000007"
    assert sequential_path("/q/dir-/", 12) == "/q/dir-0000000012/"


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError) as info:
        CoordLimits(max_value_bytes=0, min_session_ttl_ms=10, max_session_ttl_ms=5).validate()
    assert len(info.value.fields["problems"]) == 2


def test_a_path_found_well_formed_is_checked_again_under_other_limits() -> None:
    path = "/cache/" + "n" * 40
    validate_path("set", path, CoordLimits())  # well formed under the defaults (and remembered)
    validate_path("set", path, CoordLimits())
    with pytest.raises(InvalidArgumentError):
        validate_path("set", path, CoordLimits(max_name_bytes=10))
    with pytest.raises(InvalidArgumentError):
        validate_path("set", path, CoordLimits(max_depth=1, max_name_bytes=10))
