"""Every role of `feitian cluster up` answers node.Stats with the same shape and serves /metrics (issue 17): real
node processes, one of each role, scraped over HTTP and asked over Kuafu; the figures move under load."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from feitian.deploy.cluster import LocalCluster
from feitian.deploy.roles import ROLES
from feitian.rpc.status import StatsReply
from feitian.testing.cli import feitian
from feitian.testing.waiting import wait_until

REPLICATED = {"coord", "kv", "dfs-master"}


def scrape(url: str) -> dict[str, float]:
    """The page at ``url`` as {sample name: value}, after checking every sample names the node's labels."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        page = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            assert {"node", "role"} <= set(sample.labels)
            out[sample.name] = sample.value
    return out


def stats_by_node(lc: LocalCluster) -> dict[str, StatsReply]:
    """node.Stats of every node, asked over Kuafu (as the admin of the secured cluster)."""
    rows = lc.status(timeout_s=5)
    assert all(r.state == "ok" and r.stats is not None for r in rows), [(r.name, r.state, r.detail) for r in rows]
    return {r.name: r.stats for r in rows if r.stats is not None}


def test_every_role_answers_stats_and_serves_metrics(cluster_dir: str, tmp_path: Path) -> None:
    feitian(
        "cluster", "up", "--dir", cluster_dir, "--echo", "1", "--kv", "1", "--coord", "1",
        "--dfs-masters", "1", "--chunkservers", "1", check=True, timeout=120,
    )  # fmt: skip
    lc = LocalCluster(cluster_dir)
    procs = {p.name: p for p in lc.load().processes}
    assert {p.role for p in procs.values()} == set(ROLES)  # one node of every role the cluster can run

    # node.Stats: the same shape from every role, with its own identity and (for replicas) its place in the group.
    # Each replicated group here has one replica, which leads once it has held its election.
    def elected() -> bool:
        replies = stats_by_node(lc)
        roles = [r.replication.role if r.replication else "" for r in replies.values() if r.role in REPLICATED]
        return roles == ["leader"] * len(REPLICATED)

    wait_until(elected, timeout_s=20, what="every single-replica group has elected its leader")
    stats = stats_by_node(lc)
    assert set(stats) == set(procs)
    for name, reply in stats.items():
        proc = procs[name]
        assert (reply.node, reply.role, reply.pid, reply.status) == (name, proc.role, proc.pid, "ok")
        assert reply.uptime_s > 0 and reply.version
        assert "rpc_requests_completed" in reply.counters and "rpc_connections" in reply.gauges
        if proc.role in REPLICATED:
            assert reply.replication is not None and reply.replication.term >= 1
            assert "replica_proposals" in reply.counters
        else:
            assert reply.replication is None

    # /metrics of every node: the same figures, under the same names.
    pages = {}
    for name, proc in procs.items():
        url = proc.extra["metrics"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        page = pages[name] = scrape(url)
        assert page["feitian_up"] == 1 and page["feitian_uptime_seconds"] > 0
        assert page["feitian_build_info"] == 1
        assert page["feitian_rpc_requests_completed_total"] >= stats[name].counters["rpc_requests_completed"]
        assert ("feitian_raft_term" in page) == (proc.role in REPLICATED)
    assert pages["coord-1"]["feitian_raft_is_leader"] == 1

    # Load moves the figures: a coord write, a kv write, a file written to Pangu, an echo call.
    feitian("coord", "create", "/stats-probe", "v1", "--cluster", cluster_dir, check=True)
    feitian("kv", "put", "k1", "v1", "--cluster", cluster_dir, check=True)
    local = tmp_path / "f.bin"
    local.write_bytes(b"x" * 100_000)
    feitian("dfs", "put", str(local), "/f.bin", "--replication", "1", "--cluster", cluster_dir, check=True)
    feitian("rpc", "call", "echo-1", "echo.text", "--text", "hi", "--cluster", cluster_dir, check=True)

    def moved() -> bool:
        now = stats_by_node(lc)
        before = stats
        checks = [
            now["coord-1"].counters["replica_proposals"] > before["coord-1"].counters["replica_proposals"],
            now["coord-1"].gauges["coord_revision"] > before["coord-1"].gauges["coord_revision"],
            now["kv-1"].counters["replica_proposals"] > before["kv-1"].counters["replica_proposals"],
            now["kv-1"].gauges["kv_keys"] == 1,
            now["dfs-master-1"].gauges["dfs_chunks"] >= 1,
            now["chunkserver-1"].gauges["chunk_replicas"] >= 1,
            now["chunkserver-1"].gauges["chunk_used_bytes"] >= 100_000,
            now["echo-1"].counters["rpc_requests_completed"] > before["echo-1"].counters["rpc_requests_completed"],
        ]
        return all(checks)

    wait_until(moved, timeout_s=20, what="the coord, kv, dfs and echo figures move after writes")
    after = scrape(procs["coord-1"].extra["metrics"])
    assert after["feitian_replica_proposals_total"] > pages["coord-1"]["feitian_replica_proposals_total"]
    assert after["feitian_raft_commit_index"] > pages["coord-1"]["feitian_raft_commit_index"]
    assert scrape(procs["chunkserver-1"].extra["metrics"])["feitian_chunk_used_bytes"] >= 100_000

    # The CLI shows it: JSON carries each node's full reply, the table a replica's role and term, --stats the
    # figures.
    out = json.loads(feitian("cluster", "status", "--cluster", cluster_dir, "--json", check=True).stdout)
    rows = {r["name"]: r for r in out["processes"]}
    assert rows["kv-1"]["stats"]["replication"]["role"] == "leader"
    assert rows["echo-1"]["stats"]["role"] == "echo" and rows["echo-1"]["stats"]["replication"] is None
    text = feitian("cluster", "status", "--cluster", cluster_dir, "--stats", check=True).stdout
    assert any(line.startswith("coord-1") and "leader in term" in line for line in text.splitlines())
    assert any(line.split()[:2] == ["chunkserver-1", "chunk_replicas"] for line in text.splitlines())
