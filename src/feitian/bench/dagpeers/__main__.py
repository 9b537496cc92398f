"""``python -m feitian.bench.dagpeers run [--what noop,wordcount,terasort] [--size-mb N] [--json] …``: the DAG
peers' figures on this machine (the same as ``feitian bench dag-peers``). ``--help`` lists every option.

Exit codes: 0 every run peer produced checked figures, 1 a peer failed, hung or is not installed (``error:``
and ``hint:`` on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import NoReturn

from feitian.bench.dagpeers.runner import (
    FIGURES,
    PEERS,
    DagPeersOptions,
    MissingPeersError,
    default_root,
    print_table,
    run_dag_peers,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}\nhint: see `python -m feitian.bench.dagpeers run --help`\n")
        sys.exit(2)


def _names(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)} (comma-separated)")
        return names

    return parse


def parse_options(argv: list[str]) -> tuple[DagPeersOptions, bool]:
    ap = _Parser(prog="python -m feitian.bench.dagpeers", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the peers and print their figures")
    run.add_argument(
        "--what",
        type=_names(tuple(FIGURES)),
        default=tuple(FIGURES),
        help="figures to run, comma-separated: noop,wordcount,terasort (default: all)",
    )
    run.add_argument(
        "--peers",
        type=_names(PEERS),
        default=PEERS,
        help="peers to run, comma-separated: ray,dask,gnusort,single (default: all)",
    )
    run.add_argument("--size-mb", type=float, default=None, help="both inputs about N MB (default 512 MiB, 1 GB)")
    run.add_argument("--tasks", type=int, default=None, help="no-op tasks (default 20,000)")
    run.add_argument("--reps", type=int, default=1, help="repetitions per peer (the best is shown)")
    run.add_argument("--root", default=default_root(), help="where inputs are cached and logs kept")
    run.add_argument("--timeout", type=float, default=None, help="seconds per peer run before it is stopped")
    run.add_argument("--seed", type=int, default=DagPeersOptions.seed, help="the inputs' seed")
    run.add_argument("--skip-missing", action="store_true", help="report peers not installed as skipped")
    run.add_argument("--drop-inputs", action="store_true", help="delete the generated inputs at the end")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    ns = ap.parse_args(argv)
    if ns.size_mb is not None and ns.size_mb <= 0:
        ap.error("--size-mb must be > 0")
    for name in ("tasks", "reps", "timeout"):
        value = getattr(ns, name)
        if value is not None and value <= 0:
            ap.error(f"--{name} must be > 0")
    sizes = {}
    if ns.size_mb is not None:
        sizes = {"wordcount_bytes": int(ns.size_mb * 1e6), "terasort_bytes": int(ns.size_mb * 1e6)}
    opts = DagPeersOptions(
        what=ns.what,
        peers=ns.peers,
        tasks=ns.tasks or DagPeersOptions.tasks,
        reps=ns.reps,
        root=ns.root,
        timeout_s=ns.timeout,
        seed=ns.seed,
        skip_missing=ns.skip_missing,
        drop_inputs=ns.drop_inputs,
        **sizes,
    )
    return opts, ns.json


def main(argv: list[str] | None = None) -> None:
    opts, as_json = parse_options(sys.argv[1:] if argv is None else argv)
    try:
        result = run_dag_peers(opts, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except MissingPeersError as exc:
        sys.stderr.write(f"error: {exc}\nhint: {exc.hint}\n")
        sys.exit(1)
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
    if any(row["status"] in ("failed", "timeout") for row in result["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
