"""Applications on a real Fuxi cluster: submitted through the client, their masters started by a Tubo on a grant,
workers started on the grants the masters asked for, and the application's end recorded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from feitian.errors import InvalidArgumentError, NotFoundError
from feitian.sched.client import SchedClient
from feitian.sched.messages import AppState
from feitian.testing.sched import SchedCluster

AM = str(Path(__file__).with_name("am_script.py"))


async def test_an_application_runs_its_workers_on_grants_and_succeeds(sched: SchedClient, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    app = await sched.submit("four-workers", [sys.executable, AM, str(out), "4"])
    assert app.state is AppState.PENDING
    done = await sched.wait(app.app_id, timeout_s=60)
    assert done.state is AppState.SUCCEEDED, done
    assert done.exit_code == 0
    written = sorted(p.name for p in out.iterdir())
    assert [w.split("-")[0] for w in written] == ["w1", "w2", "w3", "w4"]
    assert {w.split("-")[1] for w in written} <= {"m1", "m2"}
    # Everything it held went back: the machines are free again.
    nodes = await sched.nodes()
    assert all(n.free == n.capacity for n in nodes), nodes


async def test_a_master_that_keeps_failing_fails_the_application_after_its_attempts(sched: SchedClient) -> None:
    app = await sched.submit("fails", [sys.executable, "-c", "raise SystemExit(3)"], max_attempts=2)
    done = await sched.wait(app.app_id, timeout_s=60)
    assert done.state is AppState.FAILED
    assert done.attempts == 2
    assert done.exit_code == 3


async def test_a_killed_application_stops_its_master(sched: SchedClient, fuxi_cluster: SchedCluster) -> None:
    app = await sched.submit("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])

    async def running() -> bool:
        return (await sched.get(app.app_id)).state is AppState.RUNNING

    from feitian.testing.waiting import wait_for_condition

    await wait_for_condition(running, 30, "the master running")
    killed = await sched.kill(app.app_id)
    assert killed.state is AppState.KILLED

    async def gone() -> bool:
        nodes = await sched.nodes()
        return all(n.processes == 0 for n in nodes)

    await wait_for_condition(gone, 30, "the master process stopped")


@pytest.mark.parametrize(
    ("kwargs", "wanted"),
    [
        ({"priority": -1}, "priority"),
        ({"priority": 5000}, "priority"),
        ({"master_shape": {"gpu": 1}}, "gpu"),
        ({"master_shape": {"cpu": -5}}, "cpu"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
async def test_bad_submissions_are_refused_naming_what(
    sched: SchedClient, kwargs: dict[str, object], wanted: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=wanted):
        await sched.submit("bad", ["true"], **kwargs)  # type: ignore[arg-type]


async def test_unknown_quota_group_and_application(sched: SchedClient) -> None:
    with pytest.raises(NotFoundError, match="quota group"):
        await sched.submit("x", ["true"], group="nope")
    with pytest.raises(NotFoundError, match="app-9999"):
        await sched.get("app-9999")
    assert os.environ.get("FEITIAN_TUBO_SOCKET") is None


async def test_an_application_master_cannot_use_what_is_not_its_own(sched: SchedClient, tmp_path: Path) -> None:
    out = tmp_path / "errors.txt"
    script = str(Path(__file__).with_name("am_bad_input.py"))
    app = await sched.submit("bad-am", [sys.executable, script, str(out)])
    done = await sched.wait(app.app_id, timeout_s=60)
    assert done.state is AppState.SUCCEEDED, done
    got = dict(line.split(" ", 1) for line in out.read_text().splitlines())
    assert got["forged-grant"].startswith("NotFoundError") and "not a live grant" in got["forged-grant"]
    assert got["unknown-resource"].startswith("InvalidArgumentError") and "gpu" in got["unknown-resource"]
    assert got["negative-amount"].startswith("InvalidArgumentError")
    assert got["absurd-count"].startswith("InvalidArgumentError")
