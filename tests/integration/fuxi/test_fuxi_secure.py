"""Fuxi in a secured cluster (mutual TLS, capabilities: as `feitian cluster up` runs it): Tubos heartbeat with
the capability minted for their role, an application master and its workers reach FuxiMaster through their
Tubo's socket without credentials of their own, and a process the Tubo did not start is refused there."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from feitian.errors import PermissionDeniedError
from feitian.rpc import Client, ClientConfig
from feitian.sched.messages import AmRegister, AppState
from feitian.testing.sched import SchedCluster

AM = str(Path(__file__).with_name("am_script.py"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedCluster]:
    with SchedCluster.running(tmp_path_factory.mktemp("fuxi-secure"), coord=1, secure=True) as cluster:
        yield cluster


async def test_an_application_runs_in_a_secured_cluster(secured: SchedCluster, tmp_path: Path) -> None:
    sched = await secured.client()
    try:
        out = tmp_path / "out"
        out.mkdir()
        app = await sched.submit("secure", [sys.executable, AM, str(out), "2"])
        done = await sched.wait(app.app_id, timeout_s=60)
        assert done.state is AppState.SUCCEEDED, done
        assert len(list(out.iterdir())) == 2
    finally:
        await sched.router.rpc.close()


async def test_a_process_the_tubo_did_not_start_is_refused_on_its_socket(secured: SchedCluster) -> None:
    socket = secured.cluster.load().find("tubo-1").extra["socket"]
    rpc = Client(ClientConfig(name="intruder"))
    try:
        with pytest.raises(PermissionDeniedError, match="not started by this Tubo"):
            await rpc.call(socket, AmRegister(app_id="app-0000000000"), timeout=5)
    finally:
        await rpc.close()
