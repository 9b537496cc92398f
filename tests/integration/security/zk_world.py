"""In-process PKI and guarded servers for the Kuafu + Zhongkui tests (real sockets on 127.0.0.1)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from feitian.errors import FeitianError
from feitian.rpc import CallContext, Client, ClientConfig, Request, Server, ServerConfig
from feitian.security import (
    ClusterAuthority,
    Guard,
    KeyPair,
    PrincipalKind,
    ReplayCache,
    RevocationList,
    RevocationView,
    Right,
    TlsIdentity,
    issue_capability,
    requires,
)
from feitian.security.kuafu import CapabilitySet, ClientIdentity, ServerGuard
from feitian.testing.clock import ShiftedClock

SECOND_NS = 1_000_000_000


class Get(Request[str], frozen=True, tag="test.Get"):
    path: str


GET_RULE = requires(Right.READ, lambda req: f"coord:{req.path}")


@dataclass
class Pki:
    authority: KeyPair = field(default_factory=lambda: KeyPair.generate("authority"))
    cluster: str = "test"

    def __post_init__(self) -> None:
        self.ca = ClusterAuthority.create(self.authority, cluster_name=self.cluster, now_s=time.time())

    def identity(self, name: str, kind: PrincipalKind = PrincipalKind.USER) -> tuple[KeyPair, TlsIdentity]:
        key = KeyPair.generate(name)
        return key, TlsIdentity.issue(self.ca, key, kind, now_s=time.time())

    def chain(
        self,
        holder: KeyPair,
        resources: tuple[str, ...] = ("coord:/apps",),
        rights: tuple[str, ...] = ("read",),
        *,
        ttl_s: float = 3600,
        age_s: float = 0,
        max_depth: int = 0,
    ) -> bytes:
        return issue_capability(
            self.authority,
            holder_key=holder.public_key,
            holder_name=holder.name,
            resources=resources,
            rights=rights,
            now_ns=time.time_ns() - int(age_s * SECOND_NS),
            ttl_ns=int(ttl_s * SECOND_NS),
            max_depth=max_depth,
        ).to_bytes()

    def client(self, who: TlsIdentity, *chains: bytes) -> Client:
        """A client presenting exactly ``chains`` (expired or malformed ones too: the server says why)."""
        credentials = CapabilitySet(chains, drop_expired=False)
        return Client(ClientConfig(name="t", connect_timeout_s=1.0), tls=ClientIdentity(who), credentials=credentials)


@dataclass
class Guarded:
    """A guarded server and what a test looks at: its guard, view, clock and how often handlers ran."""

    server: Server
    guard: Guard
    view: RevocationView
    clock: ShiftedClock
    ran: list[str]

    def revoke(self, revocations: RevocationList) -> None:
        self.view.update(revocations, self.clock.monotonic_ns())


def guarded_server(pki: Pki, name: str = "svc", *, config: ServerConfig | None = None) -> Guarded:
    key, identity = pki.identity(name, PrincipalKind.SERVICE)
    clock = ShiftedClock()
    view = RevocationView(max_staleness_ns=30 * SECOND_NS)
    view.update(RevocationList(), clock.monotonic_ns())
    guard = Guard(
        authority_key=pki.authority.public_key,
        audiences={key.principal_id, name},
        revocations=view,
        replay_cache=ReplayCache(started_at_ns=clock.wall_ns() - SECOND_NS),
        clock=clock,
        logger=logging.getLogger("test.zk.guard"),
    )
    server = Server(config or ServerConfig(name=name), security=ServerGuard(guard, identity))
    ran: list[str] = []

    async def get(ctx: CallContext, req: Get) -> str:
        ran.append(req.path)
        return f"{ctx.peer.name} read {req.path}"

    server.add_handler(Get, get, requires=GET_RULE)
    return Guarded(server, guard, view, clock, ran)


def reason(exc: BaseException) -> str:
    assert isinstance(exc, FeitianError), repr(exc)
    return str(exc.fields.get("reason"))
