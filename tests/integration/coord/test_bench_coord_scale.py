"""``feitian bench coord-scale`` at a tiny size against real processes: every figure of the report is there and
consistent (issue 15). The figures themselves are the benchmark's business, not this test's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feitian.bench.coord_scale import ScaleOptions, print_report, run_coord_scale_bench

LOCKS, SESSIONS, BURST = 500, 20, 20
REPLICA_FIGURES = {
    "role", "rss_bytes", "rss_peak_bytes", "loop_lag_max_ms", "loop_stalls", "nodes", "sessions", "snapshot_index",
    "snapshot_bytes", "snapshot_bytes_from", "snapshot_seconds", "snapshots_installed", "applied_index",
    "loop_lag_max_busy_ms",
}  # fmt: skip
TARGETS = {
    "every lock held, no session lost",
    "longest loop stall ms",
    "longest loop stall while the replica itself ran, ms",
    "RSS per replica GiB",
    "follower catch-up s",
    "lock failover s",
    "burst: every lock held, no session lost",
}


@pytest.mark.slow
def test_every_figure_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opts = ScaleOptions(
        locks=LOCKS,
        sessions=SESSIONS,
        procs=2,
        concurrency=32,
        snapshot_every_entries=200,
        keep_entries_after_snapshot=50,
        burst_sessions=BURST,
        directory=str(tmp_path),
    )
    result = json.loads(json.dumps(run_coord_scale_bench(opts)))  # what --json prints
    acquire = result["acquire"]
    assert acquire["held"] == LOCKS and acquire["errors"] == 0, acquire
    assert acquire["locks_per_s"] > 0 and acquire["seconds"] > 0
    assert set(result["replicas"]) == {"1", "2", "3"}
    for figures in result["replicas"].values():
        assert set(figures) >= REPLICA_FIGURES, figures
        assert figures["rss_bytes"] > 10 << 20 and figures["rss_peak_bytes"] > 10 << 20
        assert figures["loop_lag_max_ms"] >= 0 and figures["sessions"] == SESSIONS
        assert figures["nodes"] > LOCKS and figures["snapshot_index"] > 0 and figures["snapshot_bytes"] > 0
    assert sorted(f["role"] for f in result["replicas"].values()) == ["follower", "follower", "leader"]
    catchup = result["catchup"]
    assert catchup["by_snapshot"], catchup  # the log was compacted past the killed follower
    assert 0 < catchup["process_serving_s"] <= catchup["seconds"] < 60
    assert 0 < result["failover_s"] < 60
    assert result["sessions_lost"] == {"clients": 0, "leader": 0, "after_acquire": SESSIONS, "at_end": SESSIONS}
    burst = result["burst"]
    assert burst["held"] == BURST and burst["sessions_lost"] == 0 and burst["sessions_lost_leader"] == 0, burst
    assert set(result["targets"]) == TARGETS and not result["at_target_scale"]
    print_report(result)
    out = capsys.readouterr().out
    assert "acquisition: 500 locks" in out and "target lock failover s" in out


def test_bad_sizes_are_refused() -> None:
    from feitian.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="--sessions \\(1\\) must be at least --procs \\(2\\)"):
        ScaleOptions(locks=10, sessions=1, procs=2).validate()
