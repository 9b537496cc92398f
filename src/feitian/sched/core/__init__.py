"""Fuxi's pure core: the resource manager's allocator (FUXI-2, FUXI-3, FUXI-4).

No asyncio, sockets, clocks, randomness or file I/O: time is an argument (``now_ns``). The FuxiMaster service
owns one :class:`Allocator`, feeds it inputs and carries out the effects it returns:

* configuration: :meth:`~Allocator.define_resource` (virtual resources, per machine or cluster pools),
  :meth:`~Allocator.set_pool`, :meth:`~Allocator.set_quota` (quota groups);
* machines (Tubo reports): :meth:`~Allocator.add_machine`, :meth:`~Allocator.machine_heartbeat`,
  :meth:`~Allocator.set_machine_health`, :meth:`~Allocator.remove_machine`;
* applications (hard state): :meth:`~Allocator.submit_app`, :meth:`~Allocator.finish_app`;
* the incremental protocol (application masters): :meth:`~Allocator.handle` of :class:`DemandDelta`,
  :class:`ReturnGrants`, :class:`DemandSnapshot`;
* failover: :meth:`~Allocator.adopt_grant` (a new master learns existing grants without killing anything);
* time: :meth:`~Allocator.tick` grants, relaxes locality, preempts, revokes; :meth:`~Allocator.next_deadline_ns`.

Effects: :class:`SendGrant`, :class:`Preempt`, :class:`Revoke`, :class:`AskResync`. :func:`check` lists broken
invariants (tests run it after every step). docs/sched.md describes the model and the policies.
"""

from feitian.sched.core.allocator import Allocator
from feitian.sched.core.invariants import check
from feitian.sched.core.limits import DEFAULT_LIMITS, DEFAULT_POLICY, SchedLimits, SchedPolicy
from feitian.sched.core.quota import DEFAULT_GROUP
from feitian.sched.core.records import (
    AppSpec,
    AskResync,
    DemandDelta,
    DemandSnapshot,
    Effect,
    Grant,
    Locality,
    MachineSpec,
    Preempt,
    PreemptReason,
    ReturnGrants,
    Revoke,
    RevokeReason,
    SendGrant,
    UnitDemand,
    UnitSpec,
)
from feitian.sched.core.resources import BUILTIN_RESOURCES, ResourceScope, Shape

__all__ = [
    "BUILTIN_RESOURCES",
    "DEFAULT_GROUP",
    "DEFAULT_LIMITS",
    "DEFAULT_POLICY",
    "Allocator",
    "AppSpec",
    "AskResync",
    "DemandDelta",
    "DemandSnapshot",
    "Effect",
    "Grant",
    "Locality",
    "MachineSpec",
    "Preempt",
    "PreemptReason",
    "ResourceScope",
    "ReturnGrants",
    "Revoke",
    "RevokeReason",
    "SchedLimits",
    "SchedPolicy",
    "SendGrant",
    "Shape",
    "UnitDemand",
    "UnitSpec",
    "check",
]
