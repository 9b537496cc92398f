"""Tubo's bounds: every field of a ProcessSpec out of its bound is a named InvalidArgumentError; the shim's wait
status decodes to an exit code or a signal; the supervisor's own arguments are checked."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from feitian.errors import ConflictError, InvalidArgumentError
from feitian.sched.tubo import ProcessSpec, ProcessSupervisor
from feitian.sched.tubo.cgroups import detect
from feitian.sched.tubo.procs import (
    MAX_ARGV_BYTES,
    MAX_ENV_BYTES,
    decode_wait_status,
    describe_end,
    validate_spec,
)


def make(**changes: object) -> ProcessSpec:
    return msgspec.structs.replace(ProcessSpec("p-1.ok_", "app", ["true"]), **changes)


def test_a_good_spec_passes() -> None:
    validate_spec(make())
    validate_spec(make(proc_id="x" * 128, cpu_millis=10, memory_bytes=4 << 20, max_pids=1, grace_s=0))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"proc_id": ""}, "bad process id"),
        ({"proc_id": "x" * 129}, "bad process id"),
        ({"proc_id": "a/b"}, "bad process id"),
        ({"proc_id": "a b"}, "bad process id"),
        ({"proc_id": ".."}, "'.' and '..'"),
        ({"app_id": ""}, "bad application id"),
        ({"app_id": "a\nb"}, "bad application id"),
        ({"app_id": "a" * 257}, "bad application id"),
        ({"argv": []}, "empty command"),
        ({"argv": [""]}, "empty command"),
        ({"argv": ["x"] * 4097}, "more than 4096"),
        ({"argv": ["x", "y" * MAX_ARGV_BYTES]}, f"more than {MAX_ARGV_BYTES}"),
        ({"argv": ["x", "a\0b"]}, "NUL"),
        ({"env": {f"K{i}": "v" for i in range(1025)}}, "more than 1024"),
        ({"env": {"K": "v" * MAX_ENV_BYTES}}, f"more than {MAX_ENV_BYTES}"),
        ({"env": {"A=B": "v"}}, "bad environment variable"),
        ({"env": {"": "v"}}, "bad environment variable"),
        ({"env": {"FEITIAN_PROC_ID": "v"}}, "set by Tubo"),
        ({"package_dir": "relative/dir"}, "not an absolute path"),
        ({"cpu_millis": 9}, "cpu_millis 9 is not between 10 and 1000000"),
        ({"cpu_millis": 1_000_001}, "cpu_millis"),
        ({"cpu_millis": True}, "cpu_millis"),
        ({"memory_bytes": 1 << 20}, "memory_bytes"),
        ({"memory_bytes": 17 << 40}, "memory_bytes"),
        ({"max_pids": 0}, "max_pids"),
        ({"grace_s": -1.0}, "grace_s"),
        ({"grace_s": 3601.0}, "grace_s"),
        ({"grace_s": float("nan")}, "grace_s"),
    ],
)
def test_each_bound_is_a_named_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        validate_spec(make(**changes))


def test_unknown_fields_are_refused_on_decode() -> None:
    raw = msgspec.json.encode({"proc_id": "p", "app_id": "a", "argv": ["x"], "gpus": 1})
    with pytest.raises(msgspec.ValidationError, match="gpus"):
        msgspec.json.decode(raw, type=ProcessSpec)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0\n", (0, None)), ("3\n", (3, None)), ("128\n", (128, None)), ("137\n", (None, 9)), ("143\n", (None, 15))],
)
def test_wait_status_decoding(text: str, expected: tuple[int | None, int | None]) -> None:
    assert decode_wait_status(text) == expected


def test_end_descriptions() -> None:
    assert describe_end(3, None) == "exit code 3"
    assert describe_end(None, 9) == "killed by SIGKILL"
    assert describe_end(None, 77) == "killed by signal 77"


def test_supervisor_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="cgroup prefix"):
        ProcessSupervisor(tmp_path, cgroup_prefix="../escape", use_cgroups=False)
    with pytest.raises(InvalidArgumentError, match="cgroup prefix"):
        ProcessSupervisor(tmp_path, cgroup_prefix="a b", use_cgroups=False)
    with pytest.raises(InvalidArgumentError, match="max_processes"):
        ProcessSupervisor(tmp_path, max_processes=0, use_cgroups=False)
    sup = ProcessSupervisor(tmp_path, use_cgroups=False)
    try:
        with pytest.raises(ConflictError, match="recover"):
            sup.start(make())
        assert sup.recover() == []
        with pytest.raises(InvalidArgumentError, match="grace_s"):
            sup.start(make(grace_s=-1.0))
    finally:
        sup.close()


def test_cgroup_detection_says_why_it_cannot_be_used(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\nproc /proc proc rw 0 0\n")
    assert detect("feitian/x", str(mounts)).startswith("no cgroup v1 hierarchy for cpu, memory, pids")
    mounts.write_text(f"cgroup {tmp_path}/cpu cgroup rw,cpu,cpuacct 0 0\ncgroup {tmp_path}/mem cgroup rw,memory 0 0\n")
    assert detect("feitian/x", str(mounts)).startswith("no cgroup v1 hierarchy for pids")
