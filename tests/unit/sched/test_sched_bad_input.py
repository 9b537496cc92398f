"""Bad input gets a clear error from the one error tree, and changes nothing."""

from __future__ import annotations

import pytest
from sched_fixtures import CORE, SLOT, Sim

from feitian.errors import (
    AlreadyExistsError,
    ConfigError,
    ConflictError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
)
from feitian.sched.core import (
    AppSpec,
    DemandDelta,
    Locality,
    MachineSpec,
    ResourceScope,
    SchedLimits,
    SchedPolicy,
    Shape,
    UnitSpec,
)


def sim_with_job() -> Sim:
    sim = Sim()
    sim.machine("m1")
    sim.app("job")
    return sim


def delta(unit: str, n: int, shape: Shape | None = SLOT, **loc: tuple[str, ...]) -> DemandDelta:
    return DemandDelta("job", 1, unit, n, UnitSpec(shape, Locality(**loc)) if shape is not None else None)


@pytest.mark.parametrize(
    ("msg", "error", "text"),
    [
        (delta("u", 1, Shape.of(cpu=CORE, gpux=1)), InvalidArgumentError, "unknown resource 'gpux'"),
        (delta("u", 1, Shape.of(cpu=-5)), InvalidArgumentError, "cpu = -5 must be >= 1"),
        (delta("u", 1, Shape.of(memory=1 << 60)), InvalidArgumentError, "above max_memory_bytes"),
        (delta("u", 1, Shape.of(cpu=True)), InvalidArgumentError, "must be an integer"),
        (delta("u", 1, Shape.of()), InvalidArgumentError, "asks for no machine resource"),
        (delta("u", 10**9), InvalidArgumentError, "max_delta"),
        (delta("u", 1, machines=tuple(f"m{i}" for i in range(65))), InvalidArgumentError, "max_locality_machines"),
        (delta("u", 1, racks=("bad\nrack",)), InvalidArgumentError, "control character"),
        (delta("never-declared", 1, None), NotFoundError, "never declared"),
        (delta("x" * 300, 1), InvalidArgumentError, "max_name_bytes"),
        (DemandDelta("nobody", 1, "u", 1), NotFoundError, "not submitted"),
    ],
)
def test_bad_demand_is_refused_and_changes_nothing(msg: DemandDelta, error: type[FeitianError], text: str) -> None:
    sim = sim_with_job()
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        sim.alloc.handle(msg, sim.now)
    sim.checked()
    assert sim.alloc.apps["job"].units == {} and sim.alloc.apps["job"].expected_seq == 1


def test_outstanding_above_its_bound() -> None:
    sim = Sim(limits=SchedLimits(max_outstanding=10))
    sim.app("job")
    sim.want("job", 10)
    with pytest.raises(InvalidArgumentError, match="max_outstanding"):
        sim.alloc.handle(DemandDelta("job", 2, "w", 1), sim.now)
    assert sim.alloc.outstanding("job", "w") == 10


@pytest.mark.parametrize("priority", [-1, 1001, 2.5, True])
def test_priority_out_of_range(priority: object) -> None:
    sim = Sim()
    with pytest.raises(InvalidArgumentError, match="outside"):
        sim.alloc.submit_app(AppSpec("job", priority))  # type: ignore[arg-type]
    assert sim.alloc.apps == {}


def test_unknown_quota_group() -> None:
    sim = Sim()
    with pytest.raises(NotFoundError, match="quota group 'tmall' does not exist") as info:
        sim.alloc.submit_app(AppSpec("job", 5, "tmall"))
    assert info.value.hint is not None and "default" in info.value.hint


def test_bad_quota_and_resources() -> None:
    sim = Sim()
    with pytest.raises(InvalidArgumentError, match="not a machine resource"):
        sim.alloc.set_quota("g", {"cpux": 1})
    with pytest.raises(InvalidArgumentError, match="must be >= 0"):
        sim.alloc.set_quota("g", {"cpu": -1})
    sim.alloc.define_resource("lic", ResourceScope.CLUSTER, pool_amount=2)
    with pytest.raises(AlreadyExistsError):
        sim.alloc.define_resource("lic", ResourceScope.MACHINE)
    with pytest.raises(InvalidArgumentError, match="cluster pool, not a machine resource"):
        sim.alloc.add_machine(MachineSpec("m1", "r0", {"cpu": CORE, "lic": 1}), 0)
    with pytest.raises(InvalidArgumentError, match="'lic' is not a machine resource") as info:
        sim.alloc.set_quota("g", {"lic": 1})
    assert info.value.hint is not None and "quotas limit: cpu, memory" in info.value.hint
    assert sim.alloc.machines == {}
    with pytest.raises(InvalidArgumentError, match="above max_cpu_millicores"):
        sim.alloc.add_machine(MachineSpec("m1", "r0", {"cpu": 10**12}), 0)


def test_machines_registered_twice_or_unknown() -> None:
    sim = Sim()
    sim.machine("m1")
    with pytest.raises(AlreadyExistsError):
        sim.machine("m1")
    with pytest.raises(NotFoundError, match="machine 'zz' is not registered"):
        sim.alloc.machine_heartbeat("zz", 0)
    with pytest.raises(NotFoundError):
        sim.alloc.adopt_grant("nobody", "u", "m1", SLOT, 1, 0)
    sim.app("job")
    with pytest.raises(InvalidArgumentError, match="grant id"):
        sim.alloc.adopt_grant("job", "u", "m1", SLOT, 0, 0)
    sim.alloc.adopt_grant("job", "u", "m1", SLOT, 7, 0)
    with pytest.raises(AlreadyExistsError):
        sim.alloc.adopt_grant("job", "u", "m1", SLOT, 7, 0)
    with pytest.raises(ConflictError):
        sim.alloc.adopt_grant("job", "u", "m1", Shape.of(cpu=100 * CORE), 8, 0)
    sim.checked()


def test_bad_limits_and_policy_list_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        SchedLimits(max_machines=0, min_priority=5, max_priority=1).validate()
    assert len(info.value.problems) == 2
    with pytest.raises(ConfigError, match="relax_any_after_ns"):
        SchedPolicy(relax_rack_after_ns=5, relax_any_after_ns=1).validate()
