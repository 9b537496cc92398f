"""feitian.base.topology (racks and the machine/rack/elsewhere distance placement and scheduling share) and
feitian.base.units."""

from __future__ import annotations

from feitian.base import SECOND_NS, Distance, GiB, KiB, MiB, Topology, distance, distinct_racks, ns_of_s, s_of_ns
from feitian.dfs.core import read_order


def test_units() -> None:
    assert (KiB, MiB, GiB) == (1024, 1024**2, 1024**3)
    assert ns_of_s(1.5) == 3 * SECOND_NS // 2 and s_of_ns(SECOND_NS // 4) == 0.25


def test_distance_orders_machine_then_rack_then_elsewhere() -> None:
    racks = {"m1": "r1", "m2": "r1", "m3": "r2"}
    near = [distance(m, racks, local_machine="m1", local_rack="r1") for m in ("m3", "m2", "m1", "unknown")]
    assert near == [Distance.OTHER_RACK, Distance.SAME_RACK, Distance.SAME_MACHINE, Distance.OTHER_RACK]
    assert sorted(near)[0] is Distance.SAME_MACHINE
    # a reader on no known machine and rack: everything is elsewhere
    assert distance("m1", racks) is Distance.OTHER_RACK


def test_distinct_racks_counts_an_unknown_machine_as_its_own_rack() -> None:
    racks = {"m1": "r1", "m2": "r1", "m3": "r2"}
    assert distinct_racks(["m1", "m2"], racks) == 1
    assert distinct_racks(["m1", "m3"], racks) == 2
    assert distinct_racks(["m1", "x", "y"], racks) == 3


def test_topology_keeps_machines_and_racks_in_step() -> None:
    topo = Topology({"m1": "r1", "m2": "r1"})
    topo.place("m3", "r2")
    assert topo.racks() == ["r1", "r2"] and topo.machines_on("r1") == {"m1", "m2"}
    topo.place("m2", "r2")  # moved
    assert topo.machines_on("r1") == {"m1"} and topo.machines_on("r2") == {"m2", "m3"}
    assert topo.distance("m3", "m2") is Distance.SAME_RACK and topo.distance("m1", "m2") is Distance.OTHER_RACK
    topo.remove("m1")
    assert topo.racks() == ["r2"] and topo.rack_of("m1") is None and len(topo) == 2
    assert distinct_racks(["m2", "m3"], topo) == 1  # a Topology is a Mapping machine -> rack


def test_dfs_read_order_uses_the_shared_distance() -> None:
    racks = {"a": "r1", "b": "r2", "c": "r1"}
    assert read_order(["b", "c", "a"], rack_of=racks, local_server="a", local_rack="r1") == ("a", "c", "b")
    assert read_order(["b", "c", "a"], rack_of=racks, local_server="a", local_rack="r1", avoid={"a"}) == (
        "c",
        "b",
        "a",
    )
