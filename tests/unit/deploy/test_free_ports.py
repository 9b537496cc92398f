"""free_ports never hands out a port twice in one process: the nodes of a cluster are picked by several calls
before any of them binds (a repeat made `cluster up` fail with "address already in use" a few times in a
hundred)."""

from __future__ import annotations

from feitian.deploy import free_ports


def test_ports_are_never_handed_out_twice() -> None:
    seen: set[int] = set()
    for _ in range(100):
        ports = free_ports(20)
        assert len(set(ports)) == 20
        assert not set(ports) & seen
        seen.update(ports)
