"""The peer drivers at tiny scale, each a real process started by the runner: they produce figures only after
checking their own output, and a failing, hanging or missing peer is reported, not fatal."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from feitian.bench.dagpeers import driver
from feitian.bench.dagpeers.data import ensure_dataset
from feitian.bench.dagpeers.runner import DagPeersOptions, MissingPeersError, run_dag_peers, run_driver

SIZE = 400_000  # bytes of each input: tiny, the figures mean nothing, the checks everything
TIMEOUT_S = 120.0


def _needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed (pip install '.[bench]')")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dagpeers")


def _input(root: Path, kind: str) -> list[str]:
    directory, _ = ensure_dataset(str(root), kind, SIZE)
    return ["--input", directory]


def _group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` (from /proc: the field after the command's closing parenthesis)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # it ended meanwhile
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _run(root: Path, peer: str, figure: str, argv: list[str]) -> dict[str, Any]:
    out = root / "out" / f"{peer}-{figure}"
    row = run_driver(peer, figure, argv, str(out), str(root / f"{peer}-{figure}.log"), TIMEOUT_S)
    assert row["status"] == "ok", row
    assert not out.exists()  # the driver cleans its output
    assert _group_members(row["driver_pid"]) == []  # nothing of the driver (or its framework) is left
    return row


def _assert_terasort_checked(row: dict[str, Any], root: Path) -> None:
    _, manifest = ensure_dataset(str(root), "terasort", SIZE)
    (run,) = row["runs"]
    assert run["records"] == manifest.records and run["checksum"] == manifest.checksum
    assert run["MBps"] > 0 and row["best"] == run


def _assert_wordcount_checked(row: dict[str, Any], root: Path) -> None:
    _, manifest = ensure_dataset(str(root), "wordcount", SIZE)
    (run,) = row["runs"]
    assert run["words"] == manifest.words and run["unique_words"] == manifest.unique_words
    assert run["MBps"] > 0


def test_single_process_baseline(root: Path) -> None:
    _assert_terasort_checked(_run(root, "single", "terasort", _input(root, "terasort")), root)
    _assert_wordcount_checked(_run(root, "single", "wordcount", _input(root, "wordcount")), root)


def test_gnu_sort(root: Path) -> None:
    row = _run(root, "gnusort", "terasort", _input(root, "terasort"))
    _assert_terasort_checked(row, root)
    assert row["runs"][0]["parallel"] == 2


@_needs("dask", "distributed")
def test_dask_noop_wordcount_and_terasort(root: Path) -> None:
    (run,) = _run(root, "dask", "noop", ["--tasks", "300"])["runs"]
    assert run["tasks"] == 300 and run["tasks_per_s"] > 0
    assert run["worker_saturation"] == "inf"  # no queuing on the scheduler: trivial tasks' fastest setting
    row = _run(root, "dask", "wordcount", _input(root, "wordcount"))
    _assert_wordcount_checked(row, root)
    assert row["runs"][0]["worker_saturation"] != "inf"  # the default, for real work
    _assert_terasort_checked(_run(root, "dask", "terasort", _input(root, "terasort")), root)


@_needs("ray")
def test_ray_noop_and_wordcount(root: Path) -> None:
    (run,) = _run(root, "ray", "noop", ["--tasks", "300"])["runs"]
    assert run["tasks"] == 300 and run["tasks_per_s"] > 0
    _assert_wordcount_checked(_run(root, "ray", "wordcount", _input(root, "wordcount")), root)


def test_a_failing_driver_is_reported_with_its_error(root: Path) -> None:
    row = run_driver(
        "single", "terasort", ["--input", str(root / "nothing")], str(root / "o"), str(root / "f.log"), TIMEOUT_S
    )
    assert row["status"] == "failed" and row["best"] is None
    assert row["error"].startswith("error: single terasort: no data set in") and "nothing" in row["error"]


def test_a_hanging_driver_is_stopped_at_its_timeout(root: Path) -> None:
    out = root / "hang"
    row = run_driver("single", "terasort", _input(root, "terasort"), str(out), str(root / "h.log"), 0.01)
    assert row["status"] == "timeout" and "no result after" in row["error"]
    assert row["runs"] == [] and not out.exists()
    assert _group_members(row["driver_pid"]) == []


def test_a_missing_framework_is_named(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(driver.PACKAGES, "single", ["no_such_framework_xyz"])
    opts = DagPeersOptions(what=("terasort",), peers=("single",), terasort_bytes=SIZE, root=str(root))
    with pytest.raises(MissingPeersError, match="no_such_framework_xyz not installed") as exc:
        run_dag_peers(opts)
    assert "feitian[bench]" in exc.value.hint
    skipped = DagPeersOptions(**{**opts.__dict__, "skip_missing": True})
    (row,) = run_dag_peers(skipped)["rows"]
    assert row["status"] == "skipped" and "no_such_framework_xyz" in row["error"]


def test_runner_command_prints_checked_figures_as_json(root: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "feitian.bench.dagpeers", "run", "--what", "terasort", "--peers", "single,gnusort"),
            *("--size-mb", str(SIZE / 1e6), "--root", str(root), "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [(r["peer"], r["status"]) for r in result["rows"]] == [("gnusort", "ok"), ("single", "ok")]
    assert result["inputs"]["terasort"]["records"] == SIZE // 100
    assert not os.path.exists(root / "out")


def test_runner_command_refuses_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "feitian.bench.dagpeers", "run", "--what", "sort"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: argument --what: 'sort': choose from noop, wordcount, terasort")
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr
