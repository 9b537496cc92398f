"""``feitian job …``: DAG jobs (FUXI-7..11); docs/jobs.md.

``feitian job check FILE [--json]`` reads a job description (JSON or YAML; ``-``: stdin) and prints it with every
default applied, or every problem with the path to it. It needs no cluster: it checks the file alone (whether the
inputs exist in Pangu and whether a machine can hold each task is checked when the job is submitted).

Exit codes: 0 the job is valid; 2 it is not (not JSON/YAML — one ``error:`` line with the line and column —,
problems of form or of meaning, larger than 1 MiB, a directory); 4 FILE does not exist; 6 FILE cannot be read.

The commands that talk to a cluster (submit, status, list, kill, logs) join this group; they read the job
file with :func:`load_job_file`, which gives the same errors and exit codes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from feitian.cli.cluster import cluster_option
from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, note
from feitian.cli.sched import DEFAULT_TIMEOUT_S
from feitian.cli.sched import master_addresses as sched_masters
from feitian.deploy import LocalCluster, resolve_cluster_dir
from feitian.deploy import master_addresses as dfs_master_addresses
from feitian.dfs import DfsClient
from feitian.errors import ConfigError, FeitianError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from feitian.job import (
    DEFAULT_ROOT,
    MAX_FILE_BYTES,
    JobClient,
    JobSpec,
    JobView,
    decode_job,
    instance_counts,
    job_to_dict,
    job_to_yaml,
    normalized,
    problems,
    task_lines,
)
from feitian.rpc import ClientConfig
from feitian.runtime.eventloop import run
from feitian.sched import SchedClient

T = TypeVar("T")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def read_job_bytes(file: str) -> tuple[bytes, str]:
    """The bytes of a job file (``-``: stdin) and the name to report it by; at most MAX_FILE_BYTES + 1 are read
    (so a larger file is refused without reading it all)."""
    if file == "-":
        return sys.stdin.buffer.read(MAX_FILE_BYTES + 1), "<stdin>"
    path = Path(file)
    try:
        with path.open("rb") as f:
            return f.read(MAX_FILE_BYTES + 1), file
    except FileNotFoundError:
        raise NotFoundError(f"job file {file}: no such file") from None
    except IsADirectoryError:
        raise InvalidArgumentError(f"job file {file}: is a directory", hint="name a .yaml or .json file") from None
    except PermissionError:
        raise PermissionDeniedError(f"job file {file}: permission denied") from None
    except OSError as exc:
        raise InvalidArgumentError(f"job file {file}: cannot be read: {exc.strerror or exc}") from None


def load_job_file(file: str) -> JobSpec:
    """A job file read and checked: every problem of form and of meaning in one ``ConfigError`` (exit 2), a
    syntax error as an ``InvalidArgumentError`` naming line and column (exit 2), a missing file exit 4."""
    data, source = read_job_bytes(file)
    spec = decode_job(data, source=source)
    found = problems(spec)
    if found:
        count = f"{len(found)} problem{'s' if len(found) > 1 else ''}"
        raise ConfigError(f"{source}: {count}", problems=[str(p) for p in found])
    return spec


def _problem_json(text: str) -> dict[str, str]:
    path, sep, message = text.partition(": ")
    return {"path": path, "message": message} if sep and " " not in path else {"path": "", "message": text}


@click.group()
def job() -> None:
    """DAG jobs: a job file's tasks and pipelines (docs/jobs.md)."""


@job.command()
@click.argument("file")
@json_option
def check(file: str, as_json: bool) -> None:
    """Check the job description FILE (JSON or YAML; `-` for stdin) without a cluster: print it with every
    default applied, or every problem with the path to it (exit 2)."""
    try:
        spec = load_job_file(file)
    except InvalidArgumentError as exc:
        if as_json and "line" in exc.fields:  # not JSON/YAML: where it broke
            where = {"line": exc.fields["line"], "column": exc.fields["column"]}
            emit_json({"ok": False, "problems": [{"path": "", "message": exc.message, **where}]})
        elif as_json:
            listed: list[Any] = exc.fields.get("problems") or [exc.message]
            emit_json({"ok": False, "problems": [_problem_json(p) for p in listed]})
        raise
    full = normalized(spec, instance_counts(spec))
    if as_json:
        emit_json({"ok": True, "job": job_to_dict(full)})
        return
    sys.stdout.write(job_to_yaml(full))
    pipes = len(spec.pipes)
    note(f"ok: job {spec.name!r}, {len(spec.tasks)} tasks, {pipes} pipe{'' if pipes == 1 else 's'}")


# -- on a cluster ------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def cluster_jobs(cluster_dir: str | None, identity: str | None, root: str) -> AsyncIterator[JobClient]:
    """A :class:`JobClient` of the local cluster at ``cluster_dir`` acting as ``identity`` (default admin)."""
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    masters = sched_masters(lc)
    dfs_masters = dfs_master_addresses(lc.dir)
    async with await lc.client(ClientConfig(name="feitian-job", connect_timeout_s=0.5), identity=identity) as rpc:
        yield JobClient(SchedClient(rpc, masters, timeout_s=DEFAULT_TIMEOUT_S), DfsClient(rpc, dfs_masters), root=root)


def _jobs(cluster_dir: str | None, identity: str | None, root: str, action: Callable[[JobClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with cluster_jobs(cluster_dir, identity, root) as jobs:
            return await action(jobs)

    return run(go())


root_option = click.option(
    "--root", default=DEFAULT_ROOT, show_default=True, metavar="DIR", help="Where jobs live in Pangu."
)


def _view_json(view: JobView) -> dict[str, Any]:
    return {"state": view.state, **msgspec.to_builtins(view)}


def _show(view: JobView, as_json: bool) -> None:
    if as_json:
        emit_json(_view_json(view))
    else:
        _say_view(view)


def _say_view(view: JobView) -> None:
    status = view.status
    head = f"{view.job}: {view.state} (application {view.app_id} {view.app_state}"
    head += f", JobMaster epoch {status.epoch})" if status else ")"
    click.echo(head)
    for line in task_lines(view):
        click.echo(line)
    if status is not None and status.detail:
        click.echo(f"  detail: {status.detail}")


@job.command()
@click.argument("file")
@click.option(
    "--wait",
    is_flag=True,
    help="Follow it until it ends (a progress bar per task on stderr); exit 1 unless it succeeds.",
)
@root_option
@json_option
@cluster_option
@identity_option
def submit(file: str, wait: bool, root: str, as_json: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Submit the job FILE: its JobMaster starts on the cluster and runs it. Prints the job's ID.

    The job's processes get exactly what they need of your rights: their job directory, reading the inputs,
    writing the outputs (docs/jobs.md). With --wait, the tasks' progress is shown until the job ends."""
    spec = load_job_file(file)

    async def action(jobs: JobClient) -> JobView:
        view = await jobs.submit(spec)
        if not wait:
            return view
        if not as_json:
            click.echo(view.job)
        shown: list[str] = []

        def show(v: JobView) -> None:
            lines = [f"{v.job}: {v.state}", *task_lines(v)]
            if lines != shown and not as_json:
                note("\n".join(lines))
                shown[:] = lines

        return await jobs.wait(view.job, on_change=show)

    try:
        view = _jobs(cluster_dir, identity, root, action)
    except KeyboardInterrupt:
        click.echo("error: interrupted (the job goes on; `feitian job kill ID` stops it)", err=True)
        sys.exit(130)
    if as_json:
        emit_json(_view_json(view))
    elif not wait:
        click.echo(view.job)
    if wait and view.state != "succeeded":
        detail = view.status.detail if view.status else ""
        raise FeitianError(f"job {view.job} {view.state}" + (f": {detail}" if detail else ""))


@job.command()
@click.argument("job_id", metavar="JOB")
@root_option
@json_option
@cluster_option
@identity_option
def status(job_id: str, root: str, as_json: bool, cluster_dir: str | None, identity: str | None) -> None:
    """A job's state and its tasks' progress (instances done / running / failed / backups)."""
    _show(_jobs(cluster_dir, identity, root, lambda jobs: jobs.status(job_id)), as_json)


@job.command("list")
@root_option
@json_option
@cluster_option
@identity_option
def list_jobs(root: str, as_json: bool, cluster_dir: str | None, identity: str | None) -> None:
    """The jobs under --root, each with its state."""
    views = _jobs(cluster_dir, identity, root, lambda jobs: jobs.list())
    if as_json:
        emit_json([_view_json(v) for v in views])
        return
    for view in views:
        done = sum(t.done for t in view.status.tasks) if view.status else 0
        total = sum(t.instances for t in view.status.tasks) if view.status else 0
        click.echo(f"{view.job:<40} {view.state:<10} {done}/{total} instances  {view.app_id}")


@job.command()
@click.argument("job_id", metavar="JOB")
@root_option
@json_option
@cluster_option
@identity_option
def kill(job_id: str, root: str, as_json: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Kill a job: its JobMaster and workers are stopped (what it committed stays)."""
    _show(_jobs(cluster_dir, identity, root, lambda jobs: jobs.kill(job_id)), as_json)
