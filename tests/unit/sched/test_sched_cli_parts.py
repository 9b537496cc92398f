"""``feitian sched``'s own parts without a cluster: sizes and quota amounts as people write them (docs/cli.md
documenting every command: tests/unit/test_cli_docs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feitian.cli.sched import parse_quota, parse_size
from feitian.errors import InvalidArgumentError

CLI_MD = Path(__file__).resolve().parents[3] / "docs" / "cli.md"
SHARED = {"--cluster", "--identity", "--timeout", "--help", "-h"}  # documented once for every sched command


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MiB", 512 << 20), ("1.5GiB", 3 << 29), ("4G", 4 << 30), ("2gib", 2 << 30), ("1048576", 1 << 20),
     ("64 KiB", 64 << 10), ("1T", 1 << 40), ("7b", 7)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text, "--memory") == size


@pytest.mark.parametrize("text", ["", "0", "0MiB", "-1GiB", "12XB", "GiB", "1e9", "1,5GiB", "0.1b"])
def test_not_sizes(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="--memory"):
        parse_size(text, "--memory")


def test_quota_amounts() -> None:
    assert parse_quota(("cpu=4000", "memory=8GiB", "disk=1T", "net=100", "gpu=2")) == {
        "cpu": 4000, "memory": 8 << 30, "disk": 1 << 40, "net": 100, "gpu": 2,
    }  # fmt: skip
    assert parse_quota(()) == {}  # a group without limits


@pytest.mark.parametrize(
    ("items", "message"),
    [(("cpu",), "not RESOURCE=AMOUNT"), (("=4",), "not RESOURCE=AMOUNT"), (("cpu=-1",), "negative"),
     (("cpu=0",), "1 or more"), (("cpu=1.5",), "whole number"), (("memory=0",), "not a positive size"),
     (("cpu=1", "cpu=2"), "given twice")],
)  # fmt: skip
def test_bad_quota_amounts(items: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        parse_quota(items)
