"""A Nuwa cluster of three real replica processes (insecure: security is tested in test_coord_cli.py), shared
by the tests of a module; each test works under its own paths."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from nuwa_world import HISTORY_MAX_EVENTS

from feitian.testing.coord import CoordReplicas

_prefixes = itertools.count(1)


@pytest.fixture(scope="module")
def nuwa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordReplicas]:
    replicas = CoordReplicas(tmp_path_factory.mktemp("nuwa"), 3, limits={"history_max_events": HISTORY_MAX_EVENTS})
    replicas.start_all()
    try:
        yield replicas
    finally:
        assert replicas.stop() == []


@pytest.fixture
def base() -> str:
    """A directory path of this test's own."""
    return f"/t{next(_prefixes)}/"
