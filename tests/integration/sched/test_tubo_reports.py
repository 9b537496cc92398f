"""What a Tubo reports in its heartbeats about a process it is preparing (its package being fetched), with a real
supervisor on a temp root and a stand-in FuxiMaster that answers in-process: the process is reported waiting, and
an end that happens while a heartbeat is out is not lost with it (it is sent in the next one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from feitian.rpc import Client, ClientConfig
from feitian.sched.messages import WAITING, ProcKind, TuboHeartbeat, TuboHeartbeatReply
from feitian.sched.tubo.agent import ProcMeta, Tubo, TuboOptions


class StandInMaster:
    """Answers heartbeats; ``during`` runs while the first one is out (before its reply)."""

    def __init__(self) -> None:
        self.sent: list[TuboHeartbeat] = []
        self.during: Callable[[], None] | None = None

    async def call(self, request: TuboHeartbeat, **_: Any) -> TuboHeartbeatReply:
        self.sent.append(request)
        if self.during is not None:
            self.during()
            self.during = None
        return TuboHeartbeatReply(epoch=1, interval_s=1.0)


@pytest.fixture
async def tubo(tmp_path: Path) -> AsyncIterator[Tubo]:
    rpc = Client(ClientConfig(name="tubo-test"))
    options = TuboOptions(masters=["tcp://127.0.0.1:1"], use_cgroups=False, min_free_disk_bytes=0, disk_full_ratio=1)
    made = Tubo(rpc, options, node_name="m1", data_dir=str(tmp_path), run_dir=str(tmp_path))
    made.supervisor.recover()
    made._address_of = lambda: "tcp://127.0.0.1:2"
    made.router = StandInMaster()  # type: ignore[assignment]
    try:
        yield made
    finally:
        made.supervisor.close()
        await rpc.close()


async def test_a_fetch_that_fails_while_a_heartbeat_is_out_is_reported_next(tubo: Tubo) -> None:
    master: StandInMaster = tubo.router  # type: ignore[assignment]
    meta = ProcMeta(app_id="app-1", kind=ProcKind.MASTER, grant_id=7, unit="master", shape={"cpu": 500})
    tubo.meta["app-1.master.1"] = meta
    tubo._wait("app-1.master.1", "fetching package tool@1")
    master.during = lambda: tubo._start_failed("app-1.master.1", meta, "package tool@1: blob missing")

    await tubo._heartbeat()
    [waiting] = master.sent[0].procs
    assert (waiting.state, waiting.detail) == (WAITING, "fetching package tool@1")
    assert "app-1.master.1" in tubo.dirty  # it changed while the heartbeat was out: still to be sent

    await tubo._heartbeat()
    [failed] = master.sent[1].procs
    assert (failed.state, failed.exit_code) == ("failed", 127)
    assert failed.detail == "could not start: package tool@1: blob missing"
    assert "app-1.master.1" not in tubo.meta and not tubo.dirty  # heard of: forgotten

    await tubo._heartbeat()
    assert master.sent[2].procs == []


async def test_a_waiting_process_stays_known_across_heartbeats(tubo: Tubo) -> None:
    master: StandInMaster = tubo.router  # type: ignore[assignment]
    meta = ProcMeta(app_id="app-2", kind=ProcKind.MASTER, grant_id=8, unit="master", shape={"cpu": 500})
    tubo.meta["app-2.master.1"] = meta
    tubo._wait("app-2.master.1", "fetching package tool@2")
    await tubo._heartbeat()
    await tubo._heartbeat()
    assert [p.state for p in master.sent[0].procs] == [WAITING]
    assert master.sent[1].procs == []  # sent once, then only when it changes
    assert "app-2.master.1" in tubo.meta  # a waiting process is not forgotten once reported
