"""A Fuxi cluster of real processes (3 Nuwa replicas, 2 FuxiMasters, 2 Tubos as machines m1/r1 and m2/r2) shared
by a module's tests; every process, including what the Tubos started, is stopped by pid afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from feitian.sched.client import SchedClient
from feitian.testing.sched import SchedCluster


@pytest.fixture(scope="module")
def fuxi_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedCluster]:
    with SchedCluster.running(tmp_path_factory.mktemp("fuxi")) as cluster:
        yield cluster


@pytest.fixture
async def sched(fuxi_cluster: SchedCluster) -> AsyncIterator[SchedClient]:
    client = await fuxi_cluster.client()
    try:
        yield client
    finally:
        await client.router.rpc.close()
