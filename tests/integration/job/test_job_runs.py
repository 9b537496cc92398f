"""DAG jobs on real processes (issue 19): a secured cluster — Nuwa, Pangu, the authority, FuxiMaster, Tubos —
runs jobs submitted through JobClient; their outputs are compared with a plain Python reference, undisturbed and
under faults (an instance that fails, the JobMaster SIGKILLed mid-job)."""

from __future__ import annotations

import os
import random
import signal
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from feitian.coord import CoordClient
from feitian.dfs import DfsClient
from feitian.errors import ConfigError
from feitian.job import Job, JobClient, JobSpec
from feitian.sched.pkg import PackageStore
from feitian.testing.sched import SchedCluster
from feitian.testing.waiting import wait_for_condition

WORDS = [f"w{i}" for i in range(300)]

TASKS = """
import itertools, os, time, zlib
from collections import Counter

def map_words(records, delay_s=0.0, fail_dir=""):
    lines = list(records)
    if fail_dir:  # the first attempt of each instance fails (a marker per split remembers it)
        marker = os.path.join(fail_dir, str(zlib.crc32(lines[0][1] if lines else b"")))
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("planted failure")
    time.sleep(delay_s)
    counts = Counter()
    for _, line in lines:
        counts.update(line.split())
    return [(w, str(n).encode()) for w, n in counts.items()]

def sum_counts(records):
    for word, group in itertools.groupby(records, key=lambda r: r[0]):
        yield word, str(sum(int(v) for _, v in group)).encode()
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedCluster]:
    options = {"coord": 1, "masters": 1, "machines": 2, "dfs_masters": 1, "chunkservers": 3}
    with SchedCluster.running(tmp_path_factory.mktemp("jobs"), secure=True, **options) as c:
        yield c


@pytest.fixture
async def jobs(cluster: SchedCluster) -> AsyncIterator[tuple[JobClient, DfsClient]]:
    sched = await cluster.client()
    dfs = DfsClient(sched.rpc, cluster.dfs_addresses)
    try:
        yield JobClient(sched, dfs), dfs
    finally:
        await sched.rpc.close()


async def _inputs(dfs: DfsClient, directory: str, files: int, lines: int, seed: int) -> Counter[bytes]:
    rng = random.Random(seed)
    expected: Counter[bytes] = Counter()
    for f in range(files):
        text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(lines)) + "\n"
        expected.update(text.encode().split())
        await dfs.write_file(f"{directory}/{f}.txt", text.encode(), replication=1)
    return expected


async def _output(dfs: DfsClient, directory: str) -> dict[bytes, int]:
    got: dict[bytes, int] = {}
    for entry in sorted(await dfs.list(directory), key=lambda e: e.name):
        for line in (await dfs.read(f"{directory}/{entry.name}")).splitlines():
            word, count = line.split(b"\t")
            assert word not in got, f"{word!r} in two reducers' output"
            got[word] = int(count)
    return got


def _wordcount(
    name: str, inputs: str, output: str, *, package: str = "", args: dict[str, object] | None = None
) -> JobSpec:
    if package:
        mapper = {"function": "jobtasks:map_words", "package": package, "args": args or {}}
        reducer = {"function": "jobtasks:sum_counts", "package": package}
    else:
        mapper = {"function": "feitian.examples.jobs.wordcount:map_words"}
        reducer = {"function": "feitian.examples.jobs.wordcount:sum_counts"}
    small = {"cpu": 0.25, "memory": "256MiB"}
    return (
        Job(name)
        .task("map", inputs=[f"{inputs}/*.txt"], split_size="64KiB", **mapper, **small)  # type: ignore[arg-type]
        .task("reduce", instances=3, output=output, replication=1, **reducer, **small)  # type: ignore[arg-type]
        .pipe("map", "reduce", pattern="hash", sort=True)
        .spec
    )


async def _package(cluster: SchedCluster, tmp_path: Path) -> str:
    root = tmp_path / "jobtasks"
    root.mkdir()
    (root / "jobtasks.py").write_text(textwrap.dedent(TASKS))
    rpc = await cluster.rpc_client()
    try:
        store = PackageStore(CoordClient(rpc, cluster.coord_addresses), DfsClient(rpc, cluster.dfs_addresses))
        ref = await store.upload("jobtasks", root)
    finally:
        await rpc.close()
    return ref.spec


async def test_wordcount_gives_the_reference_counts(jobs: tuple[JobClient, DfsClient]) -> None:
    client, dfs = jobs
    expected = await _inputs(dfs, "/in/wc", files=3, lines=3_000, seed=1)
    view = await client.submit(_wordcount("wc", "/in/wc", "/out/wc"))
    done = await client.wait(view.job, timeout_s=180)
    assert done.state == "succeeded", done
    assert await _output(dfs, "/out/wc") == dict(expected)
    assert done.status is not None
    by_task = {t.task: t for t in done.status.tasks}
    assert by_task["map"].done == by_task["map"].instances > 3  # more than one split per file (64 KiB splits)
    assert by_task["reduce"].done == 3
    assert not await dfs.exists(f"{view.root}/shuffle")  # cleaned up at the end


async def test_failed_instances_are_retried_and_the_output_is_unchanged(
    cluster: SchedCluster, jobs: tuple[JobClient, DfsClient], tmp_path: Path
) -> None:
    client, dfs = jobs
    package = await _package(cluster, tmp_path)
    expected = await _inputs(dfs, "/in/retry", files=2, lines=2_000, seed=2)
    fail_dir = tmp_path / "failed-once"
    fail_dir.mkdir()
    os.chmod(fail_dir, 0o777)
    spec = _wordcount("retry", "/in/retry", "/out/retry", package=package, args={"fail_dir": str(fail_dir)})
    view = await client.submit(spec)
    done = await client.wait(view.job, timeout_s=180)
    assert done.state == "succeeded", done
    assert await _output(dfs, "/out/retry") == dict(expected)
    assert done.status is not None
    map_status = next(t for t in done.status.tasks if t.task == "map")
    assert map_status.failed >= map_status.instances  # every instance failed once, and was run again
    assert len(list(fail_dir.iterdir())) == map_status.instances


async def test_the_jobmaster_killed_mid_job_is_restarted_and_the_output_is_unchanged(
    cluster: SchedCluster, jobs: tuple[JobClient, DfsClient], tmp_path: Path
) -> None:
    client, dfs = jobs
    package = await _package(cluster, tmp_path)
    expected = await _inputs(dfs, "/in/fo", files=2, lines=4_000, seed=3)
    view = await client.submit(_wordcount("fo", "/in/fo", "/out/fo", package=package, args={"delay_s": 0.5}))

    async def some_map_done() -> bool:
        status = (await client.status(view.job)).status
        return status is not None and any(t.task == "map" and t.done >= 1 for t in status.tasks)

    await wait_for_condition(some_map_done, timeout_s=120, what="a map instance done")
    before = (await client.status(view.job)).status
    assert before is not None and before.master_pid > 0
    os.kill(before.master_pid, signal.SIGKILL)
    done = await client.wait(view.job, timeout_s=240)
    assert done.state == "succeeded", done
    assert done.status is not None and done.status.epoch > before.epoch  # a restarted JobMaster finished it
    assert done.status.master_pid != before.master_pid
    assert await _output(dfs, "/out/fo") == dict(expected)


async def test_a_job_whose_input_is_missing_is_refused_at_submit(jobs: tuple[JobClient, DfsClient]) -> None:
    client, _ = jobs
    with pytest.raises(ConfigError, match="/in/none"):
        await client.submit(_wordcount("missing", "/in/none", "/out/none"))
