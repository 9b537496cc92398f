"""The idle index: machines with free resources that their last pass could not give to anyone.

New demand (a unit starting to wait, more of it, a relaxed locality, a unit back from parking) probes this index
instead of scanning machines. Machines are filed by *class*: the bit lengths of their free cpu, memory, disk and
net (less reservations), and by rack. A class whose bit length is below the unit's in some resource holds no
machine that fits, so it is skipped whole; in the other classes machines are checked one by one. A probe returns
at most as many machines as the unit wants (each can take at least one unit); the allocator marks them dirty and
their passes decide in policy order. A machine whose last pass stopped at the skip bound is not filed until
something is released there: a new pass would most likely stop at the same place.
"""

from __future__ import annotations

from feitian.sched.core.state import LEVEL_RACK, MachineState, UnitState, fits

__all__ = ["IdleIndex"]

Key = tuple[int, int, int, int]


class IdleIndex:
    def __init__(self) -> None:
        self.by_class: dict[Key, dict[str, MachineState]] = {}
        self.key_of: dict[str, Key] = {}
        self.by_rack: dict[str, dict[str, MachineState]] = {}

    def remove(self, machine: MachineState) -> None:
        key = self.key_of.pop(machine.name, None)
        if key is not None:
            bucket = self.by_class[key]
            del bucket[machine.name]
            if not bucket:
                del self.by_class[key]
            rack = self.by_rack[machine.rack]
            del rack[machine.name]
            if not rack:
                del self.by_rack[machine.rack]

    def file(self, machine: MachineState, live: bool) -> None:
        """File a machine after its pass: in the index if it is live, has room left and its pass was not cut by
        the skip bound; out of it otherwise (nothing moves when its class did not change)."""
        key: Key | None = None
        if live and machine.cap_key is None:
            free, reserved = machine.free, machine.reserved
            if reserved is not None:
                free = [max(0, f - r) for f, r in zip(free, reserved, strict=True)]
            for amount in free:
                if amount > 0:
                    key = (free[0].bit_length(), free[1].bit_length(), free[2].bit_length(), free[3].bit_length())
                    break
        old = self.key_of.get(machine.name)
        if old == key:
            return
        if old is not None:
            self.remove(machine)
        if key is not None:
            self.by_class.setdefault(key, {})[machine.name] = machine
            self.key_of[machine.name] = key
            self.by_rack.setdefault(machine.rack, {})[machine.name] = machine

    def candidates(self, unit: UnitState, machines: dict[str, MachineState]) -> list[MachineState]:
        """Idle machines the unit may use at its locality level and fits now, at most ``outstanding`` of them."""
        if not self.key_of:
            return []
        wanted = unit.outstanding
        need = unit.compiled.need
        found: list[MachineState] = []
        if unit.level <= LEVEL_RACK:
            for name in unit.machines:  # its own machines first, at every level
                if name in self.key_of and fits(machines[name], need):
                    found.append(machines[name])
                    if len(found) >= wanted:
                        return found
            if unit.level == LEVEL_RACK:
                names = set(unit.machines)
                for rack in unit.racks:
                    for machine in self.by_rack.get(rack, {}).values():
                        if machine.name not in names and fits(machine, need):
                            found.append(machine)
                            if len(found) >= wanted:
                                return found
        else:
            bits = [0, 0, 0, 0]
            for index, amount in need:
                if index < 4:
                    bits[index] = amount.bit_length()
            for key, bucket in self.by_class.items():
                if key[0] < bits[0] or key[1] < bits[1] or key[2] < bits[2] or key[3] < bits[3]:
                    continue  # every machine here has less than the unit needs in some resource
                for machine in bucket.values():
                    if fits(machine, need):
                        found.append(machine)
                        if len(found) >= wanted:
                            return found
        return found
