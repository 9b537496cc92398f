from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_cluster_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never touch a user's default cluster directory from a test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.delenv("FEITIAN_CLUSTER", raising=False)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
