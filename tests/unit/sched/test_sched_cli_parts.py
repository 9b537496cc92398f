"""``feitian sched``'s own parts without a cluster: sizes and quota amounts as people write them, and docs/cli.md
documenting every ``feitian sched`` command with every one of its options."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from feitian.cli.sched import parse_quota, parse_size, sched
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


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        out.append((prefix + name, command))
        if isinstance(command, click.Group):
            out.extend(_commands(command, f"{prefix}{name} "))
    return out


def test_every_sched_command_and_option_is_in_docs_cli_md() -> None:
    rows = [line for line in CLI_MD.read_text().splitlines() if line.startswith("| `feitian sched ")]
    assert rows
    for name, command in _commands(sched):
        usage = next((r.split(" | ")[0] for r in rows if f"feitian sched {name} " in r or f"/ `{name} " in r), None)
        assert usage is not None, f"`feitian sched {name}` has no row in docs/cli.md"
        for param in command.params:
            if isinstance(param, click.Option):
                flags = {*param.opts, *param.secondary_opts} - SHARED
                if flags:
                    assert any(flag in usage for flag in flags), f"{name}: none of {sorted(flags)} in {usage!r}"
