"""``feitian bench security``: what Zhongkui costs, measured against real node processes in one run.

* **Handshakes.** Connections per second from one client to an echo node, each a new connection that answers
  one ``kuafu.Health``: in a secured cluster that is a full mutual TLS 1.3 handshake, the server's check of the
  client's certificate, the client's check of the server's, and one capability presented and verified; in an
  insecure cluster the same without security. Also the in-process figures of ``python -m
  feitian.security.bench`` (raw TLS handshakes, chain and token verification, cached authorization checks).
* **RPC.** The figures of ``feitian bench rpc`` (lat100, thr100, up1m on ``echo.bytes``) against an echo node of
  an insecure cluster and of a secured one (mutual TLS plus a capability check before every call). The two are
  measured in alternating rounds, and the medians compared, so that load from other programs on the machine
  affects both alike.

Targets (issue ZK-1..4): secured thr100 >= 0.8x and up1m >= 0.6x the unsecured figures.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

from feitian.bench.rpc import cluster_client, measure, plain_client, secure_ratios
from feitian.deploy import LocalCluster, default_spec
from feitian.rpc import Client, ClientConfig, Health
from feitian.runtime.eventloop import run
from feitian.security import CapabilitySet, ClientIdentity
from feitian.security import bench as micro_bench

TARGETS = {"secure_thr100_vs_insecure": 0.8, "secure_up1m_vs_insecure": 0.6}
_METRICS = ("lat100_p50_us", "lat100_p99_us", "thr100_calls_per_s", "up1m_MBps")


async def _connects_per_s(address: str, seconds: float, lc: LocalCluster | None) -> float:
    tls = credentials = None
    if lc is not None:
        files = lc.security.identity("admin")
        tls = ClientIdentity(files.load_tls())
        credentials = CapabilitySet(files.read_capabilities())
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        async with Client(ClientConfig(name="bench-connect"), tls=tls, credentials=credentials) as client:
            await client.call(address, Health(), timeout=10)
        count += 1
    return count / (time.perf_counter() - start)


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: round(statistics.median(r[key] for r in rounds), 1) for key in _METRICS}


def run_security_bench(seconds: float = 2.0, rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="feitian-bench-security-") as tmp:
        plain_lc = LocalCluster(os.path.join(tmp, "insecure"))
        secure_lc = LocalCluster(os.path.join(tmp, "secure"))
        try:
            plain_state = plain_lc.up(
                default_spec(echo=1, proxy=False, kv=0, dfs_masters=0, chunkservers=0, coord=0), secure=False
            )
            secure_state = secure_lc.up(default_spec(echo=1, proxy=False, kv=0, dfs_masters=0, chunkservers=0, coord=0))
            plain_addr = next(p.addresses[0] for p in plain_state.processes if p.role == "echo")
            secure_addr = next(p.addresses[0] for p in secure_state.processes if p.role == "echo")
            handshakes = {
                "secure_connects_per_s": round(run(_connects_per_s(secure_addr, seconds, secure_lc))),
                "insecure_connects_per_s": round(run(_connects_per_s(plain_addr, seconds, None))),
            }
            insecure_rounds, secure_rounds = [], []
            for _ in range(rounds):
                insecure_rounds.append(run(measure(plain_addr, seconds, plain_client())))
                secure_rounds.append(run(measure(secure_addr, seconds, cluster_client(secure_lc))))
        finally:
            for lc in (plain_lc, secure_lc):
                if os.path.exists(lc.state_path):
                    lc.down()
    insecure, secure = _median(insecure_rounds), _median(secure_rounds)
    ratios = secure_ratios(insecure, secure)
    micro = micro_bench.run(min(1.0, seconds / 2))
    return {
        "handshakes": {
            **handshakes,
            "tls13_mutual_handshakes_per_s_in_process": micro.pop("tls13_mutual_handshakes_per_s"),
        },
        "rpc": {"insecure": insecure, "secure": secure},
        "ratios": ratios,
        "targets": TARGETS,
        "meets_targets": {key: ratios[key] >= floor for key, floor in TARGETS.items()},
        "rounds": {"insecure": insecure_rounds, "secure": secure_rounds},
        "micro": micro,
        "seconds_per_measurement": seconds,
    }


def print_report(result: dict[str, Any]) -> None:
    hs = result["handshakes"]
    print("connections per second (new connection + one Health call):")
    print(f"  secured (mutual TLS 1.3 + capability presented): {hs['secure_connects_per_s']}")
    print(f"  insecure:                                         {hs['insecure_connects_per_s']}")
    print(f"  raw TLS 1.3 mutual handshakes, in process:        {hs['tls13_mutual_handshakes_per_s_in_process']}")
    print(f"\nRPC (median of {len(result['rounds']['secure'])} alternating rounds):")
    print(f"{'':12}{'lat100 p50 us':>14}{'p99 us':>10}{'thr100 calls/s':>16}{'up1m MB/s':>11}")
    for name in ("insecure", "secure"):
        fig = result["rpc"][name]
        print(
            f"{name:12}{fig['lat100_p50_us']:>14}{fig['lat100_p99_us']:>10}{fig['thr100_calls_per_s']:>16.0f}"
            f"{fig['up1m_MBps']:>11}"
        )
    for key, value in result["ratios"].items():
        target = result["targets"].get(key)
        verdict = "" if target is None else f" (target >= {target}: {'met' if value >= target else 'NOT met'})"
        print(f"  {key}: {value}{verdict}")
    micro = result["micro"]
    print("\nin process, one core:")
    for key in ("chain_verify_per_s_len1", "chain_verify_per_s_len3", "token_mint_verify_per_s"):
        print(f"  {key}: {micro[key]}")
    print(f"  authorize_cached_check_per_s: {micro['authorize_cached_check_per_s']}")
