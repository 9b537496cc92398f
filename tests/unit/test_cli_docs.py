"""docs/cli.md documents every command of the client groups with every one of its options (issue 16: some were
only in the component's own page), so the reference cannot fall behind the code."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from feitian.cli.dfs import dfs
from feitian.cli.job import job
from feitian.cli.pkg import pkg
from feitian.cli.sched import sched

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
SHARED = {"--cluster", "--identity", "--timeout", "--help", "-h"}  # documented once for every client command


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    """Every command of a group, nested groups' commands included (``quota set``)."""
    out: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        out.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            out.extend(_commands(command, f"{prefix}{name} "))
    return out


@pytest.mark.parametrize("group", [dfs, pkg, sched, job], ids=lambda g: g.name)
def test_every_command_and_option_is_in_docs_cli_md(group: click.Group) -> None:
    head = f"| `feitian {group.name} "
    rows = [line for line in CLI_MD.read_text().splitlines() if line.startswith(head)]
    assert rows, f"docs/cli.md has no row for `feitian {group.name}`"
    for name, command in _commands(group):
        usage = next(
            (r.split(" | ")[0] for r in rows if f"feitian {group.name} {name} " in r or f"/ `{name} " in r), None
        )
        assert usage is not None, f"`feitian {group.name} {name}` has no row in docs/cli.md"
        for param in command.params:
            if isinstance(param, click.Option):
                flags = {*param.opts, *param.secondary_opts} - SHARED
                if flags:
                    assert any(flag in usage for flag in flags), f"{name}: none of {sorted(flags)} in {usage!r}"
