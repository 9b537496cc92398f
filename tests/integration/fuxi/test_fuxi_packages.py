"""Applications in packages (FUXI-6) on a real cluster with Pangu: the master process and a worker run inside the
package (its bin/ on PATH, read-only), downloaded once per machine; an unknown package is refused at submit."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from feitian.coord import CoordClient
from feitian.dfs import DfsClient
from feitian.errors import NotFoundError
from feitian.rpc import Client
from feitian.runtime.procs import signal_process
from feitian.sched.messages import AppInfo, AppState, ProcInfo
from feitian.sched.pkg import PackageRef, PackageStore
from feitian.testing.sched import SchedCluster
from feitian.testing.waiting import wait_for_condition


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedCluster]:
    options = {"coord": 1, "dfs_masters": 1, "chunkservers": 3, "machines": 2}
    with SchedCluster.running(tmp_path_factory.mktemp("fuxi-pkg"), **options) as made:
        yield made


async def test_a_packaged_application_runs_in_its_package(cluster: SchedCluster, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "bin").mkdir(parents=True)
    script = package / "bin" / "hello"
    # The master writes where it runs from and what it read there.
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "here = os.environ['FEITIAN_PACKAGE_DIR']\n"
        "open(sys.argv[1], 'w').write(here + ' ' + open(os.path.join(here, 'data.txt')).read())\n"
    )
    script.chmod(0o755)
    (package / "data.txt").write_text("payload-1")
    rpc = await cluster.rpc_client()
    coord = CoordClient(rpc, cluster.coord_addresses)
    try:
        store = PackageStore(coord, DfsClient(rpc, cluster.dfs_addresses))
        ref = await store.upload("hello", package)
        sched = await cluster.client()
        out = tmp_path / "out.txt"
        app = await sched.submit("packaged", ["hello", str(out)], package="hello")
        assert app.package == f"hello@{ref.version}"
        done = await sched.wait(app.app_id, timeout_s=60)
        assert done.state is AppState.SUCCEEDED, done
        where, payload = out.read_text().split()
        assert Path(where).name == ref.digest
        assert payload == "payload-1"
        # Unpacked read-only (the modes: a process running as root is not stopped by them; docs/sched.md).
        assert not os.stat(where).st_mode & 0o222
        assert not os.stat(os.path.join(where, "data.txt")).st_mode & 0o222
        with pytest.raises(NotFoundError, match="nope"):
            await sched.submit("missing", ["hello"], package="nope")
        await sched.router.rpc.close()
    finally:
        await coord.close()
        await rpc.close()


async def upload(cluster: SchedCluster, tmp_path: Path, name: str) -> tuple[PackageRef, PackageStore, Client]:
    """A package of its own content (so no machine has it cached), with one script: bin/ok (exits 0)."""
    package = tmp_path / name
    (package / "bin").mkdir(parents=True)
    (package / "bin" / "ok").write_text(f"#!{sys.executable}\n# {name}\n")
    (package / "bin" / "ok").chmod(0o755)
    rpc = await cluster.rpc_client()
    store = PackageStore(CoordClient(rpc, cluster.coord_addresses), DfsClient(rpc, cluster.dfs_addresses))
    return await store.upload(name, package), store, rpc


async def test_a_master_waits_while_its_package_is_fetched(cluster: SchedCluster, tmp_path: Path) -> None:
    ref, _, rpc = await upload(cluster, tmp_path, "slow")
    sched = await cluster.client()
    dfs_master = cluster.ref(cluster.names("dfs-master")[0])
    try:
        # Pangu's master stopped: the Tubo's download cannot go on, so the process stays waiting.
        signal_process(dfs_master, signal.SIGSTOP)
        try:
            app = await sched.submit("waits", ["ok"], package="slow")
            seen: list[ProcInfo] = []

            async def waiting() -> bool:
                info = await sched.get(app.app_id)
                seen[:] = info.procs
                return bool(seen) and seen[0].state == "waiting" and info.state is AppState.PENDING

            await wait_for_condition(waiting, 30, "the master process reported waiting")
            assert f"fetching package {ref.spec}" in seen[0].detail
            empty = await sched.read_log(app.app_id)  # nothing written yet, more may come
            assert (empty.data, empty.running) == (b"", True)
        finally:
            signal_process(dfs_master, signal.SIGCONT)
        done = await sched.wait(app.app_id, timeout_s=60)
        assert done.state is AppState.SUCCEEDED, done
        assert [p.state for p in done.procs if p.state != "failed"][-1:] == ["finished"]
    finally:
        await sched.router.rpc.close()
        await rpc.close()


async def test_a_package_that_cannot_be_fetched_fails_the_process(cluster: SchedCluster, tmp_path: Path) -> None:
    ref, store, rpc = await upload(cluster, tmp_path, "broken")
    await DfsClient(rpc, cluster.dfs_addresses).delete(store._blob(ref.digest))  # its blob lost from Pangu
    sched = await cluster.client()
    try:
        app = await sched.submit("unfetchable", ["ok"], package="broken", max_attempts=1)
        seen: list[AppInfo] = []

        async def ended() -> bool:
            seen[:] = [await sched.get(app.app_id)]
            return seen[0].state is not AppState.PENDING

        try:
            await wait_for_condition(ended, 60, "the application to fail")
        except AssertionError:
            raise AssertionError(f"still pending: {seen}") from None
        done = seen[0]
        assert done.state is AppState.FAILED, done
        assert f"package {ref.spec}: package blob {ref.digest}: missing from Pangu" in done.detail
        procs = await sched.procs(app.app_id)
        assert [(p.state, p.exit_code) for p in procs] == [("failed", 127)]
        assert procs[0].detail.startswith(f"could not start: package {ref.spec}")
        with pytest.raises(NotFoundError, match=f"no log of process '{procs[0].proc_id}'"):
            await sched.read_log(app.app_id)
    finally:
        await sched.router.rpc.close()
        await rpc.close()
