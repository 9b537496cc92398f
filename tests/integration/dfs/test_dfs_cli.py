"""`feitian dfs` against a secured local cluster (`feitian cluster up`), and Zhongkui's part: capabilities on
path prefixes for users, chunk tokens at chunk servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from feitian.deploy.cluster import LocalCluster
from feitian.deploy.dfs_local import connect_local
from feitian.dfs.messages.chunk import ReadChunk
from feitian.dfs.messages.master import Locate, LocateReply
from feitian.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from feitian.rpc import ClientConfig
from feitian.runtime.eventloop import run as run_async
from feitian.runtime.procs import signal_process, stop_processes
from feitian.testing.cli import FEITIAN, feitian
from feitian.testing.waiting import wait_for_condition

MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = str(tmp_path_factory.mktemp("dfs-cli") / "cluster")
    feitian(
        "cluster", "up", "--dir", directory, "--echo", "0", "--no-proxy", "--kv", "0", "--fuxi-masters", "0",
        check=True, timeout=120,
    )  # fmt: skip
    try:
        yield directory
    finally:
        LocalCluster(directory).down(grace_s=5)


def dfs(cluster: str, *args: str, check: bool = True, identity: str | None = None) -> CompletedProcess[str]:
    extra = ["--identity", identity] if identity else []
    return feitian("dfs", *args, "--cluster", cluster, *extra, check=check, timeout=120)


def test_cli_round_trip(cluster: str, tmp_path: Path) -> None:
    local = tmp_path / "in.bin"
    data = os.urandom(3 * MiB + 7)
    local.write_bytes(data)
    dfs(cluster, "mkdir", "/cli/data")
    dfs(cluster, "put", str(local), "/cli/data/in.bin")
    again = dfs(cluster, "put", str(local), "/cli/data/in.bin", check=False)
    assert again.returncode == 5 and "already exists" in again.stderr
    dfs(cluster, "put", "-f", str(local), "/cli/data/in.bin")
    out = tmp_path / "out.bin"
    dfs(cluster, "get", "/cli/data/in.bin", str(out))
    assert out.read_bytes() == data
    (tmp_path / "text").write_text("hello, pangu\n")
    dfs(cluster, "put", str(tmp_path / "text"), "/cli/data/text")
    assert dfs(cluster, "cat", "/cli/data/text", "--offset", "7", "--length", "5").stdout == "pangu"
    status = json.loads(dfs(cluster, "stat", "/cli/data/in.bin", "--json").stdout)
    assert status["length"] == len(data) and status["replication"] == 3 and status["kind"] == "file"
    listing = json.loads(dfs(cluster, "ls", "/cli/data", "--json").stdout)
    assert [e["name"] for e in listing] == ["in.bin", "text"]
    dfs(cluster, "mv", "/cli/data/in.bin", "/cli/data/moved.bin")
    assert "moved.bin" in dfs(cluster, "ls", "/cli/data").stdout
    (tmp_path / "line").write_text("one\n")
    dfs(cluster, "append", "/cli/log.txt", str(tmp_path / "line"))
    dfs(cluster, "append", "/cli/log.txt", str(tmp_path / "line"))
    assert dfs(cluster, "cat", "/cli/log.txt").stdout == "one\none\n"
    assert dfs(cluster, "tail", "/cli/log.txt").stdout == "one\none\n"
    report = json.loads(dfs(cluster, "fsck", "--json").stdout)
    assert report["healthy"] and report["files"] == 3 and not report["missing"]
    servers = json.loads(dfs(cluster, "servers", "--json").stdout)
    assert len(servers) == 4 and {s["rack"] for s in servers} == {"r1", "r2", "r3"} and all(s["live"] for s in servers)
    masters = json.loads(dfs(cluster, "status", "--json").stdout)
    assert sorted(m["role"] for m in masters) == ["follower", "follower", "leader"]
    assert "started" in dfs(cluster, "balance").stderr
    dfs(cluster, "rm", "-r", "/cli")
    assert dfs(cluster, "ls", "/cli", check=False).returncode == 4


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["cat", "relative"], 2, "not absolute"),
        (["cat", "/nowhere"], 4, "no such file"),
        (["mkdir", "--no-parents", "/"], 5, "exists"),
        (["decommission", "no-such-server"], 4, "no such chunk server"),
    ],
)
def test_cli_errors(cluster: str, args: list[str], code: int, words: str) -> None:
    proc = dfs(cluster, *args, check=False)
    assert proc.returncode == code and words in proc.stderr and proc.stderr.startswith("error:"), proc.stderr


@pytest.fixture(scope="module")
def alice(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A user who may work under /alice only."""
    keys = tmp_path_factory.mktemp("alice-keys")
    feitian("key", "create", "alice", "--dir", str(keys), check=True)
    feitian("user", "add", "alice", "--pubkey", str(keys / "alice.pub"), "--cluster", cluster, check=True)
    feitian(
        "policy", "grant", "alice", "--resource", "dfs:/alice", "--rights", "read,write,create,list,delete",
        "--cluster", cluster, check=True,
    )  # fmt: skip
    key = str(keys / "alice.key")
    feitian("cap", "request", "--identity", key, "--cluster", cluster, check=True)
    return key


def test_capabilities_on_path_prefixes(cluster: str, alice: str, tmp_path: Path) -> None:
    local = tmp_path / "x"
    local.write_bytes(b"alice's data")
    dfs(cluster, "put", str(local), "/alice/x", identity=alice)
    assert dfs(cluster, "cat", "/alice/x", identity=alice).stdout == "alice's data"
    denied = dfs(cluster, "put", str(local), "/bob/x", check=False, identity=alice)
    assert denied.returncode == 6 and "create" in denied.stderr and "dfs:/bob/x" in denied.stderr
    assert dfs(cluster, "fsck", check=False, identity=alice).returncode == 6
    moved_out = dfs(cluster, "mv", "/alice/x", "/elsewhere", check=False, identity=alice)
    assert moved_out.returncode == 6  # a rename needs create on the destination too
    assert dfs(cluster, "cat", "/alice/x", identity=alice).stdout == "alice's data"


async def test_chunk_servers_need_a_token_for_that_chunk(cluster: str, alice: str) -> None:
    client = await connect_local(cluster, identity=alice)
    try:
        await client.write_file("/alice/one", b"1" * 1000)
        await client.write_file("/alice/two", b"2" * 1000)
        one: LocateReply = await client.master(Locate("/alice/one", 0, 1000))
        two: LocateReply = await client.master(Locate("/alice/two", 0, 1000))
        grant_one, grant_two = one.chunks[0], two.chunks[0]
        server = grant_one.servers[0]
        lc = LocalCluster(cluster)
        async with await lc.client(ClientConfig(name="no-token"), identity=alice) as bare:
            request = ReadChunk(grant_one.location.chunk_id, grant_one.location.version, 0, 10, 1000)
            with pytest.raises(PermissionDeniedError, match="dfs-chunk"):
                await bare.call(server.address, request)  # no token presented
            await bare.present_token(server.address, grant_one.tokens[0])
            reply = await bare.call_full(server.address, request)
            assert bytes(reply.payload) == b"1" * 10
            other = ReadChunk(grant_two.location.chunk_id, grant_two.location.version, 0, 10, 1000)
            if server.server_id in {s.server_id for s in grant_two.servers}:
                with pytest.raises(PermissionDeniedError):
                    await bare.call(server.address, other)  # the token is for another chunk
            elsewhere = grant_one.servers[1]
            with pytest.raises(UnauthenticatedError, match="another receiver"):
                await bare.present_token(elsewhere.address, grant_one.tokens[0])  # minted for another server
            with pytest.raises(UnauthenticatedError, match="replayed"):
                await bare.present_token(server.address, grant_one.tokens[0])
    finally:
        await client.rpc.close()


# -- issue 16: what a new user trips on ---------------------------------------------------------------------------


def test_get_of_a_directory_is_refused_and_writes_nothing(cluster: str, tmp_path: Path) -> None:
    dfs(cluster, "mkdir", "/i16/dir")
    out = tmp_path / "out"
    proc = dfs(cluster, "get", "/i16/dir", str(out), check=False)
    assert proc.returncode == 5 and proc.stderr.startswith("error: get /i16/dir: is a directory"), proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no empty file, no temporary left behind
    (tmp_path / "keep").write_bytes(b"mine")
    missing = dfs(cluster, "get", "/i16/nothing-here", str(tmp_path / "keep"), check=False)
    assert missing.returncode == 4 and (tmp_path / "keep").read_bytes() == b"mine"  # a failed get clobbers nothing


def test_local_file_problems_are_clear_errors(cluster: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    dfs(cluster, "put", "-f", str(tmp_path / "f"), "/i16/f")
    for args, code, words in (
        (["put", str(tmp_path / "nosuchlocal.txt"), "/i16/x"], 4, "nosuchlocal.txt: no such file"),
        (["put", str(tmp_path), "/i16/x"], 2, "is a directory"),
        (["append", "/i16/f", str(tmp_path / "nope")], 4, "no such file"),
        (["get", "/i16/f", "/nonexistent-dir/out.bin"], 4, "/nonexistent-dir/out.bin: no such file or directory"),
        (["get", "/i16/f", "/sys/out.bin"], 6, "/sys/out.bin: permission denied"),  # even root may not write there
    ):
        proc = dfs(cluster, *args, check=False)
        assert proc.returncode == code and proc.stderr.startswith("error:") and words in proc.stderr, (args, proc)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert dfs(cluster, "ls", "/i16/x", check=False).returncode == 4  # nothing was created for the failed puts


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_local_file_is_a_permission_error(cluster: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"x")
    secret.chmod(0)
    proc = dfs(cluster, "put", str(secret), "/i16/secret", check=False)
    assert proc.returncode == 6 and "permission denied" in proc.stderr and "Traceback" not in proc.stderr


def test_a_put_that_cannot_be_placed_is_refused_at_once_and_leaves_nothing(cluster: str, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_bytes(b"small\n")
    started = time.monotonic()
    proc = dfs(cluster, "put", str(small), "/i16/r5.txt", "--replication", "5", check=False)
    # Refused by the master before the file exists, naming why (it used to retry for 30 s, then leave a locked,
    # empty file behind). The bound is loose: far below those 30 s, far above a command's own time.
    assert time.monotonic() - started < 20
    assert proc.returncode == 3 and "replication 5 needs 5 chunk servers" in proc.stderr and "4 can" in proc.stderr
    assert "hint: use --replication 4" in proc.stderr
    assert dfs(cluster, "ls", "/i16/r5.txt", check=False).returncode == 4
    dfs(cluster, "put", str(small), "/i16/r5.txt")  # no lease left to wait out
    assert dfs(cluster, "cat", "/i16/r5.txt").stdout == "small\n"
    zero = dfs(cluster, "put", str(small), "/i16/r0.txt", "--replication", "0", check=False)
    assert zero.returncode == 2 and zero.stderr.startswith("error:") and "--replication" in zero.stderr


def test_ctrl_c_during_a_put_removes_the_file_it_was_creating(cluster: str) -> None:
    put = subprocess.Popen(
        [*FEITIAN, "dfs", "put", "-", "/i16/interrupted.bin", "--cluster", cluster],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        async def created() -> bool:
            client = await connect_local(cluster)
            try:
                return bool((await client.stat("/i16/interrupted.bin")).lease_holder)
            except NotFoundError:
                return False
            finally:
                await client.rpc.close()

        run_async(wait_for_condition(created, 60, "the put created its file"))
        put.send_signal(signal.SIGINT)
        # The put was reading stdin: with more bytes and the end of its input it reaches its next await, where
        # the interrupt ends it.
        _, err = put.communicate(input=b"x" * 1000, timeout=60)
    finally:
        put.kill()
    assert put.returncode == 130 and b"error: interrupted" in err and b"Traceback" not in err
    assert dfs(cluster, "ls", "/i16/interrupted.bin", check=False).returncode == 4  # gone, not locked for 65 s


def test_hints_name_the_cli_flags(cluster: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"f")
    dfs(cluster, "put", "-f", str(tmp_path / "f"), "/i16/h/f")
    dfs(cluster, "put", "-f", str(tmp_path / "f"), "/i16/h/g")
    for args, hint in (
        (["put", str(tmp_path / "f"), "/i16/h/f"], "hint: add -f to replace it"),
        (["cp", "/i16/h/f", "/i16/h/g"], "hint: add -f to replace it"),
        (["mv", "/i16/h/f", "/i16/h/g"], "hint: add -f to replace the destination file"),
        (["rm", "/i16/h"], "hint: add -r to delete the directory"),
        (["mkdir", "--no-parents", "/i16/h/a/b"], "hint: leave out --no-parents"),
    ):
        proc = dfs(cluster, *args, check=False)
        assert proc.returncode != 0 and hint in proc.stderr, (args, proc.stderr)
        assert "overwrite" not in proc.stderr and "recursive=" not in proc.stderr and "parents=" not in proc.stderr
    assert "[default: p]" not in dfs(cluster, "mkdir", "--help").stdout


def test_unix_habits_into_directories_ranges_cp_du_and_locate(cluster: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello, pangu\n")
    dfs(cluster, "mkdir", "/i16/u/in")
    dfs(cluster, "put", str(tmp_path / "a.txt"), "/i16/u/")  # a directory: the file goes into it
    dfs(cluster, "mv", "/i16/u/a.txt", "/i16/u/in/")
    listing = json.loads(dfs(cluster, "ls", "/i16/u/in", "--json").stdout)
    assert [e["name"] for e in listing] == ["a.txt"]
    dfs(cluster, "put", str(tmp_path / "a.txt"), "/i16/u/b.txt")
    dfs(cluster, "mv", "/i16/u/b.txt", "/i16/u/in")
    assert [e["name"] for e in json.loads(dfs(cluster, "ls", "/i16/u/in", "--json").stdout)] == ["a.txt", "b.txt"]
    local_dir = tmp_path / "down"
    local_dir.mkdir()
    dfs(cluster, "get", "/i16/u/in/a.txt", str(local_dir))
    assert (local_dir / "a.txt").read_bytes() == b"hello, pangu\n"
    assert dfs(cluster, "cat", "/i16/u/in/a.txt", "--offset", "7", "--length", "100").stdout == "pangu\n"
    past = dfs(cluster, "cat", "/i16/u/in/a.txt", "--offset", "100")
    assert past.returncode == 0 and past.stdout == ""  # like head -c: nothing past the end, no error
    dfs(cluster, "cp", "/i16/u/in/a.txt", "/i16/u/copy.txt")
    assert dfs(cluster, "cat", "/i16/u/copy.txt").stdout == "hello, pangu\n"
    refused = dfs(cluster, "cp", "/i16/u/copy.txt", "/i16/u/copy.txt", check=False)
    assert refused.returncode == 2 and "same file" in refused.stderr
    usage = json.loads(dfs(cluster, "du", "/i16/u", "--json").stdout)
    assert [(e["path"], e["bytes"], e["replicated_bytes"]) for e in usage["entries"]] == [
        ("/i16/u/copy.txt", 13, 39),
        ("/i16/u/in", 26, 78),
    ]
    total = json.loads(dfs(cluster, "du", "-s", "/i16/u", "--json").stdout)
    assert (total["files"], total["bytes"], total["replicated_bytes"]) == (3, 39, 117)
    assert "/i16/u/in/" in dfs(cluster, "du", "/i16/u").stdout
    where = json.loads(dfs(cluster, "locate", "/i16/u/copy.txt", "--json").stdout)
    (chunk,) = where["chunks"]
    assert chunk["length"] == 13 and chunk["racks"] == 3 and chunk["wanted_racks"] == 3
    assert {r["rack"] for r in chunk["replicas"]} == {"r1", "r2", "r3"}
    assert all(r["state"] in ("good", "unconfirmed") for r in chunk["replicas"])
    assert "chunkserver-" in dfs(cluster, "locate", "/i16/u/copy.txt").stdout


def test_closed_stdout_and_ctrl_c_on_tail_end_quietly(cluster: str, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(40 * MiB))  # more than one piece read: the writes after the first one hit the pipe
    dfs(cluster, "put", "-f", str(big), "/i16/big.bin")
    for verb in (["get", "/i16/big.bin", "-"], ["cat", "/i16/big.bin"]):
        reader = subprocess.Popen(
            [*FEITIAN, "dfs", *verb, "--cluster", cluster], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert reader.stdout is not None
        assert len(reader.stdout.read(10)) == 10
        reader.stdout.close()  # `| head -c 10`
        _, err = reader.communicate(timeout=60)
        assert reader.returncode == 0 and err == b"", (verb, reader.returncode, err)
    (tmp_path / "line").write_bytes(b"small\n")
    dfs(cluster, "put", "-f", str(tmp_path / "line"), "/i16/line.txt")
    follower = subprocess.Popen(
        [*FEITIAN, "dfs", "tail", "-f", "/i16/line.txt", "--cluster", cluster],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == b"small\n"  # following now
        follower.send_signal(signal.SIGINT)  # Ctrl-C is how `tail -f` ends
        _, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0 and err == b""


def test_a_decommissioned_server_is_listed_so_and_recommissioned_by_name(cluster: str) -> None:
    proc = dfs(cluster, "decommission", "chunkserver-4", "--wait", "90")
    assert "decommissioned" in proc.stderr
    servers = {s["server_id"]: s for s in json.loads(dfs(cluster, "servers", "--json").stdout)}
    assert servers["chunkserver-4"]["state"] == "decommissioned" and servers["chunkserver-4"]["chunks"] == 0
    assert "decommissioned" in dfs(cluster, "servers").stdout
    dfs(cluster, "recommission", "chunkserver-4")
    servers = {s["server_id"]: s for s in json.loads(dfs(cluster, "servers", "--json").stdout)}
    assert servers["chunkserver-4"]["state"] == "active"
    assert dfs(cluster, "recommission", "chunkserver-9", check=False).returncode == 4


def test_status_exits_3_with_a_master_down_and_clients_remember_the_leader(cluster: str) -> None:
    leader_file = Path(cluster) / "dfs-leader"
    masters = json.loads(dfs(cluster, "status", "--json").stdout)
    leader = next(m for m in masters if m["role"] == "leader")
    dfs(cluster, "ls", "/")
    address = next(p.addresses[0] for p in LocalCluster(cluster).load().processes if p.name == leader["node"])
    assert leader_file.read_text().strip() == address  # the next command goes there first
    lc = LocalCluster(cluster)
    ref = lc.load().find(leader["node"]).ref
    signal_process(ref, signal.SIGKILL)
    stop_processes([ref], grace_s=5)
    try:
        down = dfs(cluster, "status", check=False)
        assert down.returncode == 3 and "unreachable" in down.stdout and "1 of 3" in down.stderr
        dfs(cluster, "ls", "/")  # finds the new leader and remembers it
        now = json.loads(dfs(cluster, "status", "--json", check=False).stdout)
        new = next(m for m in now if m.get("role") == "leader")
        assert new["node"] != leader["node"] and leader_file.read_text().strip() != address
    finally:
        lc.restart(leader["node"])
    up = dfs(cluster, "status", check=False)
    assert up.returncode == 0, up.stderr
