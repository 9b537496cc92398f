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

import sys
from pathlib import Path
from typing import Any

import click

from feitian.cli.output import emit_json, note
from feitian.errors import ConfigError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from feitian.job import (
    MAX_FILE_BYTES,
    JobSpec,
    decode_job,
    instance_counts,
    job_to_dict,
    job_to_yaml,
    normalized,
    problems,
)

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
