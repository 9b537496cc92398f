"""``python -m feitian.testing.sim consensus|coord|dfs --seed S | --seeds N [--nodes 3|5] [--steps K] [--json]``.

``consensus`` simulates the Raft core alone; ``coord`` (Nuwa) and ``dfs`` (the Pangu master) run that service's
state machine on every replica with a workload of its commands (:mod:`feitian.testing.sim.service`).
``--profile reads`` (consensus) runs the read-heavy fault mix; ``--mutant NAME`` a deliberately broken core
(:mod:`feitian.testing.sim.mutants`, :mod:`feitian.testing.sim.service_mutants`) that the checker should fail.

Data (one line per failing seed, and the summary) goes to stdout; progress and traces to stderr. Exit code 0
when every seed passed, 1 when any failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from feitian.testing.sim.consensus import PROFILES, SimResult, replay_command, run_consensus_seed
from feitian.testing.sim.mutants import MUTANTS
from feitian.testing.sim.service import run_service_seed
from feitian.testing.sim.service_mutants import SERVICE_MUTANTS

DEFAULT_STEPS = {"consensus": 1500, "coord": 600, "dfs": 600}
SERVICE_HELP = {
    "coord": "simulate Nuwa (feitian.coord's state machine: sessions, locks, ephemerals) on a Raft cluster",
    "dfs": "simulate the Pangu master (feitian.dfs's namespace state machine: files, chunks, leases)",
}


def _common(p: argparse.ArgumentParser, target: str) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run (replay) this one seed")
    which.add_argument("--seeds", type=int, metavar="N", help="run N seeds, from --first")
    p.add_argument("--first", type=int, default=0, help="first seed of --seeds (default 0)")
    p.add_argument("--nodes", type=int, choices=[3, 5], help="cluster size (default: 3 for even seeds, 5 for odd)")
    steps = DEFAULT_STEPS[target]
    p.add_argument("--steps", type=int, default=steps, help=f"simulated ticks of faults and load (default {steps})")
    p.add_argument("--json", action="store_true", help="machine-readable output, one JSON object per line")
    p.add_argument("--trace", action="store_true", help="print the event trace to stderr")
    p.add_argument("--keep-going", action="store_true", help="with --seeds: do not stop at the first failure")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feitian.testing.sim", description=__doc__)
    sub = parser.add_subparsers(dest="target", required=True)
    p = sub.add_parser("consensus", help="simulate a Raft cluster (feitian.consensus)")
    _common(p, "consensus")
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default="mixed",
        help="fault and workload mix: mixed (default) or reads (many reads under leader pauses and late messages)",
    )
    p.add_argument(
        "--mutant",
        choices=MUTANTS,
        help="run a deliberately broken variant of the core instead (the checker should fail it)",
    )
    for service, mutants in SERVICE_MUTANTS.items():
        p = sub.add_parser(service, help=SERVICE_HELP[service])
        _common(p, service)
        p.add_argument(
            "--mutant",
            choices=mutants,
            help="run a deliberately broken variant of the state machine instead (the checker should fail it)",
        )
    return parser


def _run(args: argparse.Namespace, seed: int) -> SimResult:
    nodes = _nodes_for(seed, args.nodes)
    if args.target == "consensus":
        return run_consensus_seed(
            seed, nodes=nodes, steps=args.steps, trace=args.trace, mutant=args.mutant, profile=args.profile
        )
    return run_service_seed(args.target, seed, nodes=nodes, steps=args.steps, trace=args.trace, mutant=args.mutant)


SERVICE_COUNTS = (
    "locks_granted",
    "lock_conflicts",
    "sessions_created",
    "sessions_expired",
    "duplicates",
    "retried_answers_equal",
    "files_created",
    "chunks_added",
    "takeovers",
    "leases_busy",
)


def _nodes_for(seed: int, nodes: int | None) -> int:
    return nodes if nodes is not None else (3 if seed % 2 == 0 else 5)


def _report(result: SimResult, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "seed": result.options.seed,
                    "nodes": result.options.nodes,
                    "steps": result.options.steps,
                    "ok": result.ok,
                    "error": result.error,
                    "replay": result.replay(),
                    "stats": result.stats,
                }
            )
        )
        return
    if result.ok and result.options.service is not None:
        s = result.stats
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in s.items() if k in SERVICE_COUNTS)
        print(
            f"seed {result.options.seed} nodes {result.options.nodes}: ok — {s['service_applied']} entries applied "
            f"and checked on the replicas, {s['elections']} elections, {s['clock_jumps']} clock jumps, "
            f"{s['snapshots_installed']} snapshots; {counts}"
        )
        return
    if result.ok:
        s = result.stats
        print(
            f"seed {result.options.seed} nodes {result.options.nodes}: ok — {s['committed']} committed, "
            f"{s['acked']} acked, {s['reads_done']} reads, {s['elections']} elections, max term {s['max_term']}, "
            f"{s['snapshots_installed']} snapshots, liveness in {s['liveness_ticks']} ticks"
        )
        return
    print(f"seed {result.options.seed} nodes {result.options.nodes}: FAILED")
    print(f"error: {result.error}")
    print("recent events:")
    for line in result.recent_events[-30:]:
        print(f"  {line}")
    print(f"hint: replay with: {result.replay()}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.steps < 1:
        print("error: --steps must be >= 1", file=sys.stderr)
        return 2
    if args.seed is not None:
        result = _run(args, args.seed)
        _report(result, args.json)
        return 0 if result.ok else 1
    if args.seeds < 1:
        print("error: --seeds must be >= 1", file=sys.stderr)
        return 2
    failed: list[SimResult] = []
    worst_liveness = 0
    started = time.monotonic()
    for seed in range(args.first, args.first + args.seeds):
        result = _run(args, seed)
        if not result.ok or args.json:
            _report(result, args.json)
        worst_liveness = max(worst_liveness, int(result.stats.get("liveness_ticks", 0)))
        if not result.ok:
            failed.append(result)
            if not args.keep_going:
                break
        ran = seed - args.first + 1
        if ran % 50 == 0:
            print(f"... {ran} seeds, {len(failed)} failed, {time.monotonic() - started:.0f}s", file=sys.stderr)
    ran = (failed[-1].options.seed - args.first + 1) if failed and not args.keep_going else args.seeds
    summary = f"{ran} seeds run, {ran - len(failed)} passed, {len(failed)} failed"
    if not args.json and args.target == "consensus":
        summary += f" (slowest recovery after healing: {worst_liveness} ticks)"
    if args.json:
        print(json.dumps({"summary": summary, "failed": [f.options.seed for f in failed]}))
    else:
        print(summary)
        for f in failed:
            print(f"  replay: {replay_command(f.options)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
