"""Parts of the job runtime that need no cluster: what a job's processes are granted, how records are turned
into bytes, and a streaming command run on records (a real subprocess)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from feitian.errors import InvalidArgumentError
from feitian.job import Job, job_grants
from feitian.job.core import AttemptRef
from feitian.job.execute import _Outputs, _run_command, to_bytes
from feitian.job.messages import ResultOutput, TaskRun
from feitian.job.spec.model import Code


def test_a_job_is_granted_its_directory_its_inputs_and_its_outputs_only() -> None:
    spec = (
        Job("g")
        .task("a", inputs=["/data/logs/2026-*/x.txt", "/data/one.txt"], function="m:f")
        .task("b", instances=2, function="m:g", output="/results/g")
        .pipe("a", "b", pattern="hash")
        .spec
    )
    grants = dict(job_grants(spec, "/jobs/g-1"))
    assert grants == {
        "dfs:/jobs/g-1/": ("create", "delete", "list", "read", "write"),
        "dfs:/data/logs/": ("list", "read"),  # up to the first segment with a glob
        "dfs:/data/one.txt": ("list", "read"),
        "dfs:/results/g/": ("create", "delete", "list", "read", "write"),
    }


def test_records_become_bytes() -> None:
    assert [to_bytes(x) for x in (b"a", "é", 3, 2.5, bytearray(b"z"))] == [b"a", "é".encode(), b"3", b"2.5", b"z"]
    for bad in (None, True, [1], object()):
        with pytest.raises(InvalidArgumentError, match="bytes, str or a number"):
            to_bytes(bad)


def _outputs(tmp_path: Path) -> _Outputs:
    run = TaskRun(
        ref=AttemptRef("t", 0, 1, 1), code=Code(command=("x",)), result=ResultOutput("/r/part-00000", "/tmp/x", 1)
    )

    class Ctx:
        store = None
        scratch = tmp_path

    return _Outputs(run, Ctx())  # type: ignore[arg-type]


def test_a_streaming_command_reads_and_writes_tab_separated_records(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    upper = [sys.executable, "-c", "import sys\nfor line in sys.stdin: sys.stdout.write(line.upper())"]
    records = iter([(b"k1", b"v1"), (b"", b"no key"), (b"k2", b"v2")])
    _run_command(upper, records, outputs, tmp_path, "")
    outputs.close_result()
    assert outputs.result_path.read_bytes() == b"K1\tV1\nNO KEY\nK2\tV2\n"
    assert outputs.count == 3


def test_a_command_that_fails_says_how_with_its_stderr(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('bad input line 3'); sys.exit(5)"]
    with pytest.raises(InvalidArgumentError, match="exited 5: bad input line 3"):
        _run_command(failing, iter([(b"", b"x")]), outputs, tmp_path, "")
    with pytest.raises(InvalidArgumentError, match="cannot start"):
        _run_command(["/nonexistent/prog"], iter([]), outputs, tmp_path, "")
    outputs.abort()
