"""Tubo's process supervisor against real processes and real cgroups: exits, stops with grace, limits."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tubo_fixtures import Make, ended, gate, needs_cgroups, open_gate, spec

from feitian.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError, OverloadedError
from feitian.runtime.procs import is_running
from feitian.sched.tubo import ProcessSpec, ProcState
from feitian.testing.clock import ManualClock
from feitian.testing.waiting import wait_until


@pytest.mark.parametrize("cgroups", [pytest.param(True, marks=needs_cgroups), False])
def test_exit_codes_and_signals_are_reported(supervisors: Make, tmp_path: Path, cgroups: bool) -> None:
    sup = supervisors(use_cgroups=cgroups)
    assert sup.isolation == ("cgroup-v1" if cgroups else "none (disabled by configuration)")
    fifo = gate(tmp_path, "g")
    ok = sup.start(spec("ok", f"read x < {fifo}; exit 0"))
    assert ok.state is ProcState.RUNNING and ok.pid > 0 and is_running(ok.ref)
    assert sup.poll() == [] and sup.get("ok").state is ProcState.RUNNING
    sup.start(spec("bad", "exit 3"))
    sup.start(spec("segv", "kill -SEGV $$"))

    bad = ended(sup, "bad")
    assert (bad.state, bad.exit_code, bad.signal) == (ProcState.FAILED, 3, None)
    segv = ended(sup, "segv")
    assert (segv.state, segv.exit_code, segv.signal) == (ProcState.FAILED, None, 11)
    assert "SIGSEGV" in segv.detail
    open_gate(fifo)
    done = ended(sup, "ok")
    assert (done.state, done.exit_code, done.pid) == (ProcState.FINISHED, 0, ok.pid)
    assert done.ended_at_ns >= done.started_at_ns > 0
    if cgroups:
        assert done.cpu_ns > 0 and done.memory_peak_bytes > 0
        assert sup.cgroups is not None
        wait_until(lambda: (sup.poll(), not sup.cgroups.exists("ok"))[1], what="cgroup removed once empty")
        bases = set(sup.cgroups.bases.values())
        sup.start(spec("still", "exec sleep 1000"))
        sup.close()
        assert all(base.is_dir() for base in bases), "the prefix stays while a process cgroup is in it"
        sup.cgroups.kill_all("still")
        wait_until(lambda: sup.cgroups is not None and sup.cgroups.remove("still"), what="'still' removed")
        sup.close()
        assert not any(base.exists() for base in bases), "close() removes the prefix's empty cgroup directories"


def test_work_dir_env_and_package_path(supervisors: Make, tmp_path: Path) -> None:
    sup = supervisors()
    package = tmp_path / "pkg"
    (package / "bin").mkdir(parents=True)
    tool = package / "bin" / "hello-tool"
    tool.write_text('#!/bin/sh\necho "tool in $PWD $FEITIAN_PROC_ID $FEITIAN_APP_ID $FEITIAN_PACKAGE_DIR $MINE"\n')
    tool.chmod(0o755)
    sup.start(ProcessSpec("p1", "appA", ["hello-tool"], env={"MINE": "x"}, package_dir=str(package)))
    status = ended(sup, "p1")
    assert status.state is ProcState.FINISHED, status.detail
    work = Path(status.work_dir)
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert (work / "stdout.log").read_text() == f"tool in {work} p1 appA {package} x\n"


def test_a_process_inherits_no_descriptor_of_tubo(supervisors: Make, tmp_path: Path) -> None:
    sup = supervisors(use_cgroups=False)
    leaked = os.open(tmp_path / "tubo-secret", os.O_WRONLY | os.O_CREAT)
    os.set_inheritable(leaked, True)  # as if passed down by whatever started Tubo
    try:
        status = sup.start(spec("fds", "ls /proc/$$/fd"))
        assert ended(sup, "fds").state is ProcState.FINISHED
    finally:
        os.close(leaked)
    assert (Path(status.work_dir) / "stdout.log").read_text().split() == ["0", "1", "2"]


def test_bad_starts_are_refused_with_a_named_error(supervisors: Make) -> None:
    sup = supervisors(max_processes=1)
    with pytest.raises(InvalidArgumentError, match="not found on PATH"):
        sup.start(ProcessSpec("x", "a", ["no-such-command-here"]))
    with pytest.raises(InvalidArgumentError, match="package dir /nonexistent/pkg does not exist"):
        sup.start(ProcessSpec("x", "a", ["true"], package_dir="/nonexistent/pkg"))
    with pytest.raises(InvalidArgumentError, match="not an executable file"):
        sup.start(ProcessSpec("x", "a", ["/etc"]))
    sup.start(spec("one", "exec sleep 1000"))
    with pytest.raises(AlreadyExistsError):
        sup.start(spec("one", "true"))
    with pytest.raises(OverloadedError):
        sup.start(spec("two", "true"))
    with pytest.raises(ConflictError, match="still running"):
        sup.forget("one")
    with pytest.raises(NotFoundError):
        sup.stop("nope")
    sup.stop("one", grace_s=0)
    assert ended(sup, "one").state is ProcState.KILLED
    sup.forget("one")
    assert sup.list() == []
    assert not (sup.root / "work" / "one").exists(), "the work dir leaves at once (to the trash)"
    sup.poll()
    assert sup._trash.empty()


@pytest.mark.parametrize("cgroups", [pytest.param(True, marks=needs_cgroups), False])
def test_stop_trapped_sigterm_exits_with_its_code(supervisors: Make, tmp_path: Path, cgroups: bool) -> None:
    sup = supervisors(use_cgroups=cgroups)
    ready = tmp_path / "ready"
    sup.start(spec("t", f"trap 'exit 7' TERM; touch {ready}; while :; do sleep 1; done"))
    wait_until(ready.exists, what="the trap is set")
    sup.stop("t", grace_s=60)
    status = ended(sup, "t")
    assert (status.state, status.exit_code, status.signal) == (ProcState.KILLED, 7, None)
    assert "after SIGTERM" in status.detail


@pytest.mark.parametrize("cgroups", [pytest.param(True, marks=needs_cgroups), False])
def test_stop_ignored_sigterm_is_sigkilled_after_the_grace(supervisors: Make, tmp_path: Path, cgroups: bool) -> None:
    clock = ManualClock()
    sup = supervisors(use_cgroups=cgroups, clock=clock)
    ready = tmp_path / "ready"
    # The worker ignores SIGTERM and so does a child that leaves its process group (setsid): only the cgroup
    # (or, without cgroups, the worker's own SIGKILL) reaches it.
    escapee = "setsid sleep 1000 &" if cgroups else ""  # without cgroups nothing would find it: not isolated
    sup.start(spec("stubborn", f"trap '' TERM; {escapee} touch {ready}; while :; do sleep 1; done"))
    wait_until(ready.exists, what="the trap is set")
    sup.stop("stubborn", grace_s=30)
    for _ in range(20):
        assert sup.poll() == []
    clock.now_ns += 29 * 10**9
    assert sup.poll() == [] and sup.get("stubborn").state is ProcState.RUNNING
    clock.now_ns += 2 * 10**9
    first = sup.poll()  # SIGKILL now; the shim may even have recorded the end by the time the poll looks
    assert len(first) == 1
    status = first[0] if first[0].state.ended else ended(sup, "stubborn")
    if not first[0].state.ended:
        assert first[0].detail == "SIGKILL sent: the grace period is over"
    assert (status.state, status.signal) == (ProcState.KILLED, 9)
    assert "SIGKILL at the end of the grace period" in status.detail
    if cgroups:
        assert sup.cgroups is not None
        wait_until(lambda: (sup.poll(), not sup.cgroups.exists("stubborn"))[1], what="cgroup empty and removed")


@needs_cgroups
def test_memory_hog_is_oom_killed(supervisors: Make) -> None:
    sup = supervisors()
    hog = "b = []\nwhile True: b.append(b'x' * (1 << 20))"
    sup.start(ProcessSpec("hog", "a", [sys.executable, "-S", "-c", hog], memory_bytes=48 << 20))
    status = ended(sup, "hog", timeout_s=60)
    assert status.state is ProcState.OOM_KILLED, status
    assert status.signal == 9 and "memory over its limit of 50331648 bytes" in status.detail
    assert status.memory_peak_bytes >= 40 << 20


@needs_cgroups
def test_cpu_hog_stays_within_its_quota(supervisors: Make) -> None:
    sup = supervisors()
    sup.start(spec("spin", "while :; do :; done", cpu_millis=100))  # a tenth of a core
    assert sup.cgroups is not None
    dirs = sup.cgroups.bases

    def throttled() -> bool:
        usage = sup.usage("spin")
        return usage is not None and usage.nr_throttled >= 5

    wait_until(throttled, timeout_s=30, what="the hog is throttled")
    cpu_stat = dict(line.split() for line in (dirs["cpu"] / "spin" / "cpu.stat").read_text().splitlines())
    usage = sup.usage("spin")
    assert usage is not None and usage.throttled_ns > 0
    # At most its quota (10 ms) per period it ran in, plus scheduler slack.
    assert usage.cpu_ns <= int(cpu_stat["nr_periods"]) * 10_000_000 * 1.5 + 20_000_000
    sup.stop("spin", grace_s=0)
    assert ended(sup, "spin").state is ProcState.KILLED


@needs_cgroups
def test_fork_bomb_stays_inside_pids_max_and_stop_kills_it(supervisors: Make) -> None:
    sup = supervisors()
    sup.start(spec("bomb", "while :; do sleep 1000 & done", max_pids=20))
    assert sup.cgroups is not None
    wait_until(lambda: (u := sup.usage("bomb")) is not None and u.pids_max_hits > 0, what="forks refused")
    assert len(sup.cgroups.pids("bomb")) <= 21  # max_pids and the shim
    sup.stop("bomb", grace_s=0)
    status = ended(sup, "bomb")
    assert status.state is ProcState.KILLED
    wait_until(lambda: (sup.poll(), not sup.cgroups.exists("bomb"))[1], what="cgroup empty and removed")


def test_without_cgroups_memory_is_capped_by_rlimit_as(supervisors: Make) -> None:
    sup = supervisors(use_cgroups=False)
    status = sup.start(spec("lim", "grep 'Max address space' /proc/self/limits", memory_bytes=96 << 20))
    assert ended(sup, "lim").state is ProcState.FINISHED
    assert (Path(status.work_dir) / "stdout.log").read_text().split()[3:5] == [str(96 << 20)] * 2


AS_NOBODY = """
import json, sys
from pathlib import Path
from feitian.sched.tubo import ProcessSpec, ProcessSupervisor
from feitian.testing.waiting import wait_until
sup = ProcessSupervisor(Path(sys.argv[1]), cgroup_prefix="feitian-test/nobody")
sup.recover()
sup.start(ProcessSpec("p", "a", ["sh", "-c", "exit 4"]))
wait_until(lambda: (sup.poll(), sup.get("p").state.ended)[1], timeout_s=20)
print(json.dumps([sup.isolation, sup.get("p").exit_code]))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="runs a Tubo as nobody: needs root")
def test_a_tubo_that_is_not_root_runs_without_isolation_and_says_why() -> None:
    root = Path(tempfile.mkdtemp(prefix="tubo-nobody-"))
    try:
        os.chown(root, 65534, 65534)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        out = subprocess.run(
            [*as_nobody, sys.executable, "-c", AS_NOBODY, str(root)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        isolation, code = json.loads(out.stdout)
        assert isolation.startswith("none (cannot create cgroup ") and "Permission denied" in isolation
        assert code == 4
    finally:
        shutil.rmtree(root)
