"""``python -m feitian.testing.sim consensus --seed S | --seeds N [--nodes 3|5] [--steps K] [--json]``.

``--profile reads`` runs the read-heavy fault mix; ``--mutant NAME`` a deliberately broken core
(:mod:`feitian.testing.sim.mutants`) that the checker should fail.

Data (one line per failing seed, and the summary) goes to stdout; progress and traces to stderr. Exit code 0
when every seed passed, 1 when any failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from feitian.testing.sim.consensus import PROFILES, SimOptions, SimResult, replay_command, run_consensus_seed
from feitian.testing.sim.mutants import MUTANTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feitian.testing.sim", description=__doc__)
    sub = parser.add_subparsers(dest="target", required=True)
    p = sub.add_parser("consensus", help="simulate a Raft cluster (feitian.consensus)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run (replay) this one seed")
    which.add_argument("--seeds", type=int, metavar="N", help="run N seeds, from --first")
    p.add_argument("--first", type=int, default=0, help="first seed of --seeds (default 0)")
    p.add_argument("--nodes", type=int, choices=[3, 5], help="cluster size (default: 3 for even seeds, 5 for odd)")
    p.add_argument("--steps", type=int, default=1500, help="simulated ticks of faults and load (default 1500)")
    p.add_argument("--json", action="store_true", help="machine-readable output, one JSON object per line")
    p.add_argument("--trace", action="store_true", help="print the event trace to stderr")
    p.add_argument("--keep-going", action="store_true", help="with --seeds: do not stop at the first failure")
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
    return parser


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
    if args.seed is not None:
        options = SimOptions(
            seed=args.seed,
            nodes=_nodes_for(args.seed, args.nodes),
            steps=args.steps,
            mutant=args.mutant,
            profile=args.profile,
        )
        result = run_consensus_seed(
            options.seed,
            nodes=options.nodes,
            steps=options.steps,
            trace=args.trace,
            mutant=args.mutant,
            profile=args.profile,
        )
        _report(result, args.json)
        return 0 if result.ok else 1
    if args.seeds < 1:
        print("error: --seeds must be >= 1", file=sys.stderr)
        return 2
    failed: list[SimResult] = []
    worst_liveness = 0
    started = time.monotonic()
    for seed in range(args.first, args.first + args.seeds):
        nodes = _nodes_for(seed, args.nodes)
        result = run_consensus_seed(
            seed, nodes=nodes, steps=args.steps, trace=args.trace, mutant=args.mutant, profile=args.profile
        )
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
    if not args.json:
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
