"""The uniform node status (feitian.rpc.status) and its /metrics page (feitian.rpc.metrics): the shape, the
builder's checks, and one source for both the reply and the Prometheus exposition."""

from __future__ import annotations

import msgspec
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from feitian.errors import InternalError, InvalidArgumentError
from feitian.rpc.metrics import MetricsServer, exposition
from feitian.rpc.status import Metric, NodeStats, Replication, StatsReply


class FakeClock:
    def __init__(self) -> None:
        self.mono_ns = 5_000_000_000
        self.wall = 1_700_000_000_000_000_000

    def monotonic_ns(self) -> int:
        return self.mono_ns

    def wall_ns(self) -> int:
        return self.wall


WRITES = Metric("writes", "counter", "writes applied")
QUEUE = Metric("queue_depth", "gauge", "requests waiting")


def sample_stats(clock: FakeClock, figures: dict[str, float]) -> NodeStats:
    stats = NodeStats("kv-1", "kv", cluster="c1", clock=clock, version="9.9")
    stats.add_source([WRITES, QUEUE], lambda: figures)
    return stats


def test_reply_shape_and_values_follow_the_sources() -> None:
    clock = FakeClock()
    figures: dict[str, float] = {"writes": 3, "queue_depth": 1.5}
    stats = sample_stats(clock, figures)
    first = stats.reply()
    assert (first.node, first.role, first.cluster, first.version, first.status) == ("kv-1", "kv", "c1", "9.9", "ok")
    assert first.uptime_s == 0.0 and first.started_at_ns == clock.wall and first.replication is None
    assert first.counters == {"writes": 3} and first.gauges == {"queue_depth": 1.5}
    assert first.help == {"writes": "writes applied", "queue_depth": "requests waiting"}
    assert isinstance(first.counters["writes"], int)

    figures["writes"] = 7
    clock.mono_ns += 2_500_000_000
    term = [4]
    stats.set_replication(
        lambda: Replication(
            role="leader", term=term[0], leader_id=1, leader="tcp://h:1", commit_index=10, applied_index=9
        )
    )
    second = stats.reply()
    assert second.counters["writes"] == 7 and second.uptime_s == 2.5
    assert second.replication is not None and second.replication.term == 4
    # The wire form round-trips (msgpack, as Kuafu sends it).
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(second), type=StatsReply) == second


def test_bad_names_are_refused_all_at_once() -> None:
    stats = NodeStats("n", "echo")
    stats.add_source([WRITES], lambda: {"writes": 1})
    with pytest.raises(InvalidArgumentError) as info:
        stats.add_source(
            [Metric("Bad-Name", "gauge", ""), Metric("writes", "counter", ""), Metric("x" * 81, "gauge", "")],
            lambda: {},
        )
    message = str(info.value)
    assert "'Bad-Name' is not a metric name" in message and "'writes' is added twice" in message
    assert "'xxxx" in message
    assert [m.name for m in stats.metrics] == ["writes"]  # nothing of the refused source was kept


def test_a_source_that_leaves_out_a_metric_is_a_bug() -> None:
    stats = NodeStats("n", "echo")
    stats.add_source([WRITES, QUEUE], lambda: {"writes": 1})
    with pytest.raises(InternalError, match="'queue_depth' left it out"):
        stats.reply()


def test_exposition_is_built_from_the_reply_in_a_registry_of_its_own() -> None:
    clock = FakeClock()
    figures: dict[str, float] = {"writes": 12, "queue_depth": 2}
    stats = sample_stats(clock, figures)
    stats.set_replication(
        lambda: Replication(role="follower", term=3, leader_id=2, leader="", commit_index=40, applied_index=38)
    )
    registry, page = exposition(stats)
    assert registry is not prometheus_client.REGISTRY
    assert b"feitian_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)  # nothing global
    samples = {
        (s.name, s.labels.get("version", "")): s
        for family in text_string_to_metric_families(page.decode())
        for s in family.samples
    }
    assert samples[("feitian_writes_total", "")].value == 12
    assert samples[("feitian_writes_total", "")].labels == {"node": "kv-1", "role": "kv"}
    assert samples[("feitian_queue_depth", "")].value == 2
    assert samples[("feitian_raft_term", "")].value == 3
    assert samples[("feitian_raft_is_leader", "")].value == 0
    assert samples[("feitian_raft_commit_index", "")].value == 40
    assert samples[("feitian_up", "")].value == 1
    assert samples[("feitian_build_info", "9.9")].value == 1
    assert b"# HELP feitian_writes_total writes applied" in page
    # A second node in the same process has its own registry and figures.
    other = NodeStats("kv-2", "kv")
    other.add_source([WRITES], lambda: {"writes": 1})
    _, other_page = exposition(other)
    assert b'node="kv-1"' not in other_page and b'feitian_writes_total{node="kv-2",role="kv"} 1.0' in other_page


def test_a_degraded_node_reports_up_zero() -> None:
    stats = NodeStats("n", "echo", health=lambda: "degraded")
    assert stats.reply().status == "degraded"
    assert b'feitian_up{node="n",role="echo"} 0.0' in exposition(stats)[1]


def test_a_bad_metrics_address_is_a_config_error() -> None:
    stats = NodeStats("n", "echo")
    with pytest.raises(InvalidArgumentError, match=r"\[node\] metrics = 'unix:///tmp/x'"):
        MetricsServer(stats, "unix:///tmp/x")
    with pytest.raises(InvalidArgumentError, match=r"\[node\] metrics = '127.0.0.1:9'"):
        MetricsServer(stats, "127.0.0.1:9")
