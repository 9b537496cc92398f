"""``feitian node run ROLE --config FILE``: run one service process in the foreground."""

from __future__ import annotations

import logging
import sys

import click

from feitian.deploy import ROLES, load_config, make_role, run_node
from feitian.runtime.eventloop import run


@click.group()
def node() -> None:
    """Run node processes (what `feitian cluster up` starts)."""


@node.command("run")
@click.argument("role", type=click.Choice(sorted(ROLES)))
@click.option("--config", "config_path", required=True, metavar="FILE", help="The node's TOML config.")
def run_cmd(role: str, config_path: str) -> None:
    """Run a node of ROLE until SIGTERM or SIGINT. Logs go to stderr."""
    config = load_config(config_path)
    level = getattr(logging, config.node.log_level.upper(), logging.INFO)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        force=True,
        format=f"%(asctime)s %(levelname)s {config.node.name} %(name)s: %(message)s",
    )
    run(run_node(role, config, make_role(role)))
