"""What is said to a FuxiMaster (``fuxi.*``) and to a Tubo (``tubo.*``), and each method's Zhongkui rule.

Three kinds of callers (docs/sched.md, "Services"):

* **Users** (the CLI, :class:`~feitian.sched.client.SchedClient`) submit, list and kill applications and read the
  machines and quota groups: ``read``/``create``/``delete`` on ``fuxi:/apps``, ``read`` on ``fuxi:/nodes``,
  ``admin`` on ``fuxi:/quota`` to change quotas.
* **Tubos** heartbeat to the master and forward what the processes they started ask: ``write`` on
  ``fuxi:/tubo`` (minted at deploy time for the ``tubo`` role). A Tubo calls other Tubos with the same right.
* **Application masters and workers** talk only to the Tubo of their own machine, over its Unix socket. The Tubo
  knows who is calling from the kernel (the caller's pid and the cgroup the Tubo put it in), fills in the
  application, and forwards — so a process can use, return and start processes only on its own application's
  grants, without holding any cluster credential (docs/sched.md, "Security").

Every reply of the master carries its ``epoch`` (the fencing token of its leadership): a Tubo obeys no order of
an epoch older than the newest it has seen, so a deposed master cannot start or kill anything.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec

from feitian.rpc import Request
from feitian.sched.core import AskResync, DemandDelta, DemandSnapshot, Grant, Preempt, ReturnGrants, Revoke, SendGrant
from feitian.sched.pkg import PackageRef
from feitian.security.core import MethodRule, Right, requires

__all__ = [
    "AM_UNIT",
    "RULES",
    "TUBO_RULES",
    "WAITING",
    "AmDemand",
    "AmDemandReply",
    "AmEvents",
    "AmEventsReply",
    "AmRegister",
    "AmRegistered",
    "AppCredentials",
    "AppEnded",
    "AppIdentity",
    "AppIdentityReply",
    "AppInfo",
    "AppState",
    "CheckGrant",
    "GetApp",
    "GetAppIdentity",
    "KillApp",
    "KillProcess",
    "ListApps",
    "ListNodes",
    "ListQuota",
    "ListWorkers",
    "LocalWhoAmI",
    "LogChunk",
    "MasterStatus",
    "MasterStatusReply",
    "NodeInfo",
    "Order",
    "ProcInfo",
    "ProcKind",
    "ProcReport",
    "QuotaInfo",
    "ReadLog",
    "SetQuota",
    "StartProcess",
    "StartWorker",
    "StopWorker",
    "SubmitApp",
    "TuboHeartbeat",
    "TuboHeartbeatReply",
    "WhoAmIReply",
    "WorkerEnded",
    "WorkerInfo",
]

AM_UNIT = "master"  # the unit of an application's own master process, demanded by FuxiMaster on its behalf
# A process's state while its Tubo prepares it (its package downloading and unpacking): ordered, not yet running.
# The other states are feitian.sched.tubo's ProcState values (running, finished, failed, killed, ...).
WAITING = "waiting"


class AppState(enum.Enum):
    PENDING = "pending"  # submitted; its master waits for a grant or for its process to start
    RUNNING = "running"  # its master process runs
    SUCCEEDED = "succeeded"  # its master exited 0
    FAILED = "failed"  # its master failed more than max_attempts times
    KILLED = "killed"  # a user killed it

    @property
    def ended(self) -> bool:
        return self in (AppState.SUCCEEDED, AppState.FAILED, AppState.KILLED)


class ProcKind(enum.Enum):
    MASTER = "master"  # an application master (started on FuxiMaster's order)
    WORKER = "worker"  # a worker (started on an application master's request, on its grant)


class ProcInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A process of an application as FuxiMaster last heard of it from its Tubo."""

    proc_id: str
    kind: ProcKind
    machine: str
    address: str  # the machine's Tubo (where its log is read)
    state: str  # waiting, running, or how it ended
    exit_code: int | None = None
    detail: str = ""


class AppInfo(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    name: str
    state: AppState
    priority: int
    group: str
    command: list[str]
    package: str = ""
    attempts: int = 0  # master processes started so far
    max_attempts: int = 3
    master_machine: str = ""
    grants: int = 0  # grants held now (the master's own included)
    outstanding: int = 0  # units asked for and not yet granted
    submitted_at: float = 0.0  # wall clock, seconds
    ended_at: float = 0.0
    exit_code: int | None = None
    detail: str = ""
    # Its processes FuxiMaster knows of (waiting, running, and ended ones it still remembers): only in the reply
    # of GetApp, empty in ListApps.
    procs: list[ProcInfo] = msgspec.field(default_factory=list)


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    rack: str
    address: str
    capacity: dict[str, int]
    free: dict[str, int]
    healthy: bool
    health_reason: str = ""
    isolation: str = ""
    processes: int = 0
    last_heartbeat_age_s: float = 0.0


class QuotaInfo(msgspec.Struct, frozen=True, kw_only=True):
    group: str
    quota: dict[str, int]
    usage: dict[str, int]
    borrowable: dict[str, int]


# -- users -> master -------------------------------------------------------------------------------------------


MAX_CREDENTIAL_CHAINS = 64  # capability chains one application may be given
MAX_CHAIN_BYTES = 16_384  # one encoded chain (a chain has at most 8 links of a few hundred bytes)


class AppCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """What a submitter gives its application so that its processes can reach the cluster's services (ZK-3):
    a key made for the application by the submitter (``seed``: the Ed25519 private key's 32 raw bytes) and
    capability chains the submitter delegated to that key — never more than the submitter holds. FuxiMaster
    registers the key with the authority (which issues its certificate), keeps both with the application's hard
    state and gives them to the Tubos that start the application's processes (docs/sched.md, "Security")."""

    seed: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    chains: Annotated[
        list[Annotated[bytes, msgspec.Meta(max_length=MAX_CHAIN_BYTES)]], msgspec.Meta(max_length=MAX_CREDENTIAL_CHAINS)
    ]


class AppIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """An application's identity as its processes get it: files in their working directory (Tubo writes them)."""

    principal: str  # the principal's name at the authority: app.<number of the application id>
    seed: bytes
    certificate_pem: bytes
    ca_pem: bytes
    chains: list[bytes]
    expires_ns: int  # when the last of its capabilities expires (wall clock)


class SubmitApp(Request[AppInfo], frozen=True, tag="fuxi.Submit", kw_only=True):
    """Submit an application: FuxiMaster starts its master process (``command``, run in ``package`` if given) on
    a grant of ``master_shape``. ``submit_id`` (chosen by the client) makes a retried submit return the first
    application instead of starting a second one."""

    name: str
    command: list[str]
    package: str = ""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    master_shape: dict[str, int] = msgspec.field(default_factory=dict)
    priority: int = 100
    group: str = "default"
    max_attempts: int = 3
    submit_id: str = ""
    credentials: AppCredentials | None = None  # the application's own identity (secured clusters)


class GetApp(Request[AppInfo], frozen=True, tag="fuxi.GetApp"):
    app_id: str
    idempotent = True


class ListApps(Request[list[AppInfo]], frozen=True, tag="fuxi.ListApps"):
    include_ended: bool = True
    idempotent = True


class KillApp(Request[AppInfo], frozen=True, tag="fuxi.Kill"):
    app_id: str
    idempotent = True


class ListNodes(Request[list[NodeInfo]], frozen=True, tag="fuxi.ListNodes"):
    idempotent = True


class ListQuota(Request[list[QuotaInfo]], frozen=True, tag="fuxi.ListQuota"):
    idempotent = True


class SetQuota(Request[list[QuotaInfo]], frozen=True, tag="fuxi.SetQuota"):
    """Create or change a quota group (an empty ``quota`` leaves a group without limits)."""

    group: str
    quota: dict[str, int]
    idempotent = True


class MasterStatusReply(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    leader: bool
    leader_address: str
    epoch: int
    recovering: bool
    machines: int
    apps: int
    grants: int
    problems: list[str] | None = None  # broken allocator invariants, when asked (check=True); [] = none


class MasterStatus(Request[MasterStatusReply], frozen=True, tag="fuxi.Status"):
    """The leader's status; ``local=True``: this FuxiMaster's own, leader or not (a follower otherwise refuses
    with NotLeaderError naming the leader)."""

    local: bool = False
    check: bool = False  # also check the allocator's invariants (costs a pass over every grant and machine)
    idempotent = True


# -- Tubo <-> master -------------------------------------------------------------------------------------------


class ProcReport(msgspec.Struct, frozen=True, kw_only=True):
    """A process a Tubo runs or ran, as it reports it."""

    proc_id: str
    app_id: str
    kind: ProcKind
    grant_id: int
    unit: str
    shape: dict[str, int]
    state: str  # feitian.sched.tubo ProcState value
    attempt: int = 0
    exit_code: int | None = None
    detail: str = ""


class StartProcess(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Order: start an application master on this machine, on its grant (in its package, resolved at submit)."""

    proc_id: str
    app_id: str
    grant: Grant
    command: list[str]
    package: PackageRef | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    attempt: int = 1


class KillProcess(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Order: stop a process (SIGTERM, then SIGKILL after ``grace_s``)."""

    proc_id: str
    grace_s: float
    detail: str


Order = StartProcess | KillProcess


class TuboHeartbeatReply(msgspec.Struct, frozen=True, kw_only=True):
    epoch: int
    send_full: bool = False  # the master wants every process in the next heartbeat
    orders: list[Order] = msgspec.field(default_factory=list)
    interval_s: float = 1.0


class TuboHeartbeat(Request[TuboHeartbeatReply], frozen=True, tag="fuxi.TuboHeartbeat", kw_only=True):
    """A Tubo's heartbeat. ``full``: ``procs`` is every process it knows (the first heartbeat after it starts,
    and whenever the master asks); otherwise only those that changed since its last answered heartbeat."""

    name: str
    rack: str
    address: str
    capacity: dict[str, int]
    healthy: bool = True
    health_reason: str = ""
    isolation: str = ""
    full: bool = False
    procs: list[ProcReport] = msgspec.field(default_factory=list)


class CheckGrant(Request[Grant], frozen=True, tag="fuxi.CheckGrant"):
    """Asked by a Tubo before it starts a worker: is ``grant_id`` live, of ``app_id``, on ``machine``?
    NotFoundError otherwise."""

    grant_id: int
    app_id: str
    machine: str


# -- application masters -> (their Tubo ->) master ------------------------------------------------------------


class AmRegistered(msgspec.Struct, frozen=True, kw_only=True):
    epoch: int
    app: AppInfo
    expected_seq: int  # the seq the master's allocator expects next (after a snapshot: the snapshot's + 1)
    # The grants the application holds now (its own master's excluded): a restarted master takes them back.
    grants: list[Grant] = msgspec.field(default_factory=list)
    # The newest event now: a (re-)registered master polls after it; what came before is in ``grants``.
    next_event: int = 0


class AmRegister(Request[AmRegistered], frozen=True, tag="fuxi.AmRegister", kw_only=True):
    """An application master (re-)registers, with the grants it holds: after a FuxiMaster failover these rebuild
    the new master's soft state. It then sends a DemandSnapshot to set its demand."""

    app_id: str = ""  # filled in by the Tubo from the caller's cgroup
    attempt: int = 0
    held: list[Grant] = msgspec.field(default_factory=list)


class AmDemandReply(msgspec.Struct, frozen=True):
    resync: list[AskResync] = msgspec.field(default_factory=list)


class AmDemand(Request[AmDemandReply], frozen=True, tag="fuxi.AmDemand", kw_only=True):
    app_id: str = ""
    messages: list[DemandDelta | ReturnGrants | DemandSnapshot]


class AppEnded(msgspec.Struct, frozen=True, tag=True):
    """The application was killed (or ended): its master should exit."""

    app_id: str
    state: AppState


class WorkerEnded(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """A worker of the application ended (its Tubo reported it): ``state`` is finished, failed, killed,
    oom_killed or lost; its grant stays the application's until returned."""

    app_id: str
    proc_id: str
    machine: str
    grant_id: int
    state: str
    exit_code: int | None = None
    detail: str = ""


AmEvent = SendGrant | Preempt | Revoke | AskResync | AppEnded | WorkerEnded


class AmEventsReply(msgspec.Struct, frozen=True, kw_only=True):
    epoch: int
    events: list[AmEvent]
    next: int  # ask for events after this one next time
    machines: dict[str, str] = msgspec.field(
        default_factory=dict
    )  # machine name -> its Tubo's address, for every machine named in events


class AmEvents(Request[AmEventsReply], frozen=True, tag="fuxi.AmEvents", kw_only=True):
    """A long poll: the events after ``after`` (grants, notices, revocations, resync requests), waiting up to
    ``wait_s`` for one. A reply of another ``epoch`` than the caller's restarts numbering at 0."""

    app_id: str = ""
    after: int = 0
    epoch: int = 0
    wait_s: float = 10.0


class AppIdentityReply(msgspec.Struct, frozen=True):
    identity: AppIdentity | None  # None: the application was submitted without credentials


class GetAppIdentity(Request[AppIdentityReply], frozen=True, tag="fuxi.AppIdentity"):
    """Asked by a Tubo before it starts a process of ``app_id``: the identity files to give the process."""

    idempotent = True

    app_id: str


# -- application masters -> Tubos (workers) -------------------------------------------------------------------


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    proc_id: str
    app_id: str
    machine: str
    grant_id: int
    state: str
    exit_code: int | None = None
    detail: str = ""


class StartWorker(Request[WorkerInfo], frozen=True, tag="tubo.StartWorker", kw_only=True):
    """Start a worker on ``grant`` (on the grant's machine). Sent by an application master to its own Tubo, which
    forwards it to the grant's machine; that Tubo checks the grant with FuxiMaster before it starts anything."""

    app_id: str = ""
    grant: Grant
    name: str  # the worker's name within its application: [A-Za-z0-9._-]{1,64}
    address: str = ""  # the grant machine's Tubo (AmEventsReply.machines), for the local Tubo to forward to
    command: list[str]
    package: str = ""
    env: dict[str, str] = msgspec.field(default_factory=dict)


class StopWorker(Request[WorkerInfo], frozen=True, tag="tubo.StopWorker", kw_only=True):
    app_id: str = ""
    machine: str
    name: str
    grace_s: float = 10.0
    address: str = ""  # the machine's Tubo, when it is not the caller's own


class ListWorkers(Request[list[WorkerInfo]], frozen=True, tag="tubo.ListWorkers", kw_only=True):
    app_id: str = ""
    machine: str = ""  # "" = this Tubo's own
    address: str = ""  # the machine's Tubo, when it is not the caller's own
    idempotent = True


class WhoAmIReply(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    proc_id: str
    kind: ProcKind
    machine: str
    attempt: int


class LocalWhoAmI(Request[WhoAmIReply], frozen=True, tag="tubo.WhoAmI"):
    """Asked by a process over its Tubo's Unix socket: which application and process am I?"""

    idempotent = True


class LogChunk(msgspec.Struct, frozen=True, kw_only=True):
    """Bytes ``[offset, offset + len(data))`` of a process's output stream; ``first``..``end`` is what its Tubo
    keeps of it now (bytes before ``first`` were dropped: only a tail is kept). ``running``: more may come."""

    proc_id: str
    machine: str
    stream: str
    data: bytes
    offset: int
    first: int
    end: int
    running: bool


class ReadLog(Request[LogChunk], frozen=True, tag="tubo.ReadLog", kw_only=True):
    """Read a process's stdout or stderr from the Tubo of its machine: ``length`` bytes (at most 1 MiB) from
    ``offset``, or the last ``length`` bytes when ``offset`` is None. Users need read on ``fuxi:/apps``; over the
    Unix socket a process may read its own application's logs on that machine (``app_id`` is then its own)."""

    app_id: str = ""
    proc_id: str
    stream: str = "stdout"
    offset: int | None = None
    length: int = 65_536
    idempotent = True


# -- rules -----------------------------------------------------------------------------------------------------

APPS = "fuxi:/apps"
NODES = "fuxi:/nodes"
QUOTA = "fuxi:/quota"
TUBO = "fuxi:/tubo"

RULES: dict[type[Any], MethodRule[Any]] = {
    SubmitApp: requires(Right.CREATE, APPS),
    GetApp: requires(Right.READ, APPS),
    ListApps: requires(Right.READ, APPS),
    KillApp: requires(Right.DELETE, APPS),
    ListNodes: requires(Right.READ, NODES),
    ListQuota: requires(Right.READ, QUOTA),
    SetQuota: requires(Right.ADMIN, QUOTA),
    MasterStatus: requires(Right.READ, NODES),
    TuboHeartbeat: requires(Right.WRITE, TUBO),
    CheckGrant: requires(Right.WRITE, TUBO),
    GetAppIdentity: requires(Right.WRITE, TUBO),
    AmRegister: requires(Right.WRITE, TUBO),
    AmDemand: requires(Right.WRITE, TUBO),
    AmEvents: requires(Right.WRITE, TUBO),
}

TUBO_RULES: dict[type[Any], MethodRule[Any]] = {
    StartWorker: requires(Right.WRITE, TUBO),
    StopWorker: requires(Right.WRITE, TUBO),
    ListWorkers: requires(Right.WRITE, TUBO),
    ReadLog: requires(Right.READ, APPS),  # an operation on the application, as GetApp
}
