"""Package names and specs: what is accepted, and a clear error for what is not."""

from __future__ import annotations

import pytest

from feitian.errors import InvalidArgumentError
from feitian.sched.pkg import parse_spec, validate_name


def test_specs_name_the_latest_or_one_version() -> None:
    assert parse_spec("wordcount") == ("wordcount", None)
    assert parse_spec("my-app_2.1@17") == ("my-app_2.1", 17)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "letters, digits"),
        ("-app", "starting with a letter or digit"),
        ("a/b", "letters, digits"),
        ("a b", "letters, digits"),
        ("x" * 129, "at most 128 bytes"),
        ("app@", "not a number"),
        ("app@v2", "not a number"),
        ("app@0", "not between 1 and"),
        ("app@-1", "not a number"),
    ],
)
def test_bad_specs_are_refused_saying_why(spec: str, problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match=problem):
        parse_spec(spec)


def test_names_are_checked_alone_too() -> None:
    assert validate_name("a") == "a"
    with pytest.raises(InvalidArgumentError, match=r"package name '\.\.'"):
        validate_name("..")
