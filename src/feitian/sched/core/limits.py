"""Named bounds and policy knobs of the scheduling core (every bound is named: ARCHITECTURE.md, Invariants).

:class:`SchedLimits` bounds what callers may ask (a request over a bound is an InvalidArgumentError naming the
bound) and how much work one call may do. :class:`SchedPolicy` holds the timings of delay scheduling, preemption
and machine liveness and the fair-share switch.
"""

from __future__ import annotations

import msgspec

from feitian.errors import ConfigError

__all__ = ["DEFAULT_LIMITS", "DEFAULT_POLICY", "SchedLimits", "SchedPolicy"]

_SECOND_NS = 1_000_000_000


class SchedLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # -- amounts (per machine capacity and per shape)
    max_cpu_millicores: int = 1_000_000  # 1,000 cores
    max_memory_bytes: int = 1 << 44  # 16 TiB
    max_disk_bytes: int = 1 << 50  # 1 PiB
    max_net_mbps: int = 1_000_000  # 1 Tbit/s
    max_virtual_amount: int = 1 << 40  # one virtual resource (per machine or a cluster pool)
    # -- priorities: smaller number = higher priority
    min_priority: int = 0
    max_priority: int = 1_000
    # -- names and counts
    max_name_bytes: int = 256  # machine, rack, application, unit, group and resource names (UTF-8)
    max_machines: int = 200_000
    max_apps: int = 100_000
    max_units_per_app: int = 1_024
    max_virtual_resources: int = 64
    max_quota_groups: int = 64
    max_locality_machines: int = 64  # preferred machines of one unit
    max_locality_racks: int = 64  # preferred racks of one unit
    max_delta: int = 10_000_000  # |delta| of one DemandDelta
    max_outstanding: int = 100_000_000  # outstanding demand of one unit
    max_snapshot_units: int = 1_024  # units in one DemandSnapshot
    max_snapshot_held: int = 1_000_000  # grant ids in one DemandSnapshot
    # -- work per call
    max_skip_per_pass: int = 8  # heads that do not fit skipped by one machine's pass before it gives up
    max_probe_rounds: int = 2  # rounds of probing again, in one tick, units whose probed machines went to others
    max_preempt_scan: int = 1_024  # urgent units and running grants looked at by one tick's preemption plans
    max_preemptions_per_tick: int = 64  # preemption plans made by one tick()

    def problems(self) -> list[str]:
        out = [
            f"{name} must be >= 1"
            for name in self.__struct_fields__
            if name != "min_priority" and getattr(self, name) < 1
        ]
        if self.min_priority < 0 or self.min_priority > self.max_priority:
            out.append("0 <= min_priority <= max_priority is required")
        return out

    def validate(self) -> SchedLimits:
        problems = self.problems()
        if problems:
            raise ConfigError("invalid scheduling limits", problems=problems)
        return self


class SchedPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Fair rounds within one priority (FUXI-4): each grant sends its application to the back of its priority's
    # rotation. False: first submitted first, until its demand is met.
    fair_share: bool = True
    # Delay scheduling: a waiting unit with preferred machines may use other machines of their racks after
    # this long, any machine after relax_any_after_ns (both counted from the moment it started waiting).
    relax_rack_after_ns: int = 3 * _SECOND_NS
    relax_any_after_ns: int = 6 * _SECOND_NS
    # Preemption: a unit that waited this long without fitting anywhere may preempt lower-priority work (and
    # reclaim its group's lent quota); victims get this much notice before their grant is revoked.
    preempt_after_ns: int = 10 * _SECOND_NS
    preempt_notice_ns: int = 30 * _SECOND_NS
    # A unit whose preemption plan found nothing is not planned again before this much time.
    preempt_retry_ns: int = 1 * _SECOND_NS
    # Quota reclaim may preempt borrowed grants of any priority (the loan was conditional); False applies the
    # priority rule (never equal or higher) to reclaim too.
    reclaim_ignores_priority: bool = True
    # A machine not heard from (machine_heartbeat) for this long is lost: its grants are revoked.
    heartbeat_timeout_ns: int = 10 * _SECOND_NS

    def problems(self) -> list[str]:
        out = []
        for name in ("relax_rack_after_ns", "relax_any_after_ns", "preempt_after_ns", "preempt_retry_ns"):
            if getattr(self, name) < 0:
                out.append(f"{name} must be >= 0")
        if self.relax_any_after_ns < self.relax_rack_after_ns:
            out.append("relax_any_after_ns must be >= relax_rack_after_ns")
        if self.preempt_notice_ns < 0:
            out.append("preempt_notice_ns must be >= 0")
        if self.heartbeat_timeout_ns < 1:
            out.append("heartbeat_timeout_ns must be >= 1")
        return out

    def validate(self) -> SchedPolicy:
        problems = self.problems()
        if problems:
            raise ConfigError("invalid scheduling policy", problems=problems)
        return self


DEFAULT_LIMITS = SchedLimits()
DEFAULT_POLICY = SchedPolicy()
