"""`feitian sched …` against a cluster started as users start one, `feitian cluster up` (secured: the CLI acts as
the admin identity), with its two FuxiMasters and four Tubos: every command as a real subprocess, its output,
its JSON and its exit code; each user mistake an `error:` line and a documented exit code, never a traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feitian.deploy import LocalCluster
from feitian.testing.cli import FEITIAN, feitian
from feitian.testing.waiting import wait_until

MACHINES = [f"chunkserver-{i}" for i in range(1, 5)]
PY = sys.executable  # Tubo gives its processes a clean PATH: name the interpreter by its full path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`feitian cluster up` (Nuwa, Pangu, 2 FuxiMasters, 4 Tubos), once for the module; afterwards `down` stops
    the cluster's processes and what its Tubos started, by pid."""
    directory = str(tmp_path_factory.mktemp("schedcli") / "cluster")
    lc = LocalCluster(directory)
    try:
        feitian("cluster", "up", "--dir", directory, "--echo", "0", "--kv", "0", "--no-proxy", check=True, timeout=120)
        wait_until(lambda: _machines_ready(directory), 60, "a FuxiMaster leading 4 machines")
        yield directory
    finally:
        if Path(lc.state_path).exists():
            assert lc.down(grace_s=5)[1] == []


def _machines_ready(directory: str) -> bool:
    proc = feitian("sched", "status", "--json", "--timeout", "2", "--cluster", directory)
    if proc.returncode != 0:
        return False
    status = json.loads(proc.stdout)
    return bool(status["leader"]) and not status["recovering"] and status["machines"] == 4


def run_sched(cluster: str, *args: str, check: bool = False, timeout: float = 120) -> Any:
    """``feitian sched ARGS --cluster CLUSTER`` (the option goes before a ``--``)."""
    end = args.index("--") if "--" in args else len(args)
    return feitian("sched", *args[:end], "--cluster", cluster, *args[end:], check=check, timeout=timeout)


def sched(cluster: str, *args: str) -> Any:
    """``feitian sched ARGS --json`` that must succeed: its JSON."""
    end = args.index("--") if "--" in args else len(args)
    return json.loads(run_sched(cluster, *args[:end], "--json", *args[end:], check=True).stdout)


def refused(proc: Any, code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr  # after any progress lines (submit --wait)
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_nodes_lists_the_four_machines_healthy(cluster: str) -> None:
    nodes = sched(cluster, "nodes")
    assert sorted(n["name"] for n in nodes) == MACHINES
    for node in nodes:
        assert node["healthy"] is True, node
        assert node["capacity"]["cpu"] > 0 and node["capacity"]["memory"] > 0
        assert node["free"]["cpu"] <= node["capacity"]["cpu"]
        assert node["rack"] in ("r1", "r2", "r3")
    table = run_sched(cluster, "nodes", check=True).stdout
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["MACHINE", "RACK"] and "HEARTBEAT" in lines[0]
    assert len(lines) == 5 and all(" cores " in line and " ok " in line for line in lines[1:]), table


def test_status_names_the_leader(cluster: str) -> None:
    status = sched(cluster, "status")
    assert status["leader"] is True and status["name"] in ("fuxi-master-1", "fuxi-master-2")
    assert status["epoch"] >= 1 and status["machines"] == 4
    text = run_sched(cluster, "status", check=True).stdout
    assert f"leader:       {status['name']}" in text and "machines:     4" in text


def test_submit_wait_runs_the_command_and_exits_0(cluster: str) -> None:
    proc = run_sched(cluster, "submit", "hello", "--wait", "--", PY, "-c", "print(1)")
    assert proc.returncode == 0, proc.stderr
    app_id = proc.stdout.strip()
    assert app_id.startswith("app-")
    assert f"{app_id}: succeeded" in proc.stderr and f"{app_id}: running" in proc.stderr
    info = sched(cluster, "app", app_id)
    assert info["state"] == "succeeded" and info["exit_code"] == 0 and info["name"] == "hello"
    assert info["command"] == [PY, "-c", "print(1)"]


def test_submit_wait_json_with_a_shape_and_env(cluster: str) -> None:
    script = "import os, sys; sys.exit(0 if os.environ['GREETING'] == 'hi there' else 9)"
    info = sched(
        cluster, "submit", "shaped", "--wait", "--cpu", "250", "--memory", "128MiB", "--env", "GREETING=hi there",
        "--priority", "7", "--", PY, "-c", script,
    )  # fmt: skip
    assert info["state"] == "succeeded" and info["exit_code"] == 0, info
    assert info["priority"] == 7 and info["group"] == "default"


def test_submit_wait_of_a_failing_command_exits_1(cluster: str) -> None:
    proc = run_sched(cluster, "submit", "doomed", "--wait", "--max-attempts", "1", "--", PY, "-c", "exit(3)")
    refused(proc, 1, "failed: exit 3", "exit code 3")
    app_id = proc.stdout.strip()
    assert f"error: application {app_id} (doomed) failed" in proc.stderr
    info = sched(cluster, "app", app_id)
    assert info["state"] == "failed" and info["attempts"] == 1


def test_apps_app_and_kill(cluster: str) -> None:
    app_id = sched(cluster, "submit", "sleeper", "--", PY, "-c", "import time; time.sleep(600)")["app_id"]
    wait_until(lambda: sched(cluster, "app", app_id)["state"] == "running", 60, f"{app_id} running")
    live = sched(cluster, "apps")
    assert app_id in [a["app_id"] for a in live]
    assert all(a["state"] in ("pending", "running") for a in live)
    table = run_sched(cluster, "apps", check=True).stdout
    assert any(line.startswith(app_id) and " sleeper " in line and " running " in line for line in table.splitlines())
    machine = sched(cluster, "app", app_id)["master_machine"]
    assert machine in MACHINES
    assert {n["name"]: n["processes"] for n in sched(cluster, "nodes")}[machine] >= 1

    killed = sched(cluster, "kill", app_id)
    assert killed["state"] == "killed" and killed["app_id"] == app_id
    assert sched(cluster, "app", app_id)["detail"] == "killed by a user"
    assert app_id not in [a["app_id"] for a in sched(cluster, "apps")]
    assert app_id in [a["app_id"] for a in sched(cluster, "apps", "--all")]
    # its process is stopped on its machine (the Tubo's report reaches the master)
    wait_until(lambda: {n["name"]: n["processes"] for n in sched(cluster, "nodes")}[machine] == 0, 60, "stopped")
    assert sched(cluster, "kill", app_id)["state"] == "killed"  # killing an ended application changes nothing


def test_ctrl_c_stops_the_waiting_not_the_application(cluster: str) -> None:
    args = ["submit", "patient", "--wait", "--cluster", cluster, "--", PY, "-c", "import time; time.sleep(600)"]
    proc = subprocess.Popen([*FEITIAN, "sched", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        app_id = proc.stdout.readline().strip()
        assert app_id.startswith("app-")
        while "running" not in (line := proc.stderr.readline()):
            assert line, "submit --wait ended before the application ran"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "error: interrupted" in err and f"`feitian sched kill {app_id}`" in err and "Traceback" not in err
    assert sched(cluster, "app", app_id)["state"] == "running"
    assert sched(cluster, "kill", app_id)["state"] == "killed"


def test_quota_set_and_list(cluster: str) -> None:
    groups = sched(cluster, "quota", "set", "batch", "cpu=4000", "memory=8GiB")
    batch = {g["group"]: g for g in groups}["batch"]
    assert batch["quota"] == {"cpu": 4000, "memory": 8 << 30}
    listed = {g["group"]: g for g in sched(cluster, "quota")}
    assert listed["batch"]["quota"] == {"cpu": 4000, "memory": 8 << 30} and listed["default"]["quota"] == {}
    text = run_sched(cluster, "quota", check=True).stdout
    assert any(line.split()[:3] == ["batch", "cpu=4", "cores,"] for line in text.splitlines()), text
    info = sched(cluster, "submit", "in-batch", "--group", "batch", "--wait", "--", PY, "-c", "pass")
    assert info["group"] == "batch" and info["state"] == "succeeded"


def test_submit_runs_the_master_in_its_package(cluster: str, tmp_path: Path) -> None:
    source = tmp_path / "tool"
    source.mkdir()
    (source / "main.py").write_text("import sys; sys.exit(0 if __name__ == '__main__' else 5)\n")
    feitian("pkg", "upload", "tool", str(source), "--cluster", cluster, check=True)
    run = "import os, runpy; runpy.run_path(os.environ['FEITIAN_PACKAGE_DIR'] + '/main.py', run_name='__main__')"
    info = sched(cluster, "submit", "packaged", "--package", "tool", "--wait", "--", PY, "-c", run)
    assert info["state"] == "succeeded" and info["exit_code"] == 0, info  # main.py ran from the unpacked package
    assert info["package"] == "tool@1"  # NAME alone: its latest version at submission, for every attempt


def test_logs_while_running_following_and_after_the_end(cluster: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "print('hello', flush=True); print('world', file=sys.stderr, flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "print('done')\n"
    )
    app_id = sched(cluster, "submit", "talker", "--", PY, "-c", script)["app_id"]
    wait_until(lambda: run_sched(cluster, "logs", app_id).stdout == "hello\n", 60, "its output")
    assert run_sched(cluster, "logs", app_id, "--stderr", check=True).stdout == "world\n"
    master = f"{app_id}.master.1"
    procs = sched(cluster, "app", app_id)["procs"]
    assert [(p["proc_id"], p["kind"], p["state"]) for p in procs] == [(master, "master", "running")]
    assert procs[0]["machine"] in MACHINES
    table = run_sched(cluster, "app", app_id, check=True).stdout
    assert any(line.split()[:4] == [master, "master", procs[0]["machine"], "running"] for line in table.splitlines())
    refused(run_sched(cluster, "logs", app_id, "nope"), 4, f"application {app_id} has no process 'nope'", "hint: ")

    def follower() -> subprocess.Popen[str]:
        args = ["sched", "logs", app_id, master, "--follow", "--cluster", cluster]
        return subprocess.Popen([*FEITIAN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    stopped, follows = follower(), follower()
    try:
        assert stopped.stdout is not None and follows.stdout is not None
        assert stopped.stdout.readline() == "hello\n" and follows.stdout.readline() == "hello\n"
        stopped.send_signal(signal.SIGINT)  # Ctrl-C: stops following, quietly
        _, err = stopped.communicate(timeout=30)
        assert stopped.returncode == 130 and "Traceback" not in err, err
        go.touch()
        out, err = follows.communicate(timeout=60)  # ends by itself when the process has ended
        assert (follows.returncode, out) == (0, "done\n"), err
    finally:
        for proc in (stopped, follows):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sched(cluster, "app", app_id)["state"] == "succeeded"
    assert run_sched(cluster, "logs", app_id, "--tail", "1", check=True).stdout == "done\n"
    lines = run_sched(cluster, "logs", app_id, "--json", check=True).stdout.splitlines()
    chunk = json.loads(lines[0])
    assert (chunk["text"], chunk["running"], chunk["proc_id"], chunk["offset"]) == ("hello\ndone\n", False, master, 0)


BAD_INPUT = [
    (["app", "app-9999999999"], 4, "application 'app-9999999999' does not exist"),
    (["kill", "no-such-app"], 4, "application 'no-such-app' does not exist"),
    (["logs", "app-9999999999"], 4, "application 'app-9999999999' does not exist"),
    (["logs", "app-9999999999", "--tail", "-1"], 2, "'--tail': -1 is not in the range"),
    (["submit", "x", "--group", "nogroup", "--", "/bin/true"], 4, "quota group 'nogroup' does not exist"),
    (["submit", "x", "--priority", "1001", "--", "/bin/true"], 2, "priority 1001 is outside [0, 1000]"),
    (["submit", "x", "--priority", "-1", "--", "/bin/true"], 2, "priority -1 is outside"),
    (["submit", "x", "--cpu", "-5", "--", "/bin/true"], 2, "'--cpu': -5 is not in the range"),
    (["submit", "x", "--cpu", "99999999999", "--", "/bin/true"], 2, "above max_cpu_millicores"),
    (["submit", "x", "--memory", "100TiB", "--", "/bin/true"], 2, "above max_memory_bytes"),
    (["submit", "x", "--memory", "-1GiB", "--", "/bin/true"], 2, "'-1GiB' is not a size"),
    (["submit", "x", "--memory", "12XB", "--", "/bin/true"], 2, "'12XB' is not a size"),
    (["submit", "x", "--env", "NOEQUALS", "--", "/bin/true"], 2, "not NAME=VALUE"),
    (["submit", "x", "--env", "FEITIAN_APP_ID=me", "--", "/bin/true"], 2, "FEITIAN_* variables are set by Tubo"),
    (["submit", "x", "--max-attempts", "1000", "--", "/bin/true"], 2, "max_attempts must be 1..100"),
    (["submit", "x", "--package", "not a name", "--", "/bin/true"], 2, "package name 'not a name'"),
    (["submit", "x", "--package", "nosuch", "--", "/bin/true"], 4, "package nosuch: not found"),
    (["submit", "x", "--package", "tool@9", "--", "/bin/true"], 4, "package tool@9: no such version"),
    (["submit", "x"], 2, "no command given"),
    (["submit", "x", "--"], 2, "no command given"),
    (["quota", "set", "g", "gpu=1"], 2, "'gpu' is not a machine resource"),
    (["quota", "set", "g", "cpu=-1"], 2, "'-1' is negative"),
    (["quota", "set", "g", "cpu=lots"], 2, "'lots' is not a whole number"),
    (["quota", "set", "g", "cpu=99999999999999999"], 2, "above max_cpu_millicores"),
    (["quota", "set", "g", "memory=8XB"], 2, "'8XB' is not a size"),
    (["quota", "set", "g", "cpu"], 2, "'cpu' is not RESOURCE=AMOUNT"),
    (["quota", "set", "a/b", "cpu=1"], 2, "group name 'a/b'"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUT, ids=[" ".join(a) for a, _, _ in BAD_INPUT])
def test_bad_input_is_an_error_line_and_an_exit_code(cluster: str, args: list[str], code: int, message: str) -> None:
    proc = run_sched(cluster, *args)
    refused(proc, code, message)
    assert "hint: " in proc.stderr or code == 2  # usage errors name the bad value; the rest say what to do


def test_bad_input_changed_nothing(cluster: str) -> None:
    assert "g" not in [g["group"] for g in sched(cluster, "quota")]
    assert not [a for a in sched(cluster, "apps", "--all") if a["name"] == "x"]


def test_no_cluster_there(tmp_path: Path) -> None:
    refused(feitian("sched", "nodes", "--cluster", str(tmp_path)), 4, f"no cluster at {tmp_path}", "hint: ")


def test_a_cluster_without_fuxi(tmp_path: Path) -> None:
    directory = str(tmp_path / "c")
    try:
        feitian(
            "cluster", "up", "--dir", directory, "--echo", "1", "--kv", "0", "--coord", "0", "--dfs-masters", "0",
            "--no-proxy", "--insecure",
            check=True,
        )  # fmt: skip
        refused(feitian("sched", "apps", "--cluster", directory), 4, "runs no FuxiMaster", "hint: ")
    finally:
        if Path(directory, "cluster.json").exists():
            LocalCluster(directory).down(grace_s=5)


@pytest.mark.parametrize("command", ["nodes", "apps", "app", "logs", "kill", "submit", "quota", "quota set", "status"])
def test_help_has_an_example(command: str) -> None:
    proc = feitian("sched", *command.split(), "--help", check=True)
    assert "Example" in proc.stdout and f"feitian sched {command}" in proc.stdout


def test_fuximasters_not_running(cluster: str) -> None:
    """Last: both FuxiMasters stopped, a command gives up after --timeout (exit 3); started again, it works."""
    masters = ["fuxi-master-1", "fuxi-master-2"]
    feitian("cluster", "stop", *masters, "--cluster", cluster, check=True)
    try:
        proc = run_sched(cluster, "status", "--timeout", "1")
        refused(proc, 3, "no replica of", "answered within 1s", "hint: ")
    finally:
        feitian("cluster", "start", *masters, "--cluster", cluster, check=True, timeout=120)
    wait_until(lambda: _machines_ready(cluster), 60, "a FuxiMaster leading 4 machines again")
