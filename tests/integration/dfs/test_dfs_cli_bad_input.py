"""Every ``feitian dfs`` command with bad input, against a real (secured) cluster: missing arguments, bad paths,
bad numbers, missing local files, missing remote paths, a directory where a file is expected and the reverse.
Each must answer with an ``error:`` line, the exit code docs/cli.md documents for that kind of mistake, and never
a traceback (issue 16)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from feitian.testing.cli import feitian
from feitian.testing.dfs import DfsCluster

USAGE, UNAVAILABLE, NOT_FOUND, CONFLICT = 2, 3, 4, 5  # docs/cli.md
LOCAL_FILE, LOCAL_DIR, MISSING_LOCAL = "@file", "@dir", "@missing"  # replaced by real local paths


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A cluster holding /bad/f (a file), /bad/g (another), /bad/d/inner (a non-empty directory); and a local
    directory holding a file."""
    cluster = DfsCluster(tmp_path_factory.mktemp("bad-input"), masters=1, chunkservers=3, secure=True)
    cluster.start()
    local = tmp_path_factory.mktemp("local")
    (local / "file").write_bytes(b"0123456789")
    try:

        async def setup() -> None:
            client = await cluster.client()
            try:
                await client.write_file("/bad/f", b"0123456789")
                await client.write_file("/bad/g", b"g")
                await client.mkdir("/bad/d/inner")
            finally:
                await client.rpc.close()

        asyncio.run(setup())
        yield cluster.cluster.dir, local
    finally:
        assert cluster.stop() == []


CASES: list[tuple[list[str], int]] = [
    # put LOCAL REMOTE
    (["put"], USAGE),
    (["put", LOCAL_FILE], USAGE),
    (["put", MISSING_LOCAL, "/bad/x"], NOT_FOUND),
    (["put", LOCAL_DIR, "/bad/x"], USAGE),
    (["put", LOCAL_FILE, "relative"], USAGE),
    (["put", LOCAL_FILE, "/bad/../x"], USAGE),
    (["put", LOCAL_FILE, "/bad//x"], USAGE),
    (["put", LOCAL_FILE, "/bad/f"], CONFLICT),  # exists: -f replaces it
    (["put", LOCAL_FILE, "/bad/f/x"], CONFLICT),  # below a file
    (["put", LOCAL_FILE, "/bad/x", "--replication", "0"], USAGE),
    (["put", LOCAL_FILE, "/bad/x", "--replication", "-1"], USAGE),
    (["put", LOCAL_FILE, "/bad/x", "--replication", "17"], USAGE),
    (["put", LOCAL_FILE, "/bad/x", "--replication", "many"], USAGE),
    (["put", LOCAL_FILE, "/bad/x", "--replication", "4"], UNAVAILABLE),  # 3 chunk servers
    (["put", LOCAL_FILE, "/bad/x", "--chunk-size", "1000"], USAGE),  # not a multiple of 64 KiB
    (["put", LOCAL_FILE, "/bad/x", "--chunk-size", "0"], USAGE),
    (["put", "-", "/bad/d"], USAGE),  # stdin has no name to give a file in a directory
    # get REMOTE LOCAL
    (["get", "/bad/f"], USAGE),
    (["get", "/bad/missing", "@out"], NOT_FOUND),
    (["get", "/bad/d", "@out"], CONFLICT),
    (["get", "relative", "@out"], USAGE),
    (["get", "/bad/f", "/nonexistent-dir/out.bin"], NOT_FOUND),
    # cat REMOTE
    (["cat"], USAGE),
    (["cat", "/bad/missing"], NOT_FOUND),
    (["cat", "/bad/d"], CONFLICT),
    (["cat", "//x"], USAGE),
    (["cat", "/bad/f", "--offset", "-1"], USAGE),
    (["cat", "/bad/f", "--length", "-5"], USAGE),
    (["cat", "/bad/f", "--length", "ten"], USAGE),
    # cp SRC DST
    (["cp", "/bad/f"], USAGE),
    (["cp", "/bad/missing", "/bad/y"], NOT_FOUND),
    (["cp", "/bad/d", "/bad/y"], CONFLICT),
    (["cp", "/bad/f", "/bad/f"], USAGE),
    (["cp", "/bad/f", "/bad/g"], CONFLICT),
    (["cp", "/bad/f", "relative"], USAGE),
    # append REMOTE [LOCAL]
    (["append"], USAGE),
    (["append", "/bad/f", MISSING_LOCAL], NOT_FOUND),
    (["append", "/bad/f", LOCAL_DIR], USAGE),
    (["append", "/bad/d", LOCAL_FILE], CONFLICT),
    (["append", "relative", LOCAL_FILE], USAGE),
    # tail REMOTE
    (["tail"], USAGE),
    (["tail", "/bad/missing"], NOT_FOUND),
    (["tail", "/bad/d"], CONFLICT),
    (["tail", "/bad/f", "--offset", "-3"], USAGE),
    # ls / stat / du / locate
    (["ls", "/bad/missing"], NOT_FOUND),
    (["ls", "relative"], USAGE),
    (["ls", "/bad/f/x"], CONFLICT),
    (["stat"], USAGE),
    (["stat", "/bad/missing"], NOT_FOUND),
    (["stat", "/bad/./f"], USAGE),
    (["du", "/bad/missing"], NOT_FOUND),
    (["du", "relative"], USAGE),
    (["du", "/bad", "--summary", "--depth", "2"], USAGE),
    (["locate"], USAGE),
    (["locate", "/bad/missing"], NOT_FOUND),
    (["locate", "/bad/d"], CONFLICT),
    # rm / mv / mkdir
    (["rm"], USAGE),
    (["rm", "/bad/missing"], NOT_FOUND),
    (["rm", "/bad/d"], CONFLICT),  # not empty: -r
    (["rm", "/"], USAGE),
    (["rm", "relative"], USAGE),
    (["mv", "/bad/f"], USAGE),
    (["mv", "/bad/missing", "/bad/y"], NOT_FOUND),
    (["mv", "/bad/d", "/bad/d/inside"], USAGE),
    (["mv", "/bad/f", "/bad/g"], CONFLICT),  # exists: -f replaces it
    (["mv", "/bad/f", "/nowhere/y"], NOT_FOUND),
    (["mv", "/bad/f", "relative"], USAGE),
    (["mkdir"], USAGE),
    (["mkdir", "relative"], USAGE),
    (["mkdir", "/bad/f/sub"], CONFLICT),
    (["mkdir", "--no-parents", "/bad/x/y/z"], NOT_FOUND),
    (["mkdir", "--no-parents", "/bad/d"], CONFLICT),
    # administration
    (["fsck", "extra"], USAGE),
    (["fsck", "--bogus"], USAGE),
    (["servers", "extra"], USAGE),
    (["balance", "--nope"], USAGE),
    (["status", "extra"], USAGE),
    (["decommission"], USAGE),
    (["decommission", "no-such-server"], NOT_FOUND),
    (["decommission", "chunkserver-1", "--wait", "-1"], USAGE),
    (["decommission", "chunkserver-1", "--wait", "soon"], USAGE),
    (["recommission"], USAGE),
    (["recommission", "no-such-server"], NOT_FOUND),
    (["no-such-command"], USAGE),
]

# Every command, pointed at a directory that holds no cluster, or acting as an identity that does not exist.
VALID_ARGS = {
    "put": [LOCAL_FILE, "/bad/new"],
    "get": ["/bad/f", "@out"],
    "cat": ["/bad/f"],
    "cp": ["/bad/f", "/bad/new"],
    "append": ["/bad/new", LOCAL_FILE],
    "tail": ["/bad/f"],
    "ls": ["/bad"],
    "stat": ["/bad/f"],
    "du": ["/bad"],
    "locate": ["/bad/f"],
    "rm": ["/bad/new"],
    "mv": ["/bad/new", "/bad/newer"],
    "mkdir": ["/bad/new-dir"],
    "fsck": [],
    "servers": [],
    "balance": [],
    "decommission": ["chunkserver-1"],
    "recommission": ["chunkserver-1"],
    "status": [],
}
CASES += [([verb, *args, "--cluster", "/nonexistent/cluster"], NOT_FOUND) for verb, args in VALID_ARGS.items()]
CASES += [([verb, *args, "--identity", "nobody"], NOT_FOUND) for verb, args in VALID_ARGS.items()]


def test_every_command_is_covered() -> None:
    shown = feitian("dfs", "--help").stdout
    listed = {line.split()[0] for line in shown.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(VALID_ARGS)
    assert listed <= {args[0] for args, _ in CASES if args[1:2] != ["--cluster"]}


@pytest.mark.parametrize(("args", "code"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_an_error_line_with_the_documented_exit_code(
    world: tuple[str, Path], args: list[str], code: int
) -> None:
    cluster, local = world
    paths = {LOCAL_FILE: local / "file", LOCAL_DIR: local, MISSING_LOCAL: local / "nope", "@out": local / "out"}
    argv = [str(paths[a]) if a in paths else a for a in args]
    if "--cluster" not in argv:
        argv += ["--cluster", cluster]
    proc = feitian("dfs", *argv, timeout=120)
    lines = proc.stderr.splitlines()
    assert proc.returncode == code, (argv, proc.returncode, proc.stderr)
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), proc.stderr  # nothing else: no traceback
    assert "internal error" not in proc.stderr
    assert not (local / "out").exists()  # a failed get leaves nothing behind
