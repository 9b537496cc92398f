"""One node at a time: `feitian cluster stop|start|restart NODE...` keep the cluster state true (issue 16,
friction 2); a node whose peers died, then stopped, logs no "exception was never retrieved" (bug 6); a lost
quorum is named, `coord --timeout` bounds a command, and even replica counts are refused (friction 5)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from feitian.deploy.cluster import LocalCluster
from feitian.runtime.procs import is_running, signal_process
from feitian.testing.cli import FEITIAN, feitian
from feitian.testing.waiting import wait_until

UNRETRIEVED = "exception was never retrieved"


def up(cluster_dir: str, *args: str) -> None:
    feitian("cluster", "up", "--dir", cluster_dir, "--no-proxy", "--kv", "0", "--dfs-masters", "0", *args, check=True)


def states(cluster_dir: str) -> dict[str, str]:
    status = feitian("cluster", "status", "--cluster", cluster_dir, "--json")
    return {r["name"]: r["state"] for r in json.loads(status.stdout)["processes"]}


def coord_leader(cluster_dir: str) -> str:
    """The name of the coord replica that leads, once one does."""
    leaders: list[str] = []

    def elected() -> bool:
        rows = json.loads(feitian("coord", "status", "--cluster", cluster_dir, "--json").stdout)
        leaders[:] = [r["address"] for r in rows if r.get("status") and r["status"]["replica"]["role"] == "leader"]
        return bool(leaders)

    wait_until(elected, timeout_s=20, what="a coord leader is elected")
    return next(p.name for p in LocalCluster(cluster_dir).load().processes if leaders[0] in p.addresses)


def test_stop_start_restart_nodes(cluster_dir: str) -> None:
    up(cluster_dir, "--echo", "1", "--coord", "3")
    lc = LocalCluster(cluster_dir)
    before = lc.load()
    old = before.find("coord-2")
    # status shows each replica's REST URL (friction 6), in text and in JSON.
    rest = old.extra["rest"]
    assert rest.startswith("https://127.0.0.1:")
    assert f"rest={rest}" in feitian("cluster", "status", "--cluster", cluster_dir, check=True).stdout
    rows = json.loads(feitian("cluster", "status", "--cluster", cluster_dir, "--json", check=True).stdout)
    assert next(r for r in rows["processes"] if r["name"] == "coord-2")["extra"]["rest"] == rest

    stop = feitian("cluster", "stop", "coord-2", "--cluster", cluster_dir, "--json", check=True)
    assert json.loads(stop.stdout) == {"dir": lc.dir, "stopped": ["coord-2"], "not_running": [], "would_not_stop": []}
    assert not is_running(old.ref)
    assert states(cluster_dir)["coord-2"] == "stopped"
    # Two replicas of three keep serving.
    feitian("coord", "create", "/f2", "while-stopped", "--cluster", cluster_dir, check=True)
    again = feitian("cluster", "stop", "coord-2", "--cluster", cluster_dir, check=True)
    assert "coord-2 was not running" in again.stderr

    start = feitian("cluster", "start", "coord-2", "--cluster", cluster_dir, "--json", check=True)
    started = json.loads(start.stdout)["started"]
    assert [p["name"] for p in started] == ["coord-2"]
    new = lc.load().find("coord-2")
    assert new.pid == started[0]["pid"] != old.pid and is_running(new.ref)
    assert new.addresses == old.addresses and new.extra["rest"] == old.extra["rest"]
    assert states(cluster_dir) == {p.name: "ok" for p in before.processes}

    # It serves: it answers Nuwa's status call and catches up with what was written while it was down.
    def caught_up() -> bool:
        rows = json.loads(feitian("coord", "status", "--cluster", cluster_dir, "--json").stdout)
        revisions = {r["address"]: r["status"]["revision"] for r in rows if r.get("status")}
        return len(revisions) == 3 and revisions[new.addresses[0]] == max(revisions.values())

    wait_until(caught_up, timeout_s=20, what="coord-2 answers and has every write")
    running = feitian("cluster", "start", "coord-2", "--cluster", cluster_dir, check=True)
    assert "coord-2 is already running" in running.stderr

    # restart: a new process on the same address; `down` then stops the restarted one too.
    echo = lc.load().find("echo-1")
    feitian("cluster", "restart", "echo-1", "--cluster", cluster_dir, check=True)
    restarted = lc.load().find("echo-1")
    assert not is_running(echo.ref) and is_running(restarted.ref) and restarted.addresses == echo.addresses
    ping = feitian("rpc", "ping", "echo-1", "--cluster", cluster_dir, "--json", check=True)
    assert json.loads(ping.stdout)[0]["health"]["server_name"] == "echo-1"

    # A node started by hand (as the issue did) is named by status, and `start` will not run a second copy.
    feitian("cluster", "stop", "echo-1", "--cluster", cluster_dir, check=True)
    by_hand = subprocess.Popen(
        [*FEITIAN, "node", "run", "echo", "--config", restarted.config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: "not started by the cluster" in feitian("cluster", "status", "--cluster", cluster_dir).stdout,
            timeout_s=20,
            what="status names the echo node started by hand",
        )
        second = feitian("cluster", "start", "echo-1", "--cluster", cluster_dir)
        assert second.returncode == 5 and f"error: start echo-1: pid {by_hand.pid} serves as echo-1" in second.stderr
    finally:
        by_hand.terminate()
        by_hand.wait(timeout=30)
    feitian("cluster", "start", "echo-1", "--cluster", cluster_dir, check=True)
    restarted = lc.load().find("echo-1")

    # Bad names: nothing happens, exit 4, every unknown name said, and the known ones listed.
    bad = feitian("cluster", "stop", "coord-9", "echo-1", "nope", "--cluster", cluster_dir)
    assert bad.returncode == 4 and "error: no node named 'coord-9', 'nope'" in bad.stderr
    assert "hint: its nodes are: authority, echo-1, coord-1" in bad.stderr and "Traceback" not in bad.stderr
    assert is_running(restarted.ref)
    assert feitian("cluster", "start", "--cluster", cluster_dir).returncode == 2  # no name: usage

    refs = [p.ref for p in lc.load().processes]
    down = feitian("cluster", "down", "--cluster", cluster_dir, "--json", check=True)
    assert sorted(json.loads(down.stdout)["stopped"]) == sorted(p.name for p in before.processes)
    assert not any(is_running(r) for r in refs)


def test_restart_a_chunkserver(cluster_dir: str) -> None:
    feitian(
        "cluster", "up", "--dir", cluster_dir, "--echo", "0", "--no-proxy", "--kv", "0", "--coord", "0",
        "--dfs-masters", "3", "--chunkservers", "3", "--insecure", check=True,
    )  # fmt: skip
    lc = LocalCluster(cluster_dir)
    old = lc.load().find("chunkserver-2")
    out = feitian("cluster", "restart", "chunkserver-2", "--cluster", cluster_dir, "--json", check=True)
    assert json.loads(out.stdout)["stopped"] == ["chunkserver-2"]
    new = lc.load().find("chunkserver-2")
    assert new.pid != old.pid and is_running(new.ref) and not is_running(old.ref)
    assert new.addresses == old.addresses
    assert all(s == "ok" for s in states(cluster_dir).values())
    # The masters know it again: it is listed as a live server.
    wait_until(
        lambda: "chunkserver-2" in feitian("dfs", "servers", "--cluster", cluster_dir).stdout,
        timeout_s=20,
        what="the restarted chunk server is listed by the masters",
    )


def test_no_unretrieved_exception_when_peers_die_and_a_node_stops(cluster_dir: str) -> None:
    up(cluster_dir, "--echo", "1", "--coord", "3")
    lc = LocalCluster(cluster_dir)
    state = lc.load()
    echo_log = Path(state.find("echo-1").log)
    wait_until(
        lambda: "echo-1" in feitian("coord", "ls", "/services/echo", "--cluster", cluster_dir).stdout,
        timeout_s=20,
        what="echo-1 is registered in Nuwa (under its session)",
    )
    # Two of three replicas die: no leader can be elected, so the echo node's Nuwa client keeps trying every
    # replica, each attempt bounded by its own deadline while the connection attempts to the dead ones go on.
    leader = coord_leader(cluster_dir)
    follower = next(n for n in ("coord-1", "coord-2") if n != leader)
    dead = [state.find(leader), state.find(follower)]
    for proc in dead:
        assert signal_process(proc.ref, signal.SIGKILL)

    def lines(text: str) -> int:
        return sum(text in line for line in echo_log.read_text().splitlines())

    # The session is lost, and each attempt to make a new one gives up after 10 s, trying the dead replicas with
    # 1 s attempts while their connect tasks go on for 5 s: wait for two of them.
    wait_until(
        lambda: lines("cannot register /services/echo/echo-1 yet") >= 2,
        timeout_s=60,
        what="echo-1 fails twice to register again",
    )
    feitian("cluster", "stop", "echo-1", "--cluster", cluster_dir, check=True)
    text = echo_log.read_text()
    assert "node echo-1 stopped" in text
    assert UNRETRIEVED not in text, text
    feitian("cluster", "down", "--cluster", cluster_dir, check=True)
    for log in Path(cluster_dir, "logs").glob("*.log"):
        assert UNRETRIEVED not in log.read_text(), log


def test_lost_quorum_is_named_and_timeout_bounds_coord_commands(cluster_dir: str) -> None:
    for count in ("--coord", "2"), ("--kv", "4"), ("--dfs-masters", "6"):  # a majority of an even count
        refused = feitian("cluster", "up", "--dir", cluster_dir, *count)
        assert (
            refused.returncode == 2 and f"error: Invalid value for '{count[0]}': {count[1]} replicas" in refused.stderr
        )
        assert "odd number" in refused.stderr and "Traceback" not in refused.stderr
    assert not Path(cluster_dir).exists()  # refused before anything was made

    up(cluster_dir, "--echo", "0", "--coord", "3", "--insecure")
    assert feitian("coord", "set", "/q", "v", "--timeout", "0", "--cluster", cluster_dir).returncode == 2
    feitian("coord", "create", "/q", "v1", "--timeout", "20", "--cluster", cluster_dir, check=True)
    feitian("cluster", "stop", "coord-1", "coord-2", "--cluster", cluster_dir, check=True)
    started = time.monotonic()
    lost = feitian("coord", "set", "/q", "v2", "--timeout", "3", "--cluster", cluster_dir)
    elapsed = time.monotonic() - started
    assert lost.returncode == 3, lost.stderr
    assert "no leader: quorum lost? 1 of 3 replicas answered within 3s" in lost.stderr
    assert "cannot connect: Connection refused" in lost.stderr and "[reason=no_leader]" in lost.stderr
    assert "hint: the replicas elect a leader only while a majority (2 of 3)" in lost.stderr
    assert elapsed < 3 + 5, elapsed  # the bound, plus the start of a Python process on a busy machine

    feitian("cluster", "stop", "coord-3", "--cluster", cluster_dir, check=True)
    gone = feitian("coord", "ls", "/", "--timeout", "2", "--cluster", cluster_dir)
    assert gone.returncode == 3 and "no replica of" in gone.stderr and "answered within 2s" in gone.stderr
    assert "[reason=unreachable]" in gone.stderr

    feitian("cluster", "start", "coord-1", "coord-2", "coord-3", "--cluster", cluster_dir, check=True)
    back = feitian("coord", "get", "/q", "--timeout", "20", "--cluster", cluster_dir, check=True)
    # v1, or v2: if coord-3 still led when the others stopped, it put the write in its log before it found the
    # quorum gone; that write's outcome was unknown, and Raft may commit it once a majority is back.
    assert back.stdout.strip() in ("v1", "v2")
