from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feitian.deploy.cluster import LocalCluster


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[str]:
    """A directory for `feitian cluster up --dir`; whatever the test did, what the cluster started is stopped
    afterwards, by the pids it recorded."""
    directory = tmp_path / "cluster"
    yield str(directory)
    lc = LocalCluster(str(directory))
    if Path(lc.state_path).exists():
        lc.down(grace_s=5)
