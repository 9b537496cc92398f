"""Applications in packages (FUXI-6) on a real cluster with Pangu: the master process and a worker run inside the
package (its bin/ on PATH, read-only), downloaded once per machine; an unknown package is refused at submit."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from feitian.coord import CoordClient
from feitian.dfs import DfsClient
from feitian.errors import NotFoundError
from feitian.sched.messages import AppState
from feitian.sched.pkg import PackageStore
from feitian.testing.sched import SchedCluster


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
