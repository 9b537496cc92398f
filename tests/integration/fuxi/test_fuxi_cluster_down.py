"""`feitian cluster up` runs Fuxi (FuxiMasters and Tubos) and `cluster down` also ends what the Tubos started:
processes that outlive their Tubo by design must not outlive the cluster."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from feitian.deploy.cluster import LocalCluster, default_spec
from feitian.rpc import ClientConfig
from feitian.runtime.procs import start_time_of
from feitian.sched.client import SchedClient
from feitian.sched.messages import AppState
from feitian.testing.waiting import wait_for_condition


async def test_cluster_down_stops_what_tubos_started(cluster_dir: str, tmp_path: Path) -> None:
    lc = LocalCluster(cluster_dir)
    specs = default_spec(echo=0, proxy=False, kv=0, dfs_masters=0, chunkservers=0, coord=1, tubos=1, secure=False)
    state = await asyncio.to_thread(lc.up, specs, timeout_s=60, secure=False)
    assert {p.role for p in state.processes} == {"coord", "fuxi-master", "tubo"}
    masters = [p.addresses[0] for p in state.processes if p.role == "fuxi-master"]
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r} + '.t', 'w').write(str(os.getpid())); "
    code += f"os.rename({str(pid_file)!r} + '.t', {str(pid_file)!r}); time.sleep(600)"
    async with await lc.client(ClientConfig(name="test"), state=state) as rpc:
        sched = SchedClient(rpc, masters)
        app = await sched.submit("sleeper", [sys.executable, "-c", code])

        async def running() -> bool:
            return pid_file.exists() and (await sched.get(app.app_id)).state is AppState.RUNNING

        await wait_for_condition(running, 60, "the application's master running")
    pid = int(pid_file.read_text())
    start = start_time_of(pid)
    assert start
    _, stuck = await asyncio.to_thread(lc.down, grace_s=5)
    assert not stuck
    assert start_time_of(pid) != start, "the application's process outlived the cluster"
