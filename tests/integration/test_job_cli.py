"""`feitian job check` as a real process (docs/jobs.md, docs/cli.md): the examples pass and print their
normalized job; a bad job gets every problem with its path and exit 2; a syntax error one `error:` line with the
line and column; a missing file 4, an unreadable one 6, a directory or a file over the bound 2; never a
traceback. No cluster is needed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from feitian.job.spec import MAX_FILE_BYTES, decode_job, instance_counts, normalized, read_job
from feitian.testing.cli import FEITIAN, feitian

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "jobs").iterdir())


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_pass_and_print_their_normalized_job(path: Path) -> None:
    proc = feitian("job", "check", str(path), check=True)
    spec = read_job(path)
    assert decode_job(proc.stdout, source="out.yaml") == normalized(spec, instance_counts(spec))
    assert proc.stderr.startswith(f"ok: job {spec.name!r}")
    proc = feitian("job", "check", str(path), "--json", check=True)
    out = json.loads(proc.stdout)
    assert out["ok"] is True
    assert decode_job(json.dumps(out["job"]), source="out.json") == normalized(spec, instance_counts(spec))


BAD = """\
name: bad job
tasks:
  - name: a
    instances: 2
    code: {function: no_colon}
    resources: {memory: lots}
  - name: b
    instances: 3
    code: {operator: tokenise}
pipes:
  - {from: a, to: b, pattern: 1:1}
  - {from: b, to: c, pattern: 1:N, sort: true}
  - {from: a, to: b, pattern: range}
"""


def test_a_bad_job_gets_every_problem_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    proc = feitian("job", "check", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    no_traceback(proc)
    lines = proc.stderr.splitlines()
    assert lines[0] == f"error: {path}: 9 problems:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "name",
        "tasks[0].resources.memory",
        "tasks[0].code.function",
        "tasks[1].code.operator",
        "pipes[1].to",
        "pipes[1].sort",
        "pipes[2]",
        "pipes[2]",
        "pipes[0]",
    ]
    proc = feitian("job", "check", str(path), "--json")
    assert proc.returncode == 2
    out = json.loads(proc.stdout)
    assert out["ok"] is False and len(out["problems"]) == 9
    assert out["problems"][1] == {
        "path": "tasks[0].resources.memory",
        "message": "'lots' is not a size (a number of bytes with an optional unit: 512MiB, 2GiB, 4G, 1048576)",
    }


def test_problems_of_form_are_listed_per_task(tmp_path: Path) -> None:
    path = tmp_path / "form.json"
    path.write_text('{"name": "j", "tasks": [{"name": "a", "instances": "two", "code": {}}, {"name": "b"}]}')
    proc = feitian("job", "check", str(path))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {path}: 2 problems:",
        "  tasks[0].instances: Expected `int | null`, got `str`",
        "  tasks[1].code: missing (required)",
    ]


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [("syntax.yaml", "name: j\ntasks:\n  - name: a\n    code: {command: [cat]\n", ":5:1: "),
     ("syntax.json", '{"name": "j",\n "tasks": [}', ":2:12: JSON is malformed")],
)  # fmt: skip
def test_a_syntax_error_is_one_line_with_line_and_column(tmp_path: Path, name: str, text: str, where: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    proc = feitian("job", "check", str(path))
    assert proc.returncode == 2
    no_traceback(proc)
    assert proc.stderr.splitlines()[0].startswith(f"error: {path}{where}")
    proc = feitian("job", "check", str(path), "--json")
    (problem,) = json.loads(proc.stdout)["problems"]
    line, column = (int(n) for n in where.split(":")[1:3])
    assert (problem["line"], problem["column"]) == (line, column) and proc.returncode == 2


def test_stdin(tmp_path: Path) -> None:
    doc = '{"name": "s", "tasks": [{"name": "a", "code": {"command": ["cat"]}}]}'
    proc = subprocess.run(
        [*FEITIAN, "job", "check", "-", "--json"], input=doc, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["job"]["tasks"][0]["instances"] == 1


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    missing = feitian("job", "check", str(tmp_path / "nope.yaml"))
    assert (
        missing.returncode == 4 and missing.stderr.startswith("error: job file ") and "no such file" in missing.stderr
    )
    directory = feitian("job", "check", str(tmp_path))
    assert directory.returncode == 2 and "is a directory" in directory.stderr
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_FILE_BYTES + 1))
    too_large = feitian("job", "check", str(big))
    assert too_large.returncode == 2 and f"a job file is at most {MAX_FILE_BYTES}" in too_large.stderr
    for proc in (missing, directory, too_large):
        no_traceback(proc)
    if os.geteuid() != 0:  # root reads any file
        secret = tmp_path / "secret.yaml"
        secret.write_text("name: x\n")
        secret.chmod(0)
        unreadable = feitian("job", "check", str(secret))
        assert unreadable.returncode == 6 and "permission denied" in unreadable.stderr
