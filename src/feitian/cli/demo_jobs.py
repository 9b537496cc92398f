"""The DAG-job part of ``feitian demo``: the kernel's main job — data in Pangu turned into results on every machine.

A wordcount: text files are written into Pangu; the job (a map task with one instance per split, a hash pipe
sorted by word, three reducers writing to Pangu) is submitted to Fuxi, whose JobMaster starts TaskWorkers on
grants near the data; the live view shows each task's instances; the result is checked against a count made
here.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import click

from feitian.deploy import ClusterState, LocalCluster
from feitian.dfs import DfsClient
from feitian.job import Job, JobClient, JobView, task_lines
from feitian.rpc import ClientConfig
from feitian.sched import SchedClient

FILES = 4
LINES = 40_000  # per file: about 1.3 MB each
VOCABULARY = [f"{a}{b}" for a in ("ka", "fu", "xi", "pan", "gu", "nu", "wa") for b in ("n", "ng", "o", "ai", "ei", "")]


def say(text: str) -> None:
    click.echo(text)


def _text(rng: random.Random) -> bytes:
    weights = [1 / (i + 1) for i in range(len(VOCABULARY))]  # Zipf-like: a few words are common
    lines = (" ".join(rng.choices(VOCABULARY, weights, k=12)) for _ in range(LINES))
    return ("\n".join(lines) + "\n").encode()


async def jobs_tour(lc: LocalCluster, state: ClusterState) -> None:
    masters = [p.addresses[0] for p in state.processes if p.role == "fuxi-master"]
    pangu = [p.addresses[0] for p in state.processes if p.role == "dfs-master"]
    if not masters or not pangu:
        return
    say("\n== The main job: a wordcount DAG over files in Pangu, on every machine at once ==")
    async with await lc.client(ClientConfig(name="demo-jobs"), state=state) as rpc:
        dfs = DfsClient(rpc, pangu)
        rng = random.Random(7)
        expected: Counter[bytes] = Counter()
        size = 0
        for i in range(FILES):
            data = _text(rng)
            expected.update(data.split())
            size += len(data)
            await dfs.write_file(f"/demo/wordcount/in/{i}.txt", data)
        say(f"  wrote {FILES} text files into Pangu: {size / 1e6:.1f} MB, {sum(expected.values()):,} words")
        spec = (
            Job("wordcount")
            .defaults(cpu=0.5, memory="256MiB")
            .task(
                "map",
                inputs=["/demo/wordcount/in/*.txt"],
                split_size="512KiB",
                function="feitian.examples.jobs.wordcount:map_words",
            )
            .task(
                "reduce",
                instances=3,
                function="feitian.examples.jobs.wordcount:sum_counts",
                output="/demo/wordcount/out",
            )
            .pipe("map", "reduce", pattern="hash", sort=True)
            .spec
        )
        client = JobClient(SchedClient(rpc, masters), dfs)
        started = time.perf_counter()
        view = await client.submit(spec)
        say(f"  submitted job {view.job} (Fuxi application {view.app_id}): map → hash(word), sorted → reduce ×3")
        shown: list[str] = []

        def show(v: JobView) -> None:
            lines = task_lines(v)
            if lines and lines != shown:
                say(f"    after {time.perf_counter() - started:4.1f} s: {v.state}")
                for line in lines:
                    say(f"    {line}")
                shown[:] = lines

        done = await client.wait(view.job, timeout_s=300, on_change=show)
        if done.state != "succeeded":
            detail = done.status.detail if done.status else ""
            say(f"  the job {done.state}: {detail}")
            return
        got: dict[bytes, int] = {}
        parts = sorted(e.name for e in await dfs.list("/demo/wordcount/out"))
        for name in parts:
            for line in (await dfs.read(f"/demo/wordcount/out/{name}")).splitlines():
                word, count = line.split(b"\t")
                got[word] = int(count)
        say(f"  {len(parts)} result files in /demo/wordcount/out after {time.perf_counter() - started:.1f} s")
        top = ", ".join(f"{w.decode()} {n:,}" for w, n in sorted(got.items(), key=lambda x: -x[1])[:5])
        say(f"  most common: {top}")
        verdict = "identical" if got == dict(expected) else "DIFFERENT"
        say(f"  {len(got)} distinct words; counted here too: {verdict}")
