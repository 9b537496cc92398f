"""``feitian bench sched --quick`` against real processes (issue 18's benchmark at a tiny scale): every figure
is reported and consistent with the scale asked for. The figures' values are the benchmark's business, not this
test's; it checks that the simulated Tubos obeyed the orders (the masters ran), that grants were measured and
that the standby took over with the whole soft state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FEITIAN = [sys.executable, "-m", "feitian"]
TUBOS, APPS = 20, 10


def _bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FEITIAN, "bench", "sched", *args], capture_output=True, text=True, timeout=timeout)


def test_the_core_part_reports_decisions_and_memory(tmp_path: Path) -> None:
    proc = _bench("--quick", "--no-service", "--json", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    core, memory = result["core"], result["memory"]
    assert core["machines"] == 200 and core["steady_decisions"] > 0 and core["steady_decisions_per_s"] > 0
    assert core["steady_cpu_us_per_decision"] > 0
    assert memory["machines"] == 2_000 and memory["peak_rss_bytes"] > 10 << 20 and memory["fill_decisions"] > 0
    assert "service" not in result and result["met"]["grant_latency_p99_ms"] is None
    assert {p["system"] for p in result["peers_published"]} >= {"Fuxi 2.0 (ATC 2021)", "Borg (EuroSys 2015)"}


def test_bad_input_is_an_error_line(tmp_path: Path) -> None:
    proc = _bench("--quick", "--tubos", "1", "--procs", "2", "--dir", str(tmp_path), timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "error: bench sched: --tubos (1) must be at least --procs (2)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_service_and_failover_parts_report_every_figure(tmp_path: Path) -> None:
    proc = _bench("--quick", "--no-core", "--json", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    service = json.loads(proc.stdout)["service"]
    latency = service["grant_latency"]
    assert latency["count"] > 0 and 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"], latency
    assert service["grants_per_s"] > 0 and service["heartbeats_per_s"] > TUBOS / 2
    assert 0 < service["master_cpu"] < 2 and service["master_rss_bytes"] > 10 << 20
    assert service["tubo_errors"] == 0 and service["am_errors"] == 0, service.get("last_error")
    assert set(service["cores_used"]) == {"nuwa", "simulated_tubos", "simulated_masters", "machine"}
    failover = service["failover"]
    assert failover["grants_held_at_kill"] > 0
    assert 0 < failover["election_s"] < failover["first_grant_s"] < 60, failover
    assert failover["recovery_s"] >= 0
    # The new leader knows every machine and application again, and every master re-registered.
    assert failover["machines_after"] == TUBOS and failover["apps_after"] == APPS, failover
    assert failover["reregistered"] == APPS
