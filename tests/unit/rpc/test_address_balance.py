"""Address parsing and endpoint selection (pure)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feitian.errors import InvalidArgumentError
from feitian.rpc.core.address import NuwaAddress, TcpAddress, UnixAddress, parse_address, parse_endpoint
from feitian.rpc.core.balance import Backoff, Balancer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:9000", TcpAddress("127.0.0.1", 9000)),
        ("tcp://fooserver01:9000", TcpAddress("fooserver01", 9000)),
        ("tcp://[::1]:80", TcpAddress("::1", 80)),
        ("unix:///run/x.sock", UnixAddress("/run/x.sock")),
        ("nuwa://cluster/myservice", NuwaAddress("cluster", "myservice")),
    ],
)
def test_parse(text: str, expected: object) -> None:
    assert parse_address(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:9000",
        "tcp://host",
        "tcp://host:99999",
        "tcp://:80",
        "tcp://h:x",
        "unix://rel/path",
        "nuwa://cluster",
        "nuwa:///svc",
        "nuwa://c/a/b",
        "http://x:1",
        "tcp://[::1]80",
    ],
)
def test_parse_rejects_with_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_address(text)
    assert repr(text) in info.value.message and info.value.hint


def test_parse_endpoint_refuses_services() -> None:
    with pytest.raises(InvalidArgumentError, match="names a service"):
        parse_endpoint("nuwa://c/svc")


def test_balancer_round_robin_and_staleness() -> None:
    b = Balancer()
    assert b.needs_resolve and b.pick(0) is None
    b.update(["tcp://b:1", "tcp://a:1"])
    assert not b.needs_resolve
    assert [b.pick(0) for _ in range(4)] == ["tcp://a:1", "tcp://b:1", "tcp://a:1", "tcp://b:1"]
    b.mark_stale()
    assert b.needs_resolve


def test_balancer_avoids_failed_endpoints_until_their_backoff_ends() -> None:
    b = Balancer(failure_backoff_ns=100)
    b.update(["tcp://a:1", "tcp://b:1"])
    b.report_failure("tcp://a:1", now_ns=1000)
    assert b.needs_resolve  # a failure makes the cache item Old
    assert {b.pick(1050) for _ in range(5)} == {"tcp://b:1"}
    assert "tcp://a:1" in {b.pick(1100) for _ in range(2)}


def test_balancer_with_every_endpoint_failed_picks_the_soonest_to_recover() -> None:
    b = Balancer(failure_backoff_ns=100)
    b.update(["tcp://a:1", "tcp://b:1"])
    b.report_failure("tcp://b:1", now_ns=0)
    b.report_failure("tcp://a:1", now_ns=50)
    assert b.pick(60) == "tcp://b:1"


@given(attempt=st.integers(0, 100), seed=st.integers(0, 2**32))
def test_backoff_is_bounded_and_jittered(attempt: int, seed: int) -> None:
    bo = Backoff(0.05, 2.0)
    d = bo.delay_s(attempt, random.Random(seed))
    ceiling = min(2.0, 0.05 * 2**attempt)
    assert ceiling / 2 <= d <= ceiling
