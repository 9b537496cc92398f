"""``feitian bench dag-peers``: the runner behind the bench CLI, with its errors said the CLI's way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from feitian.bench.dagpeers import driver
from feitian.cli.main import cli


def test_dag_peers_prints_checked_figures(tmp_path: Path) -> None:
    args = [
        "bench",
        "dag-peers",
        "--what",
        "terasort",
        "--peers",
        "single",
        "--size-mb",
        "0.2",
        "--root",
        str(tmp_path),
    ]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["status"] == "ok" and row["best"]["records"] == 2000


def test_a_missing_framework_is_an_error_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(driver.PACKAGES, "ray", ["no_such_framework_xyz"])
    result = CliRunner().invoke(
        cli, ["bench", "dag-peers", "--what", "noop", "--peers", "ray", "--root", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "error: no_such_framework_xyz not installed (needed by the ray peer)" in result.stderr
    assert "hint: pip install 'feitian[bench]'" in result.stderr and "Traceback" not in result.stderr


def test_unknown_figure_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["bench", "dag-peers", "--peers", "spark"])
    assert result.exit_code == 2
    assert "error: Invalid value for '--peers': 'spark': choose from ray, dask, gnusort, single" in result.stderr
