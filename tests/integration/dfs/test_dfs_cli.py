"""`feitian dfs` against a secured local cluster (`feitian cluster up`), and Zhongkui's part: capabilities on
path prefixes for users, chunk tokens at chunk servers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from feitian.deploy.cluster import LocalCluster
from feitian.dfs.chunk_messages import ReadChunk
from feitian.dfs.local import connect_local
from feitian.dfs.master_messages import Locate, LocateReply
from feitian.errors import PermissionDeniedError, UnauthenticatedError
from feitian.rpc import ClientConfig
from feitian.testing.cli import feitian

MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = str(tmp_path_factory.mktemp("dfs-cli") / "cluster")
    feitian("cluster", "up", "--dir", directory, "--echo", "0", "--no-proxy", "--kv", "0", check=True, timeout=120)
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
