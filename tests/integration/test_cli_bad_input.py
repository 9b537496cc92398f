"""Every `feitian` command but `dfs` with bad input: an `error:` line naming what was wrong, never a traceback, and
the exit code docs/cli.md documents (issue 16). Also the ends docs/cli.md promises: unreachable -> 3, Ctrl-C on a
long-running command -> 0 quietly (on another -> 130 "interrupted"), a reader that goes away (`| head`) -> 0.

One real secured cluster serves the commands that need one; a second directory holds the state of a cluster
whose processes are gone (nothing listens at its addresses), for "unreachable"."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from feitian.deploy.cluster import ClusterState, LocalCluster, ProcessRecord, free_ports
from feitian.testing.cli import FEITIAN, feitian
from feitian.testing.waiting import wait_until

MISSING = "/nonexistent/feitian-cli-test"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Bad files: garbage bytes, broken TOML, a config with an unknown key, a directory."""
    base = tmp_path_factory.mktemp("bad-files")
    (base / "garbage.bin").write_bytes(b"\x00\xffnot anything\n")
    (base / "garbage.bin").chmod(0o600)  # a private key file must not be readable by others: test the content
    (base / "broken.toml").write_text("x = [")
    (base / "unknown.toml").write_text('[node]\nname = "a"\nrole = "echo"\nbogus = 1\n')
    (base / "dir").mkdir()
    return {"garbage": str(base / "garbage.bin"), "broken": str(base / "broken.toml"),
            "unknown": str(base / "unknown.toml"), "dir": str(base / "dir"), "tmp": str(base)}  # fmt: skip


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A secured cluster: authority, one echo node, 3 coord and 3 kv replicas."""
    directory = str(tmp_path_factory.mktemp("cli-bad-input") / "cluster")
    feitian(
        "cluster", "up", "--dir", directory, "--echo", "1", "--no-proxy", "--dfs-masters", "0", check=True,
        timeout=120,
    )  # fmt: skip
    try:
        feitian("coord", "create", "/there", "v", "--cluster", directory, check=True)
        yield directory
    finally:
        LocalCluster(directory).down(grace_s=5)


@pytest.fixture(scope="module")
def dead(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The state of an insecure cluster whose processes are gone: nothing listens at its addresses."""
    directory = tmp_path_factory.mktemp("dead-cluster")
    ports = iter(free_ports(8))
    gone_pid = 4_194_000  # above the default pid_max: no such process

    def record(name: str, role: str) -> ProcessRecord:
        return ProcessRecord(name, role, gone_pid, 1, "", "", [f"tcp://127.0.0.1:{next(ports)}"])

    processes = [record("echo-1", "echo")]
    processes += [record(f"coord-{i}", "coord") for i in (1, 2, 3)]
    processes += [record(f"kv-{i}", "kv") for i in (1, 2, 3)]
    state = ClusterState("local", str(directory), "0.1.0", 0.0, processes, secure=False)
    (directory / "cluster.json").write_bytes(msgspec.json.encode(state))
    return str(directory)


def check(proc: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "internal error" not in out, out
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{out}"
    assert any(line.startswith("error: ") for line in proc.stderr.splitlines()), proc.stderr
    assert text in proc.stderr, proc.stderr


# (arguments, exit code, text in stderr). {live}: the running cluster, {dead}: the gone one, {missing}: no cluster.
CASES: list[tuple[str, int, str]] = [
    # the top level
    ("--bogus", 2, "No such option '--bogus'"),
    ("no-such-command", 2, "No such command 'no-such-command'"),
    ("demo --bogus", 2, "No such option '--bogus'"),
    # cluster
    ("cluster up --dir {missing} --coord 2", 2, "2 replicas: a replicated group needs an odd number"),
    ("cluster up --dir {missing} --kv 8", 2, "8 is not in the range 0<=x<=7"),
    ("cluster up --dir {missing} --dfs-masters 4", 2, "4 replicas: a replicated group needs an odd number"),
    ("cluster up --dir {missing} --echo -1", 2, "-1 is not in the range"),
    ("cluster up --dir {missing} --echo many", 2, "'many' is not a valid integer"),
    ("cluster up --dir {missing} --dfs-masters 0 --chunkservers 3", 2, "3 chunk servers without masters"),
    ("cluster up --dir {missing} --timeout 0", 2, "'--timeout': 0.0 is not in the range x>0"),
    ("cluster up --dir {live}", 5, "a cluster is already running at"),
    ("cluster status --cluster {missing}", 4, "no cluster at"),
    ("cluster status --cluster {live} --timeout -1", 2, "'--timeout'"),
    ("cluster down --cluster {missing}", 4, "no cluster at"),
    ("cluster down --cluster {live} --grace -1", 2, "'--grace'"),
    ("cluster stop --cluster {live}", 2, "Missing argument 'NODE...'"),
    ("cluster stop nope --cluster {live}", 4, "no node named 'nope'"),
    ("cluster start nope echo-9 --cluster {live}", 4, "no node named 'nope', 'echo-9'"),
    ("cluster restart nope --cluster {live}", 4, "no node named 'nope'"),
    ("cluster start echo-1 --cluster {missing}", 4, "no cluster at"),
    ("cluster status --cluster {dead}", 3, "not healthy: echo-1"),
    # node
    ("node run echo", 2, "Missing option '--config'"),
    ("node run nosuchrole --config {garbage}", 2, "'nosuchrole' is not one of"),
    ("node run echo --config {missing}.toml", 2, "cannot read node config"),
    ("node run echo --config {broken}", 2, "is not valid TOML"),
    ("node run echo --config {unknown}", 2, "invalid node config"),
    # rpc
    ("rpc ping", 2, "Missing argument 'TARGET'"),
    ("rpc ping tcp://nowhere", 2, "has no port"),
    ("rpc ping ftp://127.0.0.1:1", 2, "ftp://127.0.0.1:1"),
    ("rpc ping echo-9 --cluster {live}", 4, "no process named 'echo-9'"),
    ("rpc ping echo-1 --cluster {missing}", 4, "no cluster at"),
    ("rpc ping echo-1 --count 0 --cluster {live}", 2, "0 is not in the range x>=1"),
    ("rpc ping echo-1 --timeout 0 --cluster {live}", 2, "0.0 is not in the range x>0"),
    ("rpc ping echo-1 --identity nobody --cluster {live}", 4, "no identity 'nobody'"),
    ("rpc ping echo-1 --timeout 0.5 --cluster {dead}", 3, "cannot connect"),
    ("rpc ping tcp://127.0.0.1:1 --timeout 0.5", 3, "cannot connect"),
    ("rpc call echo-1 echo.text --cluster {live}", 2, "exactly one of --text or --map"),
    ("rpc call echo-1 echo.map --map novalue --cluster {live}", 2, "--map 'novalue': expected KEY=VALUE"),
    ("rpc call echo-1 no.such.method --text x --cluster {live}", 4, "unknown method 'no.such.method'"),
    ("rpc call echo-1 echo.text --text x --token {missing} --cluster {live}", 4, "{missing}"),
    # kv
    ("kv get", 2, "Missing argument 'KEY'"),
    ("kv put k v --expect-version abc --cluster {live}", 2, "'abc' is not a valid integer"),
    ("kv put k v --expect-version -1 --cluster {live}", 2, "-1 is not in the range x>=0"),
    ("kv put k v --expect-version 7 --cluster {live}", 5, "version 7 expected"),
    ("kv get nosuchkey --cluster {live}", 4, "no such key"),
    ("kv rm nosuchkey --cluster {live}", 4, "no such key"),
    ("kv status --cluster {missing}", 4, "no cluster at"),
    ("kv status --cluster {dead}", 3, "3 of 3 kv replica(s) do not answer"),
    # coord
    ("coord get", 2, "Missing argument 'PATH'"),
    ("coord get relative --cluster {live}", 2, "a path must be absolute"),
    ("coord get /dir/ --cluster {live}", 2, "a directory holds no value"),
    ("coord get /nothing/here --cluster {live}", 4, "node does not exist"),
    ("coord get /there --cluster {missing}", 4, "no cluster at"),
    ("coord get /there --timeout 1 --cluster {dead}", 3, "no replica of"),
    ("coord get /there --timeout 0 --cluster {live}", 2, "0.0 is not in the range x>0"),
    ("coord status --cluster {dead} --timeout 3", 3, "3 of 3 coord replica(s) do not answer"),
    ("coord set /there --cluster {live}", 2, "give VALUE or --from-file"),
    ("coord set /there v --from-file {garbage} --cluster {live}", 2, "give VALUE or --from-file, not both"),
    ("coord set /there --from-file {missing} --cluster {live}", 4, "no file {missing}"),
    ("coord set /there --from-file {dir} --cluster {live}", 2, "is a directory"),
    ("coord set /there v --version 0 --cluster {live}", 2, "0 is not in the range x>=1"),
    ("coord set /there v --version 99 --cluster {live}", 5, "there"),
    ("coord create /there v --cluster {live}", 5, "already exists"),
    ("coord create /no/parent v --cluster {live}", 4, "does not exist"),
    ("coord create /x v --hold 3 --cluster {live}", 2, "--hold and --ttl are for --ephemeral nodes"),
    ("coord create /x --ephemeral --ttl 5 --cluster {live}", 2, "ttl_ms 5 is outside"),
    ("coord rm /nothing --cluster {live}", 4, "node does not exist"),
    ("coord ls /nothing --cluster {live}", 4, "node does not exist"),
    ("coord stat /nothing --cluster {live}", 4, "node does not exist"),
    ("coord watch /there --since -1 --cluster {live}", 2, "-1 is not in the range x>=0"),
    ("coord watch /there --count 0 --cluster {live}", 2, "0 is not in the range x>=1"),
    ("coord lock / --cluster {live}", 2, "a lock needs a directory of its own"),
    ("coord lock /l --timeout -1 --cluster {live}", 2, "-1.0 is not in the range x>=0"),
    ("coord elect a/b --cluster {live}", 2, "an election name is one path name"),
    ("coord elect nobody-leads --cluster {live}", 4, "nobody leads"),
    ("coord txn {{bad --cluster {live}", 2, "txn: not JSON"),
    ('coord txn [{{"op":"fly"}}] --cluster {live}', 2, "fly"),
    ("coord txn @{missing} --cluster {live}", 4, "no file {missing}"),
    ("coord txn @{garbage} --cluster {live}", 2, "is not UTF-8 text"),
    ("coord snapshot restore {missing} --cluster {live}", 4, "no file {missing}"),
    ("coord snapshot restore {garbage} --cluster {live}", 2, "is not a coord snapshot"),
    ("coord snapshot save {missing}/x.snap --cluster {live}", 4, "cannot write {missing}/x.snap"),
    # identities, users, policy, capabilities, tokens
    ("key create", 2, "Missing argument 'NAME'"),
    ("key create a/b --dir {tmp}", 2, "principal name 'a/b'"),
    ("key show {missing}", 4, "no such file"),
    ("key show {garbage}", 2, "load private key {garbage}"),
    ("user add bob --cluster {live}", 2, "Missing option '--pubkey'"),
    ("user add bob --pubkey {missing} --cluster {live}", 4, "no such file"),
    ("user add bob --pubkey {garbage} --cluster {live}", 2, "cannot parse"),
    ("user ls --cluster {missing}", 4, "no cluster at"),
    ("policy grant nobody --resource coord:/ --rights read --cluster {live}", 4, "no principal 'nobody'"),
    ("policy grant admin --resource coord:/ --rights fly --cluster {live}", 2, "unknown right(s) 'fly'"),
    ("policy grant admin --resource coord:/ --rights read --max-depth 99 --cluster {live}", 2, "'--max-depth'"),
    ("policy revoke nobody --cluster {live}", 4, "no principal 'nobody'"),
    ("policy ls --cluster {missing}", 4, "no cluster at"),
    ("cap show {missing}", 4, "no capability file"),
    ("cap show {garbage}", 2, "is not base64"),
    ("cap request --ttl -5 --cluster {live}", 2, "ttl_s -5.0 outside"),
    ("cap request --cluster {missing}", 4, "no cluster at"),
    ("cap revoke --cluster {live}", 2, "give exactly one of a capability id or a holder"),
    ("cap revoke --id zz --cluster {live}", 2, "is not hex"),
    (
        "cap delegate --to {missing} --resource coord:/ --rights read --out {tmp}/d.caps --cluster {live}",
        4,
        "no such file",
    ),
    ("token mint --resource coord:/ --rights read --cluster {live}", 2, "Missing option '--audience'"),
    ("token mint --audience echo-1 --resource coord:/ --rights fly --cluster {live}", 2, "unknown right(s) 'fly'"),
    ("token mint --audience echo-1 --resource coord:/ --rights read --ttl -1 --cluster {live}", 2, "outside"),
    (
        "token mint --audience echo-1 --resource coord:/ --rights read --holder-pubkey {missing} --cluster {live}",
        4,
        "no such file",
    ),
    # bench: refused before anything is started
    ("bench rpc --seconds 0", 2, "0.0 is not in the range x>0"),
    ("bench consensus --replicas 2", 2, "'2' is not one of '1', '3', '5'"),
    ("bench security --rounds 0", 2, "0 is not in the range x>=1"),
    ("bench coord --seconds -1", 2, "-1.0 is not in the range x>0"),
    ("bench dfs --size 0", 2, "0 is not in the range x>=1"),
]


@pytest.mark.parametrize(("line", "code", "text"), CASES, ids=[c[0].split(" --cluster")[0] for c in CASES])
def test_bad_input(
    line: str, code: int, text: str, files: dict[str, str], live: str, dead: str, tmp_path: Path
) -> None:
    names = {"live": live, "dead": dead, "missing": MISSING, **files}
    args = [word.format(**names) for word in _split(line)]
    check(feitian(*args, timeout=90), code, text.format(**names))


def _split(line: str) -> list[str]:
    """Words of a case; a JSON argument (it starts with '[') is one word."""
    if " [" in line:
        head, rest = line.split(" [", 1)
        body, tail = rest.split("] ", 1)
        return [*head.split(), f"[{body}]", *tail.split()]
    return line.split()


def _until_line(proc: subprocess.Popen[str], stream: str, text: str) -> str:
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    while True:
        line = pipe.readline()
        if not line:
            raise AssertionError(f"the command exited before printing {text!r}")
        if text in line:
            return line


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*FEITIAN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


@pytest.mark.parametrize(
    ("args", "ready_on", "ready"),
    [
        (["coord", "watch", "/there"], "stderr", "watching /there"),
        (["coord", "lock", "/locks/cli-test"], "stdout", "holding /locks/cli-test"),
        (["coord", "elect", "cli-test", "me"], "stdout", "elected in cli-test"),
        (["coord", "create", "/eph", "--ephemeral"], "stdout", "/eph"),
    ],
)
def test_ctrl_c_ends_a_long_running_command_quietly(args: list[str], ready_on: str, ready: str, live: str) -> None:
    proc = _start(*args, "--cluster", live)
    try:
        _until_line(proc, ready_on, ready)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "error:" not in err and "Traceback" not in err


def test_ctrl_c_interrupts_another_command_with_130(live: str) -> None:
    # A lock held elsewhere: this command waits for it (not a long-running command: it has not got it yet).
    holder = _start("coord", "lock", "/locks/held", "--cluster", live)
    try:
        _until_line(holder, "stdout", "holding /locks/held")
        waiter = _start("coord", "lock", "/locks/held", "--timeout", "60", "--cluster", live)
        try:
            wait_until(  # it queued: two contenders' nodes under the lock's directory
                lambda: len(feitian("coord", "ls", "/locks/held/", "--cluster", live).stdout.split()) == 2,
                timeout_s=30,
                what="the second contender queues",
            )
            waiter.send_signal(signal.SIGINT)
            _, err = waiter.communicate(timeout=30)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        assert waiter.returncode == 130 and "error: interrupted" in err and "Traceback" not in err
    finally:
        holder.send_signal(signal.SIGINT)
        holder.communicate(timeout=30)


def test_a_reader_that_goes_away_ends_the_command_with_0(live: str) -> None:
    # `feitian coord watch / | head -1`: the second event finds stdout closed.
    feitian("coord", "create", "/piped/", "--cluster", live, check=True)
    watch = _start("coord", "watch", "/piped/", "--cluster", live)
    try:
        _until_line(watch, "stderr", "watching /piped/")
        feitian("coord", "create", "/piped/a", "1", "--cluster", live, check=True)
        assert watch.stdout is not None
        assert watch.stdout.readline().endswith(" created /piped/a\n")
        watch.stdout.close()  # the reader goes away
        feitian("coord", "create", "/piped/b", "2", "--cluster", live, check=True)
        assert watch.stderr is not None
        err = watch.stderr.read()
        watch.wait(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert "error" not in err.lower() and "Exception ignored" not in err
    # Output larger than the pipe holds, read in part: the same.
    big = subprocess.Popen(
        [*FEITIAN, "rpc", "call", "echo-1", "echo.text", "--text", "x" * 120_000, "--cluster", live],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert big.stdout is not None and big.stderr is not None
    assert big.stdout.read(10) == b"x" * 10
    big.stdout.close()
    err_bytes = big.stderr.read()
    assert big.wait(timeout=30) == 0, err_bytes
    assert b"error" not in err_bytes.lower() and b"Exception ignored" not in err_bytes


def test_cluster_status_json_of_a_dead_cluster(dead: str) -> None:
    proc = feitian("cluster", "status", "--cluster", dead, "--json")
    assert proc.returncode == 3
    assert {r["state"] for r in json.loads(proc.stdout)["processes"]} == {"stopped"}
