"""The ``supervisors`` fixture: Tubo process supervisors on a test's own root and cgroup prefix, everything they
started killed and their cgroups removed at the end, whatever happened (tubo_fixtures.Supervisors)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tubo_fixtures import TEST_PREFIX, Supervisors


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[Supervisors]:
    made = Supervisors(tmp_path / "tubo", f"{TEST_PREFIX}/{uuid.uuid4().hex[:12]}")
    try:
        yield made
    finally:
        made.cleanup()
