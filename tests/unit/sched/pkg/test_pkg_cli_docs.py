"""docs/cli.md documents every ``feitian pkg`` command with every one of its options, so the reference cannot
fall behind the code."""

from __future__ import annotations

from pathlib import Path

import click

from feitian.cli.pkg import pkg

CLI_MD = Path(__file__).resolve().parents[4] / "docs" / "cli.md"
SHARED = {"--cluster", "--identity", "--help", "-h"}  # documented once for every client command


def test_every_pkg_command_and_option_is_in_docs_cli_md() -> None:
    rows = [line for line in CLI_MD.read_text().splitlines() if line.startswith("| `feitian pkg ")]
    assert rows
    for name, command in pkg.commands.items():
        row = next((r for r in rows if f"feitian pkg {name} " in r or f"/ `{name} " in r), None)
        assert row is not None, f"`feitian pkg {name}` has no row in docs/cli.md"
        usage = row.split(" | ")[0]
        for param in command.params:
            if isinstance(param, click.Option):
                flags = {*param.opts, *param.secondary_opts} - SHARED
                if flags:
                    assert any(flag in usage for flag in flags), f"{name}: none of {sorted(flags)} in {usage!r}"
