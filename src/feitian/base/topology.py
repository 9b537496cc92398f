"""Where machines are: each machine on one rack. Placement (Pangu spreads a chunk's replicas over racks and reads
from the nearest replica) and scheduling (Fuxi grants on a preferred machine, then its rack, then anywhere) use
the same three distances. Pure: no I/O, a map kept by whoever learns where machines are (registrations,
heartbeats)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import IntEnum

__all__ = ["Distance", "Topology", "distance", "distinct_racks"]


class Distance(IntEnum):
    """How far a machine is from a reference point; smaller is nearer, so distances sort nearest first."""

    SAME_MACHINE = 0
    SAME_RACK = 1
    OTHER_RACK = 2  # another rack, or a machine whose rack is not known


def distance(
    machine: str, rack_of: Mapping[str, str], *, local_machine: str | None = None, local_rack: str | None = None
) -> Distance:
    """How far ``machine`` is from ``local_machine`` (on ``local_rack``); a machine with no known rack is never on
    the local rack."""
    if local_machine is not None and machine == local_machine:
        return Distance.SAME_MACHINE
    if local_rack is not None and rack_of.get(machine) == local_rack:
        return Distance.SAME_RACK
    return Distance.OTHER_RACK


def distinct_racks(machines: Iterable[str], rack_of: Mapping[str, str]) -> int:
    """How many racks ``machines`` are on; a machine with no known rack counts as a rack of its own (the
    cautious reading: it might share nothing with the others)."""
    return len({rack_of.get(m, f"?{m}") for m in machines})


class Topology(Mapping[str, str]):
    """The rack of every known machine (a ``Mapping`` machine -> rack), with the machines of each rack.
    ``place`` and ``remove`` keep both views in step; every lookup is O(1)."""

    def __init__(self, racks: Mapping[str, str] | None = None) -> None:
        self._rack: dict[str, str] = {}
        self._machines: dict[str, set[str]] = {}
        for machine, rack in (racks or {}).items():
            self.place(machine, rack)

    def place(self, machine: str, rack: str) -> None:
        """Record that ``machine`` is on ``rack`` (moving it if it was on another)."""
        self.remove(machine)
        self._rack[machine] = rack
        self._machines.setdefault(rack, set()).add(machine)

    def remove(self, machine: str) -> None:
        rack = self._rack.pop(machine, None)
        if rack is not None:
            members = self._machines[rack]
            members.discard(machine)
            if not members:
                del self._machines[rack]

    def rack_of(self, machine: str) -> str | None:
        return self._rack.get(machine)

    def machines_on(self, rack: str) -> frozenset[str]:
        return frozenset(self._machines.get(rack, ()))

    def racks(self) -> list[str]:
        return sorted(self._machines)

    def distance(self, machine: str, local_machine: str) -> Distance:
        """How far ``machine`` is from ``local_machine``."""
        return distance(machine, self._rack, local_machine=local_machine, local_rack=self._rack.get(local_machine))

    def __getitem__(self, machine: str) -> str:
        return self._rack[machine]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rack)

    def __len__(self) -> int:
        return len(self._rack)
