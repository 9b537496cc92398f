"""The `feitian` command against a real local cluster: processes, health, exit codes, clean shutdown."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from feitian.deploy.cluster import LocalCluster
from feitian.runtime.procs import is_running, signal_process
from feitian.testing.cli import feitian


def test_cluster_lifecycle(cluster_dir: str) -> None:
    up = feitian("cluster", "up", "--dir", cluster_dir, "--json", check=True)
    state = json.loads(up.stdout)
    procs = {p["name"]: p for p in state["processes"]}
    assert set(procs) >= {"authority", "echo-1", "echo-2", "rpc-proxy-1", "kv-1", "kv-2", "kv-3"}
    assert {n for n in procs if n.startswith("coord-")} == {"coord-1", "coord-2", "coord-3"}
    assert {n for n in procs if n.startswith(("dfs-master-", "chunkserver-"))} == {
        "dfs-master-1", "dfs-master-2", "dfs-master-3", "chunkserver-1", "chunkserver-2", "chunkserver-3",
        "chunkserver-4",
    }  # fmt: skip
    assert state["secure"] is True
    lc = LocalCluster(cluster_dir)
    refs = [p.ref for p in lc.load().processes]
    assert all(is_running(r) for r in refs)
    for p in procs.values():
        assert Path(p["log"]).exists() and p["addresses"][0].startswith("tcp://127.0.0.1:")

    status = feitian("cluster", "status", "--cluster", cluster_dir, "--json", check=True)
    rows = json.loads(status.stdout)["processes"]
    assert {r["name"]: r["state"] for r in rows} == {n: "ok" for n in procs}

    ping = feitian("rpc", "ping", "echo-1", "--cluster", cluster_dir, "--json", check=True)
    assert json.loads(ping.stdout)[0]["health"]["server_name"] == "echo-1"
    # A secured cluster's proxy refuses to forward (it would be a confused deputy): docs/security.md.
    via_proxy = feitian("rpc", "ping", "echo-2", "--cluster", cluster_dir, "--proxy")
    assert via_proxy.returncode == 6 and "reason=proxy_disabled" in via_proxy.stderr
    by_service = feitian("rpc", "ping", "nuwa://local/echo", "--count", "2", "--cluster", cluster_dir, check=True)
    assert len(by_service.stdout.splitlines()) == 2
    text = feitian("rpc", "call", "echo-1", "echo.text", "--text", "你好", "--cluster", cluster_dir, check=True)
    assert text.stdout.strip() == "你好"
    mapped = feitian(
        "rpc", "call", "echo-2", "echo.map", "--map", "a=1", "--cluster", cluster_dir, "--json", check=True
    )
    assert json.loads(mapped.stdout) == {"a": "1", "served_by": "echo-2"}

    # The replicated key-value store, over mutual TLS between its replicas.
    assert feitian("kv", "put", "k", "v1", "--cluster", cluster_dir, check=True).stdout.strip() == "k version 1"
    got = feitian("kv", "get", "k", "--cluster", cluster_dir, "--json", check=True)
    assert json.loads(got.stdout) == {"key": "k", "value": "v1", "version": 1}
    conflict = feitian("kv", "put", "k", "v2", "--expect-version", "0", "--cluster", cluster_dir)
    assert conflict.returncode == 5 and "version 0 expected, found 1" in conflict.stderr
    missing = feitian("kv", "get", "nope", "--cluster", cluster_dir)
    assert missing.returncode == 4 and "no such key" in missing.stderr
    kv_status = json.loads(feitian("kv", "status", "--cluster", cluster_dir, "--json", check=True).stdout)
    assert sorted(r["stats"]["role"] for r in kv_status) == ["follower", "follower", "leader"]

    again = feitian("cluster", "up", "--dir", cluster_dir)
    assert again.returncode == 5 and "already running" in again.stderr and "hint:" in again.stderr

    # A process that dies shows up in status, which then exits 3.
    signal_process(lc.load().find("echo-2").ref, signal.SIGKILL)
    status = feitian("cluster", "status", "--cluster", cluster_dir)
    assert status.returncode == 3 and "stopped" in status.stdout and "error: not healthy: echo-2" in status.stderr

    down = feitian("cluster", "down", "--cluster", cluster_dir, "--json", check=True)
    assert sorted(json.loads(down.stdout)["stopped"]) == sorted(n for n in procs if n != "echo-2")
    assert not any(is_running(r) for r in refs)
    assert feitian("cluster", "status", "--cluster", cluster_dir).returncode == 4


def test_cluster_dir_from_environment(cluster_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEITIAN_CLUSTER", cluster_dir)
    feitian("cluster", "up", "--echo", "1", "--no-proxy", "--kv", "0", "--coord", "0", "--dfs-masters", "0", check=True)
    assert feitian("cluster", "status", check=True).returncode == 0
    assert feitian("cluster", "down", check=True).returncode == 0


def test_insecure_cluster_and_its_proxy(cluster_dir: str) -> None:
    up = feitian(
        "cluster", "up", "--dir", cluster_dir, "--echo", "1", "--kv", "0", "--coord", "0", "--dfs-masters", "0",
        "--insecure", check=True,
    )  # fmt: skip
    assert "WARNING: starting an insecure cluster" in up.stderr
    assert not Path(cluster_dir, "security").exists()
    via_proxy = feitian("rpc", "ping", "echo-1", "--cluster", cluster_dir, "--proxy", check=True)
    assert via_proxy.stdout.startswith("ok from echo-1")
    who = feitian("rpc", "call", "echo-1", "echo.whoami", "--text", "", "--cluster", cluster_dir, check=True)
    assert "unauthenticated" in who.stdout


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["rpc", "ping", "tcp://127.0.0.1:1", "--timeout", "0.5"], 3, "error: cannot connect"),
        (["rpc", "ping", "tcp://nowhere"], 2, "has no port"),
        (["rpc", "call", "tcp://127.0.0.1:1", "m"], 2, "exactly one of --text or --map"),
        (["cluster", "status", "--cluster", "/nonexistent/feitian"], 4, "no cluster at"),
        (["cluster", "down", "--cluster", "/nonexistent/feitian"], 4, "no cluster at"),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_errors_and_exit_codes(args: list[str], code: int, text: str) -> None:
    proc = feitian(*args)
    assert proc.returncode == code, proc.stderr
    assert text in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["cluster"],
        ["cluster", "up"],
        ["cluster", "status"],
        ["cluster", "down"],
        ["node", "run"],
        ["rpc"],
        ["rpc", "ping"],
        ["rpc", "call"],
        ["demo"],
        ["bench"],
        ["bench", "rpc"],
        ["bench", "security"],
        ["bench", "consensus"],
        ["bench", "coord-scale"],
        ["kv"],
        ["kv", "put"],
        ["kv", "get"],
        ["kv", "status"],
        ["coord"],
        ["coord", "get"],
        ["coord", "watch"],
        ["coord", "lock"],
        ["coord", "elect"],
        ["coord", "txn"],
        ["coord", "snapshot", "restore"],
        ["key", "create"],
        ["user", "add"],
        ["policy", "grant"],
        ["cap", "request"],
        ["cap", "show"],
        ["token", "mint"],
    ],
)
def test_help_everywhere(args: list[str]) -> None:
    proc = feitian(*args, "--help", check=True)
    assert "Usage: feitian" in proc.stdout


def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    directory = str(tmp_path / "demo")
    proc = feitian("demo", "--dir", directory, timeout=120, check=True)
    out = proc.stdout
    assert "all correct: True" in out and "every length acknowledged: True" in out
    assert "served by: echo-1, echo-1, echo-1, echo-1, echo-1, echo-1" in out
    assert "all 200 writes from before the kill readable (linearizable reads): True" in out
    assert "caught up: applied index" in out
    assert "server-a resigns -> server-b leads" in out
    assert "client a's session ends -> client b holds the lock" in out
    assert "deleted /demo/config/db" in out
    assert "resolved through Nuwa, served by:" in out and "(lookups sent to Nuwa: 1)" in out
    assert "read it back at once (other replicas serve it)" in out and "identical: True" in out  # Pangu
    assert "read back: identical True; fsck: healthy" in out
    assert "0 would not stop" in out
    assert not Path(directory, "cluster.json").exists()
