"""Entry point of the ``feitian`` command.

Exit codes: 0 ok, 1 error, 2 usage, 3 unavailable, 4 not found, 5 conflict / already exists, 6 permission
denied or unauthenticated, 7 deadline exceeded. Errors print as ``error: ...`` plus ``hint: ...`` on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import click

from feitian import __version__
from feitian.errors import EXIT_ERROR, EXIT_USAGE, FeitianError

# A group run without a command prints its help (exit 2); click >= 8.2 raises this for it.
_NO_ARGS_IS_HELP: tuple[type[Exception], ...] = tuple(
    t for t in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if isinstance(t, type)
)


def _usage_error(exc: click.ClickException) -> None:
    """A bad command line said as every other error is: ``error:`` (click's own message), a ``hint:`` naming the
    command's help, exit 2 (click's FileError etc.: their own exit code)."""
    if isinstance(exc, _NO_ARGS_IS_HELP):
        exc.show()
        sys.exit(exc.exit_code)
    click.echo(f"error: {exc.format_message()}", err=True)
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    if ctx is not None:
        click.echo(f"hint: see `{ctx.command_path} --help`", err=True)
    sys.exit(exc.exit_code)


def _reader_gone() -> None:
    """stdout's reader went away (``feitian … | head``): what it wanted it has; end quietly with 0, and send the
    rest of the output nowhere, so the interpreter's last flush does not fail too."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


class FeitianGroup(click.Group):
    """A click group that turns FeitianError into ``error:``/``hint:`` lines and the documented exit code."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:  # the top level's own options
            _usage_error(exc)
            raise  # not reached

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # here, so that a reader gone away (`| head`) is noticed below, not at exit
            return result
        except BrokenPipeError:
            _reader_gone()
        except click.ClickException as exc:
            _usage_error(exc)
        except FeitianError as exc:
            reason = exc.fields.get("reason")
            click.echo(f"error: {exc.message}" + (f" [reason={reason}]" if reason else ""), err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=FeitianGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="feitian")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """feitian: the Apsara (飞天) cloud kernel, in Python.

    Start a local cluster with `feitian cluster up`, see it with `feitian cluster status`,
    stop it with `feitian cluster down`; `feitian demo` does all three around a tour.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from feitian.cli import bench, cluster, coord, demo, dfs, job, kv, node, pkg, rpc, sched, security

    cli.add_command(cluster.cluster)
    cli.add_command(node.node)
    cli.add_command(rpc.rpc)
    cli.add_command(demo.demo)
    cli.add_command(bench.bench)
    cli.add_command(kv.kv)
    cli.add_command(dfs.dfs)
    cli.add_command(coord.coord)
    cli.add_command(pkg.pkg)
    cli.add_command(sched.sched)
    cli.add_command(job.job)
    for group in (security.key, security.user, security.policy, security.cap, security.token):
        cli.add_command(group)


_register()


def main() -> None:
    try:
        cli.main(prog_name="feitian", standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: say so plainly, with the exit code for errors
        logging.getLogger("feitian").exception("unexpected error")
        click.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_ERROR)


__all__ = ["EXIT_USAGE", "cli", "main"]
