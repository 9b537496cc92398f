"""A Pangu cluster of real processes (3 masters, 4 chunk servers on racks r1, r2, r3, r1) shared by a module's
tests, with 1 MiB chunks so that small files span several chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from feitian.dfs.client.client import DfsClient
from feitian.testing.dfs import TEST_CLIENT_CONFIG, DfsCluster

MiB = 1 << 20


@pytest.fixture(scope="module")
def dfs_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DfsCluster]:
    cluster = DfsCluster(tmp_path_factory.mktemp("pangu"), chunk_size_bytes=1 * MiB)
    cluster.start()
    try:
        yield cluster
    finally:
        assert cluster.stop() == []


@pytest.fixture
async def dfs(dfs_cluster: DfsCluster) -> AsyncIterator[DfsClient]:
    client = await dfs_cluster.client(TEST_CLIENT_CONFIG)
    try:
        yield client
    finally:
        await client.rpc.close()
