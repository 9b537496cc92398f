"""`feitian coord ...` against a secured cluster from `feitian cluster up`: every command, JSON output, exit codes,
a refusal by capability (exit 6), echo nodes registered in Nuwa, and a snapshot saved and restored."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from feitian.deploy.cluster import LocalCluster
from feitian.runtime.procs import signal_process
from feitian.testing.cli import FEITIAN, feitian, lock_holder
from feitian.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = str(tmp_path_factory.mktemp("secured") / "cluster")
    up = feitian(
        "cluster", "up", "--dir", directory, "--echo", "1", "--no-proxy", "--kv", "0", "--dfs-masters", "0", "--json"
    )
    try:
        assert up.returncode == 0, up.stderr
        names = {p["name"] for p in json.loads(up.stdout)["processes"]}
        assert names == {"authority", "echo-1", "coord-1", "coord-2", "coord-3"}
        yield directory
    finally:
        LocalCluster(directory).down(grace_s=5)


def nuwa(cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
    return feitian("coord", *args, "--cluster", cluster)


def test_data_commands_and_exit_codes(cluster: str) -> None:
    assert nuwa(cluster, "create", "/apps/web/conf", "v1", "-p").stdout.strip() == "/apps/web/conf"
    assert nuwa(cluster, "get", "/apps/web/conf").stdout == "v1\n"
    got = json.loads(nuwa(cluster, "get", "/apps/web/conf", "--json").stdout)
    assert got["value"] == "v1" and got["stat"]["creator"].startswith("admin:")
    assert nuwa(cluster, "set", "/apps/web/conf", "v2", "--version", "1").returncode == 0
    conflict = nuwa(cluster, "set", "/apps/web/conf", "v3", "--version", "1")
    assert conflict.returncode == 5 and "version 1 expected, found 2" in conflict.stderr
    assert nuwa(cluster, "get", "/apps/nope").returncode == 4
    assert nuwa(cluster, "create", "/apps/web/conf").returncode == 5
    assert nuwa(cluster, "ls", "/apps/").stdout == "web/\n"
    assert json.loads(nuwa(cluster, "stat", "/apps/web/conf", "--json").stdout)["version"] == 2
    ops = json.dumps(
        [{"op": "check", "path": "/apps/web/conf", "version": 2}, {"op": "create", "path": "/apps/web/b", "value": "b"}]
    )
    assert json.loads(nuwa(cluster, "txn", ops, "--json").stdout)["results"][1]["result"] == "created"
    failed = nuwa(cluster, "txn", ops)  # the check passes again, the create fails: nothing applies
    assert failed.returncode == 5 and "txn op 1" in failed.stderr
    assert nuwa(cluster, "rm", "/apps/web/b").returncode == 0
    assert nuwa(cluster, "rm", "/apps/web/b").returncode == 4


def test_a_capability_refusal_exits_6(cluster: str) -> None:
    # echo-1's capabilities cover coord:/services/ (to register itself), not /apps.
    refused = feitian("coord", "set", "/apps/web/conf", "x", "--identity", "echo-1", "--cluster", cluster)
    assert refused.returncode == 6, refused.stderr
    assert "[reason=not_granted]" in refused.stderr and "coord:/apps/web/conf" in refused.stderr
    allowed = feitian("coord", "ls", "/services/", "--identity", "echo-1", "--cluster", cluster)
    assert allowed.returncode == 0, allowed.stderr


def test_echo_nodes_register_in_nuwa(cluster: str) -> None:
    wait_until(lambda: nuwa(cluster, "ls", "/services/echo/").stdout == "echo-1\n", 20, "echo-1 registers")
    address = nuwa(cluster, "get", "/services/echo/echo-1").stdout.strip()
    assert address == LocalCluster(cluster).load().find("echo-1").addresses[0]
    assert json.loads(nuwa(cluster, "stat", "/services/echo/echo-1", "--json").stdout)["ephemeral_owner"] > 0
    ping = feitian("rpc", "ping", "nuwa://local/echo", "--cluster", cluster, "--json")
    assert ping.returncode == 0, ping.stderr


def test_watch_lock_and_elect(cluster: str) -> None:
    watcher = subprocess.Popen(
        [*FEITIAN, "coord", "watch", "/jobs/", "--count", "3", "--json", "--cluster", cluster],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stderr is not None
        assert "watching /jobs/ from revision" in watcher.stderr.readline()
        nuwa(cluster, "create", "/jobs/a", "-p")
        nuwa(cluster, "rm", "/jobs/a")
        out, _ = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    events = [(e["kind"], e["path"]) for e in map(json.loads, out.splitlines())]
    assert events == [("created", "/jobs/"), ("created", "/jobs/a"), ("deleted", "/jobs/a")]

    first = json.loads(nuwa(cluster, "lock", "/locks/cli", "--hold", "0", "--json").stdout)
    second = json.loads(nuwa(cluster, "lock", "/locks/cli", "--hold", "0", "--json").stdout)
    assert second["token"] > first["token"]
    elected = nuwa(cluster, "elect", "boss", "me", "--hold", "0")
    assert elected.returncode == 0 and "elected in boss as 'me'" in elected.stdout
    assert nuwa(cluster, "elect", "boss").returncode == 4  # resigned: nobody leads


def test_snapshot_save_and_restore(cluster: str, tmp_path: Path) -> None:
    nuwa(cluster, "create", "/backup/keep", "before", "-p")
    backup = str(tmp_path / "nuwa.snap")
    saved = nuwa(cluster, "snapshot", "save", backup)
    assert saved.returncode == 0 and "saved revision" in saved.stdout
    nuwa(cluster, "set", "/backup/keep", "after")
    nuwa(cluster, "create", "/backup/new")
    restored = nuwa(cluster, "snapshot", "restore", backup)
    assert restored.returncode == 0, restored.stderr
    assert nuwa(cluster, "get", "/backup/keep").stdout == "before\n"
    assert nuwa(cluster, "get", "/backup/new").returncode == 4
    assert nuwa(cluster, "set", "/backup/keep", "writable again").returncode == 0
    Path(backup).write_bytes(b"not a snapshot")
    assert nuwa(cluster, "snapshot", "restore", backup).returncode != 0


def test_values_from_files_exact_bytes_and_bad_input(cluster: str, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 1024  # 256 KiB of binary: too big for an argument, not for a value
    source = tmp_path / "blob.bin"
    source.write_bytes(blob)
    assert nuwa(cluster, "create", "/files/blob", "--from-file", str(source), "-p").returncode == 0
    raw = subprocess.run([*FEITIAN, "coord", "get", "/files/blob", "--raw", "--cluster", cluster], capture_output=True)
    assert raw.returncode == 0 and raw.stdout == blob
    piped = subprocess.run(
        [*FEITIAN, "coord", "set", "/files/blob", "--from-file", "-", "--cluster", cluster],
        input=b"from stdin",
        capture_output=True,
    )
    assert piped.returncode == 0, piped.stderr
    assert nuwa(cluster, "get", "/files/blob").stdout == "from stdin\n"
    (tmp_path / "big.bin").write_bytes(b"x" * ((1 << 20) + 1))
    too_big = nuwa(cluster, "set", "/files/blob", "--from-file", str(tmp_path / "big.bin"))
    assert too_big.returncode == 2 and "exceeds" in too_big.stderr
    removed = json.loads(nuwa(cluster, "rm", "/files/blob", "--json").stdout)
    assert removed["path"] == "/files/blob" and removed["stat"]["version"] == 2
    # Refused before anything is sent: exit 2, with the problem named.
    for args, message in (
        (("get", "/files/"), "a directory holds no value"),
        (("set", "/files/x"), "give VALUE or --from-file"),
        (("set", "/files/x", "v", "--version", "0"), "--version"),
        (("watch", "/files/", "--count", "0"), "--count"),
        (("lock", "/locks/x", "--ttl", "0"), "ttl_ms 0"),
        (("create", "//x"), "empty name"),
        (("txn", '[{"op": "create", "path": "/n", "value": null}]'), "value must be a string"),
        (("txn", "@/nonexistent/ops.json"), "no file"),
    ):
        result = nuwa(cluster, *args)
        assert result.returncode in (2, 4) and message in result.stderr, (args, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr


def test_try_lock_ephemeral_nodes_and_ctrl_c(cluster: str) -> None:
    holder, held = lock_holder(cluster, "/locks/try")
    token = held["token"]
    try:
        busy = nuwa(cluster, "lock", "/locks/try", "--timeout", "0")
        assert busy.returncode == 7 and "not waiting" in busy.stderr
        holder.send_signal(signal.SIGINT)  # Ctrl-C: the normal end of a held lock
        _, err = holder.communicate(timeout=30)
        assert holder.returncode == 0 and "released /locks/try" in err
    finally:
        holder.kill()
    free = json.loads(nuwa(cluster, "lock", "/locks/try", "--timeout", "0", "--hold", "0", "--json").stdout)
    assert free["token"] > token

    ephemeral = subprocess.Popen(
        [*FEITIAN, "coord", "create", "/live/me", "up", "-p", "--ephemeral", "--cluster", cluster],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert ephemeral.stdout is not None and ephemeral.stdout.readline().strip() == "/live/me"
        assert json.loads(nuwa(cluster, "stat", "/live/me", "--json").stdout)["ephemeral_owner"] > 0
        ephemeral.send_signal(signal.SIGINT)
        assert ephemeral.wait(timeout=30) == 0
    finally:
        ephemeral.kill()
    assert nuwa(cluster, "stat", "/live/me").returncode == 4  # gone with its session


def test_coord_status_exits_3_while_a_replica_is_unreachable(cluster: str) -> None:
    replica = LocalCluster(cluster).load().find("coord-3")
    signal_process(replica.ref, signal.SIGSTOP)
    try:
        status = nuwa(cluster, "status")
        assert status.returncode == 3 and "unreachable" in status.stdout
    finally:
        signal_process(replica.ref, signal.SIGCONT)
    wait_until(lambda: nuwa(cluster, "status").returncode == 0, 30, "coord-3 answers again")


def test_a_stopped_cluster_is_restored_in_place(tmp_path: Path) -> None:
    """`cluster down` removes the state file; restore finds the replicas' data, and `cluster up` serves it."""
    directory = str(tmp_path / "stopped")
    up = ("cluster", "up", "--dir", directory, "--insecure", "--echo", "0", "--no-proxy", "--kv", "0")
    up_args = (*up, "--dfs-masters", "0")
    try:
        assert feitian(*up_args).returncode == 0
        assert nuwa(directory, "create", "/keep", "before").returncode == 0
        backup = str(tmp_path / "nuwa.snap")
        assert nuwa(directory, "snapshot", "save", backup).returncode == 0
        assert nuwa(directory, "set", "/keep", "after").returncode == 0
        assert feitian("cluster", "down", "--cluster", directory).returncode == 0
        restored = nuwa(directory, "snapshot", "restore", backup, "--json")
        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout)["replicas"] == ["coord-1", "coord-2", "coord-3"]
        assert feitian(*up_args).returncode == 0
        assert nuwa(directory, "get", "/keep").stdout == "before\n"
    finally:
        feitian("cluster", "down", "--cluster", directory)
