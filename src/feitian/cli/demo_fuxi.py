"""The Fuxi part of ``feitian demo``: an application in a package, whose master asks FuxiMaster for workers and
starts them on the grants, across the cluster's machines.

The job counts the primes below N in ranges, one worker per range. Its master and workers are the two
programs of the package ``demo-primes`` (uploaded here: records in Nuwa, the blob in Pangu). Workers write their
counts into a directory of this host that the demo names (a local cluster's machines share it); the master adds
them up. Reading inputs from Pangu inside workers needs per-application credentials, which come with DAG jobs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import click

from feitian.coord import CoordClient
from feitian.deploy import ClusterState, LocalCluster
from feitian.dfs import DfsClient
from feitian.rpc import ClientConfig
from feitian.sched import AppState, PackageStore, SchedClient

LIMIT = 3_000_000
RANGES = 8

MASTER = """
import asyncio, json, os, sys
from feitian.sched.client import AppMaster
from feitian.sched.core import SendGrant, Shape
from feitian.sched.messages import WorkerEnded

async def main(out, limit, ranges):
    step = -(-limit // ranges)
    async with AppMaster.from_env() as am:
        await am.ask("count", ranges, Shape.of(cpu=500, memory=128 << 20))
        started = ended = 0
        placed = {}
        while ended < ranges:
            for event in await am.poll(5.0):
                if isinstance(event, SendGrant) and started < ranges:
                    lo, hi = started * step, min(limit, (started + 1) * step)
                    name = f"range-{started}"
                    placed[name] = event.grant.machine
                    await am.start_worker(event.grant, name, ["primes-worker", out, name, str(lo), str(hi)],
                                          package=os.environ.get("DEMO_PACKAGE", ""))
                    started += 1
                elif isinstance(event, WorkerEnded):
                    ended += 1
                    if event.state != "finished":
                        raise SystemExit(f"{event.proc_id} {event.state}: {event.reason}")
                    await am.give_back([event.grant_id])
    counts = {n: int(open(os.path.join(out, n)).read()) for n in placed}
    json.dump({"total": sum(counts.values()), "counts": counts, "machines": placed},
              open(os.path.join(out, "summary.json"), "w"))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""

WORKER = """
import os, sys
out, name, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
small = bytearray([1]) * (int(hi ** 0.5) + 1)
small[0:2] = b"\\0\\0"
for i in range(2, int(len(small) ** 0.5) + 1):
    if small[i]:
        small[i * i :: i] = bytes(len(small[i * i :: i]))
seg = bytearray([1]) * (hi - lo)
for p in (i for i, v in enumerate(small) if v):
    start = max(p * p, -(-lo // p) * p)
    seg[start - lo :: p] = bytes(len(seg[start - lo :: p]))
for n in (0, 1):
    if lo <= n < hi:
        seg[n - lo] = 0
open(os.path.join(out, name), "w").write(str(sum(seg)))
"""


def say(text: str) -> None:
    click.echo(text)


def count_primes(limit: int) -> int:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(sieve[i * i :: i]))
    return sum(sieve)


def _package(root: Path) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in (("primes-master", MASTER), ("primes-worker", WORKER)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
    return root


async def fuxi_tour(lc: LocalCluster, state: ClusterState) -> None:
    masters = [p.addresses[0] for p in state.processes if p.role == "fuxi-master"]
    coord = [p.addresses[0] for p in state.processes if p.role == "coord"]
    pangu = [p.addresses[0] for p in state.processes if p.role == "dfs-master"]
    if not masters or not coord or not pangu:
        return
    say(f"\n== Fuxi: an application in a package; its master asks for {RANGES} workers and starts them on grants ==")
    async with await lc.client(ClientConfig(name="demo-fuxi"), state=state) as rpc:
        nuwa = CoordClient(rpc, coord)
        try:
            sched = SchedClient(rpc, masters)
            for node in await sched.nodes():
                say(
                    f"  machine {node.name} (rack {node.rack}): {node.capacity.get('cpu', 0) / 1000:g} cores, "
                    f"{node.capacity.get('memory', 0) / 2**30:.1f} GiB, isolation {node.isolation}"
                )
            store = PackageStore(nuwa, DfsClient(rpc, pangu))
            with tempfile.TemporaryDirectory(prefix="feitian-demo-pkg-") as tmp:
                ref = await store.upload("demo-primes", _package(Path(tmp) / "pkg"))
            say(f"  uploaded package {ref.spec}: {ref.files} files, sha256 {ref.digest[:16]}… (blob in Pangu)")
            out = Path(lc.dir) / "demo-primes"
            out.mkdir(exist_ok=True)
            started = time.perf_counter()
            app = await sched.submit(
                "primes",
                ["primes-master", str(out), str(LIMIT), str(RANGES)],
                package=ref.spec,
                env={"DEMO_PACKAGE": ref.spec},
                priority=50,
            )
            say(f"  submitted {app.app_id}: count the primes below {LIMIT:,} in {RANGES} ranges")
            shown = None
            while True:
                info = await sched.get(app.app_id)
                line = f"{info.state.value}, master on {info.master_machine or '-'}, grants {info.grants}"
                if line != shown:
                    say(f"    after {time.perf_counter() - started:4.1f} s: {line}")
                    shown = line
                if info.state in (AppState.SUCCEEDED, AppState.FAILED, AppState.KILLED):
                    break
                await sched.router.clock.sleep(0.2)
            if info.state is not AppState.SUCCEEDED:
                say(f"  the application {info.state.value}: {info.detail}")
                return
            summary = json.loads((out / "summary.json").read_text())
            spread: dict[str, int] = {}
            for machine in summary["machines"].values():
                spread[machine] = spread.get(machine, 0) + 1
            say(f"  workers ran on: {', '.join(f'{m} ×{n}' for m, n in sorted(spread.items()))}")
            expected = count_primes(LIMIT)
            say(f"  primes below {LIMIT:,}: {summary['total']:,} (checked here: {expected:,}, "
                f"{'identical' if expected == summary['total'] else 'DIFFERENT'})")  # fmt: skip
        finally:
            await nuwa.close()
