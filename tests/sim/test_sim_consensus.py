"""Seeded whole-cluster simulation of the Raft core (feitian.testing.sim): a fixed set of seeds for CI.

Each seed runs 3 or 5 replicas plus a spare over a network that loses, delays, duplicates and reorders
messages and partitions replicas, with crashes and restarts from what was persisted, client writes and
ReadIndex reads, membership changes, leader transfers and compaction; every safety invariant is checked as
it goes, and liveness after the faults heal. A failure message carries the command that replays it.
"""

from __future__ import annotations

import pytest

from feitian.consensus import log as consensus_log
from feitian.testing.sim import SimOptions, run_consensus_seed
from feitian.testing.sim.__main__ import main
from feitian.testing.sim.mutants import COLLIDING_READS

# Seeds chosen once, arbitrarily; each one runs in about 0.1-0.3 s.
THREE_NODE_SEEDS = [*range(0, 60, 2), 1002, 1548, 4242]
FIVE_NODE_SEEDS = [*range(1, 60, 2), 777, 2027, 31337]


def _check(seed: int, nodes: int, steps: int = 1500) -> None:
    result = run_consensus_seed(seed, nodes=nodes, steps=steps)
    assert result.ok, f"{result.error}\nreplay: {result.replay()}"
    assert result.stats["committed"] > 0
    assert result.stats["liveness_ticks"] >= 0


@pytest.mark.parametrize("seed", THREE_NODE_SEEDS)
def test_three_replicas(seed: int) -> None:
    """Paper Figure 3 properties and liveness after healing, 3 voters (+ a spare that may join)."""
    _check(seed, 3)


@pytest.mark.parametrize("seed", FIVE_NODE_SEEDS)
def test_five_replicas(seed: int) -> None:
    """Paper Figure 3 properties and liveness after healing, 5 voters (+ a spare that may join)."""
    _check(seed, 5)


@pytest.mark.parametrize(("seed", "nodes"), [(90001, 3), (90002, 5)])
def test_long_runs(seed: int, nodes: int) -> None:
    """Longer histories: many compactions, membership changes and leader changes in one run."""
    _check(seed, nodes, steps=8000)


def test_runs_replay_exactly() -> None:
    """The same seed gives the same run: same statistics, same event trace."""
    a = run_consensus_seed(12345, nodes=5)
    b = run_consensus_seed(12345, nodes=5)
    assert a.stats == b.stats
    assert a.recent_events == b.recent_events
    assert a.stats != run_consensus_seed(12346, nodes=5).stats


def test_simulation_exercises_the_features() -> None:
    """Across the CI seeds, the workload really does what it claims (a guard against a toothless sim)."""
    totals: dict[str, int] = {}
    for seed in range(12):
        stats = run_consensus_seed(seed, nodes=3 if seed % 2 == 0 else 5).stats
        for key in ("committed", "acked", "lost", "reads_done", "elections", "snapshots_installed"):
            totals[key] = totals.get(key, 0) + stats[key]
    assert totals["acked"] > 500
    assert totals["lost"] > 0  # some proposals are overwritten by new leaders, as Raft allows
    assert totals["reads_done"] > 50
    assert totals["elections"] > 30
    assert totals["snapshots_installed"] > 5


def test_checker_catches_a_broken_election_restriction(monkeypatch: pytest.MonkeyPatch) -> None:
    """With §5.4.1's up-to-date check removed, the simulation finds a safety violation (and says how to
    replay it)."""
    monkeypatch.setattr(consensus_log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    failures = [r for r in (run_consensus_seed(seed, nodes=3) for seed in range(10)) if not r.ok]
    assert failures
    assert any("leader completeness" in (r.error or "") or "safety" in (r.error or "") for r in failures)
    assert failures[0].replay().startswith("python -m feitian.testing.sim consensus --seed ")


READ_SEEDS = range(2000, 2040)


@pytest.mark.parametrize("seed", READ_SEEDS)
def test_reads_under_leader_pauses_and_late_messages(seed: int) -> None:
    """The "reads" profile: many ReadIndex reads, retried like the driver does, while leaders are paused,
    crashed and cut off and messages arrive late or twice; no read may return an index below one committed
    (or acknowledged) before it started."""
    result = run_consensus_seed(seed, nodes=3 if seed % 2 == 0 else 5, profile="reads")
    assert result.ok, f"{result.error}\nreplay: {result.replay()}"
    assert result.stats["reads_done"] > 40  # the fewest of these seeds: 47 (seed 2033)


def test_read_profile_exercises_pauses_and_retries() -> None:
    """Guard against a toothless read workload: leaders really pause, reads are really retried."""
    totals: dict[str, int] = {}
    for seed in READ_SEEDS[:6]:
        stats = run_consensus_seed(seed, nodes=3, profile="reads").stats
        for key in ("pauses", "read_retries", "reads_done", "elections"):
            totals[key] = totals.get(key, 0) + stats[key]
    assert totals["pauses"] > 10
    assert totals["read_retries"] > 20
    assert totals["reads_done"] > 1000
    assert totals["elections"] > 20


def test_checker_catches_colliding_read_contexts() -> None:
    """The ReadIndex bookkeeping as it was (pending reads keyed by the requester's context, each replica
    numbering its reads from 1 at every start): the simulation finds a stale read within a few hundred seeds,
    and the replay command reproduces it."""
    for seed in range(400):
        result = run_consensus_seed(seed, nodes=3 if seed % 2 == 0 else 5, profile="reads", mutant=COLLIDING_READS)
        if not result.ok:
            break
    else:
        pytest.fail("400 seeds of the colliding-reads mutant passed: the read-safety check is toothless")
    assert "linearizability" in (result.error or "")
    assert "--mutant colliding-reads" in result.replay() and "--profile reads" in result.replay()
    again = run_consensus_seed(seed, nodes=result.options.nodes, profile="reads", mutant=COLLIDING_READS)
    assert again.error == result.error
    # The real code passes the very same seed.
    assert run_consensus_seed(seed, nodes=result.options.nodes, profile="reads").ok


def test_cli_reports_and_exits(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m feitian.testing.sim consensus`: exit 0 when all seeds pass, a summary, --json for machines."""
    assert main(["consensus", "--seed", "3", "--nodes", "5", "--steps", "300"]) == 0
    assert "seed 3 nodes 5: ok" in capsys.readouterr().out
    assert main(["consensus", "--seeds", "3", "--steps", "200", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"summary": "3 seeds run, 3 passed, 0 failed"' in out


def test_cli_prints_replay_command_on_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failing seed exits 1 and prints the exact command that replays it."""
    monkeypatch.setattr(consensus_log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    code = main(["consensus", "--seeds", "10", "--nodes", "3"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out and "hint: replay with: python -m feitian.testing.sim consensus --seed" in out


def test_options_validate() -> None:
    """A cluster needs at least one replica."""
    from feitian.errors import InvalidArgumentError
    from feitian.testing.sim import ConsensusSimulation

    with pytest.raises(InvalidArgumentError):
        ConsensusSimulation(SimOptions(seed=1, nodes=0))
