"""Processes' output on a real cluster (docs/sched.md, "Logs"): read from the Tubo of the process's machine while
it runs and after it ended (once its work dir is gone); only a tail is kept per stream; a machine keeps a bounded
number of ended processes' logs; unknown applications and processes and an expired log are NotFoundErrors."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from feitian.errors import NotFoundError
from feitian.sched.client import SchedClient
from feitian.sched.messages import AppState
from feitian.testing.sched import SchedCluster
from feitian.testing.waiting import wait_for_condition

STREAM_BYTES = 16_384  # the Tubos' log_max_stream_bytes here
RETAIN = 2  # the Tubos' log_retain_count here

# The process under test: writes LINES lines to stdout, says so in a marker file, waits for a `go` file (made by
# the test), then writes to stderr and exits 0.
SCRIPT = """
import os, sys, time
out, lines, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(lines):
    sys.stdout.write(f"line {i} " + "x" * size + "\\n")
sys.stdout.flush()
open(os.path.join(out, "written"), "w").close()
while not os.path.exists(os.path.join(out, "go")):
    time.sleep(0.02)
sys.stderr.write("bye\\n")
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedCluster]:
    tubo = {"log_max_stream_bytes": STREAM_BYTES, "log_retain_count": RETAIN}
    with SchedCluster.running(tmp_path_factory.mktemp("fuxi-logs"), coord=1, machines=1, tubo_options=tubo) as made:
        yield made


@pytest.fixture
async def sched(cluster: SchedCluster) -> AsyncIterator[SchedClient]:
    client = await cluster.client()
    try:
        yield client
    finally:
        await client.router.rpc.close()


def expected(lines: int, size: int) -> bytes:
    return b"".join(f"line {i} {'x' * size}\n".encode() for i in range(lines))


async def run_writer(sched: SchedClient, out: Path, lines: int, size: int = 0) -> str:
    out.mkdir()
    app = await sched.submit("writer", [sys.executable, "-c", SCRIPT, str(out), str(lines), str(size)])
    await wait_for_condition(lambda: (out / "written").exists(), 60, "the process to write its output")
    return app.app_id


def tubo_dirs(cluster: SchedCluster, sub: str, proc_id: str) -> list[Path]:
    return [p for n in cluster.names("tubo") if (p := cluster.data_dir(n) / "tubo" / sub / proc_id).exists()]


async def test_a_log_is_read_while_the_process_runs_and_after_it_ended(
    sched: SchedClient, cluster: SchedCluster, tmp_path: Path
) -> None:
    app_id = await run_writer(sched, tmp_path / "out", 5)
    running = await sched.read_log(app_id)  # its master: the latest attempt
    assert running.data == expected(5, 0)
    assert (running.running, running.first, running.end) == (True, 0, len(running.data))
    assert running.proc_id == f"{app_id}.master.1"
    tail = await sched.tail(app_id, lines=2)
    assert tail.data == b"line 3 \nline 4 \n"
    assert tail.offset == running.end - len(tail.data)
    assert (await sched.read_log(app_id, stderr=True)).data == b""
    part = await sched.read_log(app_id, offset=7, length=8)
    assert (part.offset, part.data) == (7, expected(5, 0)[7:15])

    (tmp_path / "out" / "go").touch()
    done = await sched.wait(app_id, timeout_s=60)
    assert done.state is AppState.SUCCEEDED, done
    proc_id = f"{app_id}.master.1"
    # The Tubo forgets the process once FuxiMaster heard of its end: its work dir goes, its log stays.
    await wait_for_condition(lambda: not tubo_dirs(cluster, "work", proc_id), 30, "the work dir to be deleted")
    assert tubo_dirs(cluster, "logs", proc_id)
    after = await sched.read_log(app_id)
    assert (after.data, after.running) == (expected(5, 0), False)
    assert (await sched.read_log(app_id, proc_id, stderr=True)).data == b"bye\n"
    procs = await sched.procs(app_id)
    assert [(p.proc_id, p.state, p.exit_code) for p in procs] == [(proc_id, "finished", 0)]


async def test_only_the_tail_of_a_stream_is_kept(sched: SchedClient, tmp_path: Path) -> None:
    lines, size = 1000, 90  # ~100 KB, six times the bound
    app_id = await run_writer(sched, tmp_path / "out", lines, size)
    data = expected(lines, size)

    async def rotated() -> bool:
        return (await sched.read_log(app_id)).first > 0  # the Tubo looks once a second

    await wait_for_condition(rotated, 30, "the log to be rotated")
    kept = await sched.read_log(app_id)
    assert kept.end == len(data)  # offsets count every byte written
    assert kept.end - kept.first <= STREAM_BYTES
    assert kept.data == data[kept.first :]
    early = await sched.read_log(app_id, offset=0, length=10)  # before what is kept: from the first byte kept
    assert early.offset == kept.first
    (tmp_path / "out" / "go").touch()
    assert (await sched.wait(app_id, timeout_s=60)).state is AppState.SUCCEEDED


async def test_unknown_application_process_and_an_expired_log(sched: SchedClient, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="app-9999999999"):
        await sched.read_log("app-9999999999")
    first = await run_writer(sched, tmp_path / "first", 1)
    with pytest.raises(NotFoundError, match="no process 'nope'"):
        await sched.read_log(first, "nope")
    (tmp_path / "first" / "go").touch()
    assert (await sched.wait(first, timeout_s=60)).state is AppState.SUCCEEDED
    # RETAIN more processes end after it: its log is dropped (the oldest go first), though FuxiMaster still
    # remembers the process.
    for n in range(RETAIN):
        later = await run_writer(sched, tmp_path / f"later{n}", 1)
        (tmp_path / f"later{n}" / "go").touch()
        assert (await sched.wait(later, timeout_s=60)).state is AppState.SUCCEEDED

    async def expired() -> bool:
        try:
            await sched.read_log(first)
        except NotFoundError as exc:
            assert "expired" in exc.message
            return True
        return False

    await wait_for_condition(expired, 30, "the first log to expire")
    assert [p.proc_id for p in await sched.procs(first)] == [f"{first}.master.1"]


# A process reading logs over its Tubo's Unix socket: its own, then another application's process (argv[2]).
READER = """
import asyncio, os, sys
from feitian.errors import NotFoundError
from feitian.rpc import Client, ClientConfig
from feitian.sched.messages import ReadLog

async def main(out, other):
    print("mine", flush=True)
    rpc = Client(ClientConfig(name="reader"))
    socket = os.environ["FEITIAN_TUBO_SOCKET"]
    try:
        got = await rpc.call(socket, ReadLog(proc_id=os.environ["FEITIAN_PROC_ID"]), timeout=10)
        open(os.path.join(out, "own"), "wb").write(got.data)
        try:
            await rpc.call(socket, ReadLog(app_id=other.split(".")[0], proc_id=other), timeout=10)
        except NotFoundError as exc:
            open(os.path.join(out, "other"), "w").write(exc.message)
    finally:
        await rpc.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_process_reads_its_own_applications_logs_over_its_tubo_socket(
    sched: SchedClient, tmp_path: Path
) -> None:
    other = await run_writer(sched, tmp_path / "other", 1)  # runs on the same (only) machine
    out = tmp_path / "reader"
    out.mkdir()
    app = await sched.submit("reader", [sys.executable, "-c", READER, str(out), f"{other}.master.1"])
    done = await sched.wait(app.app_id, timeout_s=60)
    assert done.state is AppState.SUCCEEDED, done
    assert (out / "own").read_bytes() == b"mine\n"
    assert f"no log of process '{other}.master.1' of application '{app.app_id}'" in (out / "other").read_text()
    (tmp_path / "other" / "go").touch()
    assert (await sched.wait(other, timeout_s=60)).state is AppState.SUCCEEDED
