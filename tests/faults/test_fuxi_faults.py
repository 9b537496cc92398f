"""Fuxi under faults, against real processes (3 Nuwa replicas, 2 FuxiMasters, 2 Tubos posing as machines m1/r1
and m2/r2, each 4 cores and 4 GiB):

* SIGKILL of the FuxiMaster leader while an application holds grants and its workers run: the standby takes over,
  no process is killed, the application master re-registers, and new demand is served.
* SIGKILL of a Tubo: restarted within the heartbeat timeout, it re-adopts its processes (same pids); left dead
  past it, its machine's grants are revoked, the owners told, and what still runs there is stopped when it returns.
* SIGKILL of an application master: FuxiMaster starts it again; it re-registers and gets its grants back.
* A worker over its memory limit is killed by the kernel and reported as such to its master.
* Preemption: a high-priority application on a full cluster; the lowest-priority work gets its notice and the
  resources move.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from feitian.runtime.procs import start_time_of
from feitian.sched.client import SchedClient
from feitian.sched.messages import AppState
from feitian.testing.sched import SchedCluster
from feitian.testing.waiting import wait_for_condition

DRIVER = str(Path(__file__).with_name("fuxi_am_driver.py"))
MiB = 1 << 20


@pytest.fixture(scope="module")
def fuxi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedCluster]:
    options = {
        "policy": {
            "heartbeat_timeout_ns": 3_000_000_000,
            "preempt_after_ns": 500_000_000,
            "preempt_notice_ns": 1_500_000_000,
        }
    }
    with SchedCluster.running(tmp_path_factory.mktemp("fuxi-faults"), master_options=options) as cluster:
        yield cluster


@pytest.fixture
async def sched(fuxi: SchedCluster) -> AsyncIterator[SchedClient]:
    client = await fuxi.client()
    try:
        yield client
    finally:
        for app in await client.apps(include_ended=False):
            await client.kill(app.app_id)

        async def idle() -> bool:
            return all(n.processes == 0 for n in await client.nodes())

        await wait_for_condition(idle, 30, "every process of the test stopped")
        assert (await client.status(check=True)).problems == [], "an allocator invariant broke"
        await client.router.rpc.close()


def sleeper(out: Path, name: str) -> str:
    """Worker code: write its pid (and its machine) to OUT/NAME.pid, then sleep."""
    path = str(out / f"{name}.pid")
    machine = "os.environ['FEITIAN_MACHINE']"
    write = f"open({path!r} + '.tmp', 'w').write(str(os.getpid()) + ' ' + {machine})"
    return f"import os, time; {write}; os.rename({path!r} + '.tmp', {path!r}); time.sleep(600)"


def pid_of(out: Path, name: str) -> tuple[int, int, str]:
    pid, machine = (out / f"{name}.pid").read_text().split()
    return int(pid), start_time_of(int(pid)), machine


def events(out: Path) -> list[dict[str, Any]]:
    path = out / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def submit(sched: SchedClient, out: Path, spec: dict[str, Any], **kwargs: Any) -> str:
    out.mkdir(exist_ok=True)
    app = await sched.submit("driver", [sys.executable, DRIVER, str(out), json.dumps(spec)], **kwargs)
    return app.app_id


async def wait_files(out: Path, *names: str, timeout_s: float = 30) -> None:
    await wait_for_condition(lambda: all((out / f"{n}.pid").exists() for n in names), timeout_s, f"workers {names}")


def alive(pid: int, start: int) -> bool:
    return start != 0 and start_time_of(pid) == start


async def test_leader_failover_kills_nothing_and_serves_new_demand(
    fuxi: SchedCluster, sched: SchedClient, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = {
        "workers": [{"name": n, "code": sleeper(out, n)} for n in ("w1", "w2")],
        "stay": True,
        "more_after_failover": {"name": "w3", "code": sleeper(out, "w3")},
    }
    app_id = await submit(sched, out, spec)
    await wait_files(out, "w1", "w2")
    before = {n: pid_of(out, n) for n in ("w1", "w2")}
    rpc = sched.router.rpc
    old = await fuxi.leader(rpc)
    status = await sched.status()
    fuxi.kill(old)
    try:
        # The standby leads a new epoch, and the master's new demand (one more worker) is served by it.
        await wait_files(out, "w3", timeout_s=60)
        new = await fuxi.leader(rpc)
        assert new != old
        assert (await sched.status()).epoch > status.epoch
        for name, (pid, start, _) in before.items():
            assert alive(pid, start), f"{name} was killed by the failover"
        app = await sched.get(app_id)
        assert app.state is AppState.RUNNING
        assert app.attempts == 1, "the application master was restarted"
        assert any("epoch" in e for e in events(out)), "the master did not re-register with the new leader"
        # Accounting survived: what is used is exactly the master and its three workers (500 mcpu each).
        used = sum(n.capacity["cpu"] - n.free.get("cpu", 0) for n in await sched.nodes())
        assert used == 4 * 500
        assert (await sched.status(check=True)).problems == []
    finally:
        await asyncio.to_thread(fuxi.restart, old)


async def test_tubo_restarted_in_time_readopts_its_processes(
    fuxi: SchedCluster, sched: SchedClient, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = {"workers": [{"name": f"w{i}", "code": sleeper(out, f"w{i}")} for i in range(1, 5)], "stay": True}
    await submit(sched, out, spec)
    await wait_files(out, "w1", "w2", "w3", "w4")
    pids = {n: pid_of(out, n) for n in ("w1", "w2", "w3", "w4")}
    fuxi.kill("tubo-1")
    for name, (pid, start, _) in pids.items():
        assert alive(pid, start), f"{name} died with its Tubo"
    await asyncio.to_thread(fuxi.restart, "tubo-1")
    await fuxi.wait_machines(2)
    # Well inside the heartbeat timeout: nothing was revoked, everything runs with the same pids.
    assert not any(e.get("event") == "Revoke" for e in events(out))
    for name, (pid, start, _) in pids.items():
        assert alive(pid, start), f"{name} was not re-adopted"

    async def reported() -> bool:  # the four workers and their master, none twice, once tubo-1 reported again
        return sum(n.processes for n in await sched.nodes()) == 5

    await wait_for_condition(reported, 10, "tubo-1's processes reported again")
    for name, (pid, start, _) in pids.items():
        assert alive(pid, start), f"{name} was restarted"


async def test_tubo_dead_past_the_timeout_loses_its_grants(
    fuxi: SchedCluster, sched: SchedClient, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = {
        "workers": [{"name": f"w{i}", "code": sleeper(out, f"w{i}"), "cpu": 1500} for i in range(1, 5)],
        "stay": True,
    }
    app_id = await submit(sched, out, spec)
    await wait_files(out, "w1", "w2", "w3", "w4")
    # The machine without the application's master: the master hears of the loss (its own machine's loss would
    # restart it elsewhere, with the grants that are left).
    victim = "m2" if (await sched.get(app_id)).master_machine == "m1" else "m1"
    lost = [n for n in ("w1", "w2", "w3", "w4") if pid_of(out, n)[2] == victim]
    assert lost, f"no worker landed on {victim}"
    pids = {n: pid_of(out, n) for n in lost}
    tubo = "tubo-" + victim[1:]
    fuxi.kill(tubo)
    revoked = lambda: {e["grant"]["grant_id"] for e in events(out) if e.get("event") == "Revoke"}  # noqa: E731
    await wait_for_condition(lambda: len(revoked()) >= len(lost), 30, f"{victim}'s grants revoked, the owner told")
    assert all(e["reason"] == "machine_lost" for e in events(out) if e.get("event") == "Revoke")
    await asyncio.to_thread(fuxi.restart, tubo)
    await fuxi.wait_machines(2)
    # Back, with processes on grants that are gone: they are stopped.
    await wait_for_condition(lambda: not any(alive(p, s) for p, s, _ in pids.values()), 30, "orphans stopped")


async def test_a_killed_application_master_is_restarted_and_gets_its_grants_back(
    fuxi: SchedCluster, sched: SchedClient, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = {"workers": [{"name": n, "code": sleeper(out, n)} for n in ("w1", "w2")], "stay": True}
    app_id = await submit(sched, out, spec)
    await wait_files(out, "w1", "w2")
    pids = {n: pid_of(out, n) for n in ("w1", "w2")}
    first = events(out)[0]
    assert first["attempt"] == "1"
    held = {e["grant"]["grant_id"] for e in events(out) if e.get("event") == "SendGrant"}
    os.kill(first["pid"], 9)  # the master's own pid, as it recorded it
    await wait_for_condition(lambda: any(e.get("attempt") == "2" for e in events(out)), 30, "the master restarted")
    second = next(e for e in events(out) if e.get("attempt") == "2")
    assert set(second["held"]) == held, "the restarted master did not get its grants back"
    app = await sched.get(app_id)
    assert app.state is AppState.RUNNING and app.attempts == 2
    for name, (pid, start, _) in pids.items():
        assert alive(pid, start), f"{name} died with its master"


async def test_a_worker_over_its_memory_limit_is_killed_and_reported(
    fuxi: SchedCluster, sched: SchedClient, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    hog = "x = []\nwhile True: x.append(bytearray(8 << 20))"
    spec = {"workers": [{"name": "hog", "code": hog, "memory": 64 * MiB}]}
    app_id = await submit(sched, out, spec)
    done = await sched.wait(app_id, timeout_s=60)
    assert done.state is AppState.SUCCEEDED
    ended = [e for e in events(out) if e.get("event") == "WorkerEnded"]
    assert len(ended) == 1 and ended[0]["state"] == "oom_killed", ended


async def test_preemption_moves_resources_from_the_lowest_priority(
    fuxi: SchedCluster, sched: SchedClient, tmp_path: Path
) -> None:
    low_out, high_out = tmp_path / "low", tmp_path / "high"
    # Low priority fills both machines (its master and 15 workers of 500 mcpu: 8 cores).
    low = {"workers": [{"name": f"w{i}", "code": sleeper(low_out, f"w{i}")} for i in range(1, 16)], "stay": True}
    low_id = await submit(sched, low_out, low, priority=500)
    await wait_files(low_out, *[f"w{i}" for i in range(1, 16)])
    assert all(n.free.get("cpu", 0) == 0 for n in await sched.nodes())
    high = {"workers": [{"name": "u1", "code": sleeper(high_out, "u1")}], "stay": True}
    high_id = await submit(sched, high_out, high, priority=10)
    await wait_files(high_out, "u1", timeout_s=60)
    notices = [e for e in events(low_out) if e.get("event") == "Preempt"]
    assert len(notices) >= 2, "the low-priority application got no notice"
    assert all(e["grant"]["priority"] == 500 for e in notices)
    assert not any(e.get("event") in ("Preempt", "Revoke") for e in events(high_out))
    assert (await sched.get(high_id)).state is AppState.RUNNING
    assert (await sched.get(low_id)).state is AppState.RUNNING
