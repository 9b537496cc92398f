"""A restarted Tubo re-adopts the processes of the one before it: the supervisor runs in a real process that is
SIGKILLed; its processes run on; a new supervisor on the same root finds them, with the real exit status of
what ended while no Tubo was running, and never mistakes a reused pid for its process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from tubo_fixtures import Make, Supervisors, ended, gate, needs_cgroups, open_gate

from feitian.runtime.files import atomic_write
from feitian.runtime.procs import ProcessRef, is_running, signal_process, start_time_of, wait_gone
from feitian.sched.tubo import ProcessSpec, ProcState
from feitian.sched.tubo.supervisor import _Record
from feitian.testing.waiting import wait_until

TUBO = """
import json, sys
from pathlib import Path
from feitian.sched.tubo import ProcessSpec, ProcessSupervisor
root, prefix, fifo, ready, cgroups = sys.argv[1:6]
sup = ProcessSupervisor(Path(root), cgroup_prefix=prefix, use_cgroups=cgroups == "1")
sup.recover()
started = {}
for spec in (
    ProcessSpec("live", "a", ["sleep", "1000"]),
    ProcessSpec("exits", "a", ["sh", "-c", f"read x < {fifo}; exit 42"]),
    ProcessSpec("stopping", "a", ["sh", "-c", f"trap '' TERM; touch {ready}; while :; do sleep 1; done"]),
):
    status = sup.start(spec)
    started[spec.proc_id] = [status.pid, status.start_time]
from feitian.testing.waiting import wait_until
wait_until(Path(ready).exists)
sup.stop("stopping", grace_s=1.0)
print(json.dumps(started), flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("cgroups", [pytest.param(True, marks=needs_cgroups), False])
def test_restarted_tubo_readopts_its_processes(supervisors: Supervisors, tmp_path: Path, cgroups: bool) -> None:
    fifo = gate(tmp_path, "gate")
    args = [str(supervisors.root), supervisors.prefix, str(fifo), str(tmp_path / "ready"), "1" if cgroups else "0"]
    tubo = subprocess.Popen(
        [sys.executable, "-c", TUBO, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert tubo.stdout is not None
        started = {k: ProcessRef(*v) for k, v in json.loads(tubo.stdout.readline()).items()}
    finally:
        tubo.kill()  # SIGKILL: Tubo dies without a word
        tubo.wait()
    assert all(is_running(ref) for ref in started.values()), "the processes outlive their Tubo"

    open_gate(fifo)  # 'exits' ends while no Tubo runs: its shim records the status
    wait_until((supervisors.root / "procs" / "exits" / "exit").exists, what="the shim wrote the exit status")

    sup = supervisors(use_cgroups=cgroups)  # recover() is called by the fixture
    live = sup.get("live")
    assert (live.state, live.ref) == (ProcState.RUNNING, started["live"])
    exits = sup.get("exits")
    assert (exits.state, exits.exit_code) == (ProcState.FAILED, 42)
    assert exits.ended_at_ns > 0
    # The stop order given before the crash survives it: SIGKILL when its grace (1 s) is over.
    stopping = ended(sup, "stopping")
    assert (stopping.state, stopping.signal) == (ProcState.KILLED, 9), stopping

    sup.stop("live", grace_s=5)
    live = ended(sup, "live")
    assert (live.state, live.signal) == (ProcState.KILLED, signal.SIGTERM)
    assert not is_running(started["live"])


def _rewrite_record(path: Path, **refs: ProcessRef) -> None:
    data = msgspec.json.decode(path.read_bytes())
    data.update({k: msgspec.to_builtins(v) for k, v in refs.items()})
    path.write_bytes(msgspec.json.encode(data))


@pytest.mark.parametrize("cgroups", [pytest.param(True, marks=needs_cgroups), False])
def test_vanished_process_is_lost_and_a_reused_pid_is_not_mistaken(
    supervisors: Make, tmp_path: Path, cgroups: bool
) -> None:
    first = supervisors(use_cgroups=cgroups)
    victim = first.start(ProcessSpec("victim", "a", ["sleep", "1000"]))
    record = msgspec.json.decode((first.root / "procs" / "victim" / "record").read_bytes())
    shim = ProcessRef(**record["shim"])
    first.close()  # Tubo is gone; then its shim and worker are SIGKILLed: no exit status is written
    for ref in (shim, victim.ref):
        signal_process(ref, signal.SIGKILL)
    assert wait_gone([shim, victim.ref], 10) == []
    # Another program now has the pid the record names (simulated: the record points at it, start time kept).
    other = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    while start_time_of(other.pid) == victim.start_time:  # started in the same clock tick: not a reuse to test
        other.kill()
        other.wait()
        other = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        reused = ProcessRef(other.pid, victim.start_time)
        _rewrite_record(first.root / "procs" / "victim" / "record", worker=reused, shim=reused)
        second = supervisors(use_cgroups=cgroups)
        lost = second.get("victim")
        assert lost.state is ProcState.LOST and "no exit status" in lost.detail
        assert other.poll() is None, "the unrelated process was not signalled"
    finally:
        other.kill()
        other.wait()


@needs_cgroups
def test_recover_sweeps_cgroups_no_record_knows(supervisors: Make) -> None:
    first = supervisors()
    assert first.cgroups is not None
    first.cgroups.create("ghost", cpu_millis=100, memory_bytes=64 << 20, max_pids=10)
    stray = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        for procs in first.cgroups.procs_files("ghost"):
            Path(procs).write_text(str(stray.pid))
        first.close()
        second = supervisors()
        assert second.list() == []
        assert stray.wait(timeout=10) == -signal.SIGKILL
        wait_until(lambda: (second.poll(), not first.cgroups.exists("ghost"))[1], what="ghost removed")
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def test_one_supervisor_per_root(supervisors: Make) -> None:
    from feitian.errors import ConflictError

    supervisors(use_cgroups=False)
    with pytest.raises(ConflictError, match="already open"):
        supervisors(use_cgroups=False)


def test_a_start_cut_short_by_a_crash_is_lost(supervisors: Make) -> None:
    first = supervisors(use_cgroups=False)
    first.close()
    # What a start leaves when Tubo dies between its first record and the spawn: a record without pids.
    proc_dir = supervisors.root / "procs" / "half"
    proc_dir.mkdir()
    atomic_write(proc_dir / "record", msgspec.json.encode(_Record(ProcessSpec("half", "a", ["true"]), 1)))
    second = supervisors(use_cgroups=False)
    half = second.get("half")
    assert (half.state, half.detail, half.pid) == (ProcState.LOST, "Tubo stopped while starting it", 0)
    second.forget("half")
    assert not proc_dir.exists()


def test_ended_records_are_kept_up_to_max_ended(supervisors: Make) -> None:
    sup = supervisors(use_cgroups=False, max_ended=1)
    sup.start(ProcessSpec("first", "a", ["true"]))
    ended(sup, "first")
    sup.start(ProcessSpec("second", "a", ["true"]))
    ended(sup, "second")
    sup.poll()
    assert [s.proc_id for s in sup.list()] == ["second"], "the oldest ended record is forgotten"
