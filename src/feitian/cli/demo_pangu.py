"""The Pangu part of ``feitian demo``: write a file, SIGKILL a chunk server holding it, show the repair."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time

import click

from feitian.base.units import MiB
from feitian.deploy import ClusterState, LocalCluster, connect_local
from feitian.dfs import Locate, LocateReply
from feitian.runtime.procs import signal_process


def say(text: str) -> None:
    click.echo(text)


async def _where(dfs: object, path: str, length: int) -> list[str]:
    located: LocateReply = await dfs.master(Locate(path, 0, length))  # type: ignore[attr-defined]
    return [", ".join(f"{s.server_id}({s.rack})" for s in grant.servers) for grant in located.chunks]


async def pangu_tour(lc: LocalCluster, state: ClusterState) -> None:
    servers = [p for p in state.processes if p.role == "chunkserver"]
    if len(servers) < 4 or not any(p.role == "dfs-master" for p in state.processes):
        return
    say("\n== Pangu: a file in 3 chunks, 3 replicas each on 3 racks; then SIGKILL of a chunk server ==")
    dfs = await connect_local(lc.dir)
    try:
        data = os.urandom(20 * MiB)
        digest = hashlib.sha256(data).hexdigest()[:16]
        started = time.perf_counter()
        await dfs.write_file("/demo/data.bin", data, chunk_size_bytes=8 * MiB)
        say(f"  wrote /demo/data.bin: 20 MiB in {time.perf_counter() - started:.2f} s, sha256 {digest}…")
        for i, where in enumerate(await _where(dfs, "/demo/data.bin", len(data))):
            say(f"    chunk {i}: {where}")
        victim = (await _where(dfs, "/demo/data.bin", len(data)))[0].split("(")[0]
        proc = next(p for p in servers if p.name == victim)
        signal_process(proc.ref, signal.SIGKILL)
        killed = time.monotonic()
        say(f"  killed {victim} (pid {proc.pid}) with SIGKILL")
        back = await dfs.read("/demo/data.bin")
        say(f"  read it back at once (other replicas serve it): sha256 {hashlib.sha256(back).hexdigest()[:16]}…, "
            f"identical: {back == data}")  # fmt: skip
        shown = ""
        while time.monotonic() - killed < 90:
            report = await dfs.fsck()
            line = (
                f"dead servers {list(report.dead_servers)}, under-replicated chunks {len(report.under_replicated)}, "
                f"copies in flight {report.copies_in_flight}"
            )
            if line != shown:
                say(f"  after {time.monotonic() - killed:4.1f} s: {line}")
                shown = line
            if report.dead_servers and report.healthy and not report.copies_in_flight:
                break
            await asyncio.sleep(0.2)
        while time.monotonic() - killed < 90:  # the dead server's replicas are dropped once replaced
            if not any(victim in where for where in await _where(dfs, "/demo/data.bin", len(data))):
                break
            await asyncio.sleep(0.2)
        say("  the master noticed the silence (heartbeat timeout) and re-replicated; the chunks now live on:")
        for i, where in enumerate(await _where(dfs, "/demo/data.bin", len(data))):
            say(f"    chunk {i}: {where}")
        back = await dfs.read("/demo/data.bin")
        report = await dfs.fsck()
        say(f"  read back: identical {back == data}; fsck: {'healthy' if report.healthy else 'NOT healthy'}")
    finally:
        await dfs.rpc.close()
