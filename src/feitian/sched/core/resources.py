"""Resources and shapes (FUXI-2): cpu, memory, disk, net, and application-defined virtual resources.

Built-in resources and their units:

=========  ===============================
``cpu``    millicores (1000 = one core)
``memory`` bytes
``disk``   bytes
``net``    Mbit/s
=========  ===============================

A *virtual resource* is a named counter defined by the administrator or an application: either per machine (each
machine states how many it has, like GPUs or licences bound to a host) or a cluster-wide *pool* (one counter for
the whole cluster, like licences of a shared service). A :class:`Shape` is a vector over these names; a machine's
capacity is one too. :class:`ResourceSpace` knows the names, checks amounts against the named bounds of
:class:`~feitian.sched.core.limits.SchedLimits`, and compiles shapes to the sparse index vectors the allocator
works with (a shape touches few dimensions, so fit checks only look at those).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import msgspec

from feitian.errors import AlreadyExistsError, InvalidArgumentError
from feitian.sched.core.limits import SchedLimits

__all__ = ["BUILTIN_RESOURCES", "CompiledShape", "ResourceScope", "ResourceSpace", "Shape", "check_name"]

BUILTIN_RESOURCES = ("cpu", "memory", "disk", "net")


class ResourceScope(enum.Enum):
    MACHINE = "machine"  # each machine has its own amount (its capacity says how many)
    CLUSTER = "cluster"  # one pool for the whole cluster


class Shape(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A vector of resource amounts, e.g. ``Shape.of(cpu=2000, memory=4 << 30)``; names absent are zero.

    ``amounts`` is sorted by name and holds no zeros, so equal shapes compare and hash equal.
    """

    amounts: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, mapping: Mapping[str, int] | None = None, /, **named: int) -> Shape:
        merged = dict(mapping or {})
        merged.update(named)
        return cls(tuple(sorted((k, v) for k, v in merged.items() if v != 0)))

    def get(self, name: str) -> int:
        for key, value in self.amounts:
            if key == name:
                return value
        return 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.amounts)

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k}={v}" for k, v in self.amounts) + "}"


class CompiledShape(msgspec.Struct, frozen=True):
    """A validated shape as index vectors: ``need`` over per-machine dimensions, ``pools`` over cluster pools."""

    shape: Shape
    need: tuple[tuple[int, int], ...]
    pools: tuple[tuple[int, int], ...]


def check_name(kind: str, name: object, limits: SchedLimits) -> str:
    """A valid name or InvalidArgumentError: a non-empty string, at most max_name_bytes, no control characters."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name.encode()) > limits.max_name_bytes:
        raise InvalidArgumentError(
            f"{kind} name {name[:40]!r}...: longer than max_name_bytes {limits.max_name_bytes}", kind=kind
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgumentError(f"{kind} name {name!r} contains a control character", kind=kind)
    return name


class ResourceSpace:
    """The resource names of one cluster: built-ins plus virtual resources (per machine or cluster pools)."""

    def __init__(self, limits: SchedLimits) -> None:
        self.limits = limits
        self.machine_dims: list[str] = list(BUILTIN_RESOURCES)
        self.machine_index: dict[str, int] = {n: i for i, n in enumerate(self.machine_dims)}
        self.pool_names: list[str] = []
        self.pool_index: dict[str, int] = {}
        self.pool_capacity: list[int] = []
        self.pool_used: list[int] = []
        self._compiled: dict[Shape, CompiledShape] = {}
        self._bounds = {
            "cpu": ("max_cpu_millicores", limits.max_cpu_millicores),
            "memory": ("max_memory_bytes", limits.max_memory_bytes),
            "disk": ("max_disk_bytes", limits.max_disk_bytes),
            "net": ("max_net_mbps", limits.max_net_mbps),
        }

    # -- names --------------------------------------------------------------------------------------------------

    def known(self) -> list[str]:
        return [*self.machine_dims, *self.pool_names]

    def define(self, name: str, scope: ResourceScope, pool_amount: int = 0) -> None:
        """Define a virtual resource. A cluster pool starts with ``pool_amount``; a per-machine one is zero on
        every machine until the machine's capacity names it."""
        check_name("resource", name, self.limits)
        if name in self.machine_index or name in self.pool_index:
            raise AlreadyExistsError(f"define resource {name!r}: already defined", resource=name)
        if len(self.machine_dims) + len(self.pool_names) - len(BUILTIN_RESOURCES) >= self.limits.max_virtual_resources:
            raise InvalidArgumentError(
                f"define resource {name!r}: max_virtual_resources {self.limits.max_virtual_resources} reached"
            )
        if scope is ResourceScope.MACHINE:
            if pool_amount:
                raise InvalidArgumentError(f"define resource {name!r}: a per-machine resource has no pool amount")
            self.machine_index[name] = len(self.machine_dims)
            self.machine_dims.append(name)
        else:
            self._check_value("define resource", name, pool_amount, allow_zero=True)
            self.pool_index[name] = len(self.pool_names)
            self.pool_names.append(name)
            self.pool_capacity.append(pool_amount)
            self.pool_used.append(0)

    def set_pool(self, name: str, amount: int) -> None:
        """Change a cluster pool's size. Shrinking below what is in use is allowed: nothing new is granted from
        it until enough is returned (grants are never revoked for it)."""
        index = self.pool_index.get(name)
        if index is None:
            raise self._unknown("set pool", name)
        self._check_amount("set pool", name, amount, allow_zero=True)
        self.pool_capacity[index] = amount

    # -- compiling --------------------------------------------------------------------------------------------------

    def compile_shape(self, what: str, shape: Shape) -> CompiledShape:
        """The compiled shape; equal shapes compile to the same object (names only ever get new indexes)."""
        if not isinstance(shape, Shape):
            raise InvalidArgumentError(f"{what}: shape must be a Shape, got {type(shape).__name__}")
        cached = self._compiled.get(shape)
        if cached is not None:
            return cached
        need: list[tuple[int, int]] = []
        pools: list[tuple[int, int]] = []
        for name, amount in shape.amounts:
            self._check_amount(what, name, amount, allow_zero=False)
            index = self.machine_index.get(name)
            if index is not None:
                need.append((index, amount))
            else:
                pools.append((self.pool_index[name], amount))
        if not need:
            raise InvalidArgumentError(
                f"{what}: shape {shape} asks for no machine resource",
                hint="a shape needs at least one of: " + ", ".join(self.machine_dims),
            )
        compiled = self._compiled[shape] = CompiledShape(shape, tuple(need), tuple(pools))
        return compiled

    def compile_capacity(self, what: str, capacity: Mapping[str, int]) -> list[int]:
        dense = [0] * len(self.machine_dims)
        for name, amount in capacity.items():
            self._check_amount(what, name, amount, allow_zero=True)
            index = self.machine_index.get(name)
            if index is None:
                raise InvalidArgumentError(f"{what}: {name!r} is a cluster pool, not a machine resource", resource=name)
            dense[index] = amount
        return dense

    def shape_of(self, need: tuple[tuple[int, int], ...], pools: tuple[tuple[int, int], ...]) -> Shape:
        merged = {self.machine_dims[i]: a for i, a in need}
        merged.update({self.pool_names[i]: a for i, a in pools})
        return Shape.of(merged)

    def _check_amount(self, what: str, name: str, amount: object, *, allow_zero: bool, scale: int = 1) -> None:
        if name not in self.machine_index and name not in self.pool_index:
            raise self._unknown(what, name)
        self._check_value(what, name, amount, allow_zero=allow_zero, scale=scale)

    def _check_value(self, what: str, name: str, amount: object, *, allow_zero: bool, scale: int = 1) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidArgumentError(f"{what}: {name} must be an integer, got {amount!r}", resource=name)
        bound_name, bound = self._bounds.get(name, ("max_virtual_amount", self.limits.max_virtual_amount))
        if scale != 1:
            bound_name, bound = f"{bound_name} x max_machines", bound * scale
        low = 0 if allow_zero else 1
        if amount < low:
            raise InvalidArgumentError(f"{what}: {name} = {amount} must be >= {low}", resource=name)
        if amount > bound:
            raise InvalidArgumentError(
                f"{what}: {name} = {amount} is above {bound_name} {bound}", resource=name, bound=bound_name
            )

    def _unknown(self, what: str, name: str) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"{what}: unknown resource {name!r}",
            hint="known resources: " + ", ".join(self.known()) + " (define virtual ones first)",
            resource=name,
        )
