"""The authority service (ZK-1..4): issues capabilities by a durable policy and publishes the revocation list.

It runs as the ``authority`` node role, guarded like every other server (mutual TLS, per-call checks). It holds
the cluster authority key, which signs certificates and capabilities; nothing else in the cluster needs it.

* ``authority.Issue``: capabilities for the *caller* (the principal its TLS certificate names), inside the
  policy; anything else is refused with ``not_granted``.
* ``authority.Revocations``: the revocation list, as a long poll (see :class:`~feitian.security.authority.messages.
  GetRevocations`): a revocation reaches every polling verifier at once, and the answers that come every
  ``wait_s`` anyway keep each verifier's copy inside its staleness bound.
* admin only: register principals (issuing their certificates), grant / revoke / list policy entries, revoke a
  capability or a holder. Every change is durable before it is answered (:class:`AuthorityStore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from feitian.base.clock import Clock
from feitian.errors import InvalidArgumentError, NotFoundError, UnauthenticatedError
from feitian.rpc import CallContext, handler
from feitian.security import (
    MAX_CAPABILITY_TTL_NS,
    CapabilityChain,
    ClusterAuthority,
    Principal,
    PrincipalKind,
    PublicKey,
    RevocationList,
    RevocationView,
    parse_rights,
    revocation_deadline,
    sign_capability,
)
from feitian.security.authority.messages import (
    ADMIN_POLICY,
    ADMIN_PRINCIPALS,
    ADMIN_REVOCATIONS,
    APP_NAME_PREFIX,
    ENROL_APP,
    RETIRE_APP,
    AddPrincipal,
    AddPrincipalReply,
    EnrolApp,
    GetRevocations,
    Issue,
    IssueReply,
    ListPrincipals,
    PolicyEntryInfo,
    PolicyGrant,
    PolicyList,
    PolicyReply,
    PolicyRevoke,
    PrincipalInfo,
    RetireApp,
    RevocationsReply,
    Revoke,
)
from feitian.security.authority.store import AuthorityStore, PrincipalRecord
from feitian.security.core.identity import PRINCIPAL_ID_CHARS

__all__ = ["MAX_POLL_WAIT_S", "AuthorityService"]

log = logging.getLogger(__name__)

MAX_POLL_WAIT_S = 60.0


def _caller(ctx: CallContext) -> Principal:
    principal = ctx.peer.principal
    if not isinstance(principal, Principal):
        raise UnauthenticatedError(f"{ctx.method}: the authority answers authenticated callers only")
    return principal


def _info(record: PrincipalRecord) -> PrincipalInfo:
    return PrincipalInfo(record.name, record.id, record.kind, record.public_key)


class AuthorityService:
    """See the module docstring. ``view`` is the revocation view of this node's own guard."""

    def __init__(self, store: AuthorityStore, ca: ClusterAuthority, view: RevocationView, clock: Clock) -> None:
        self.store = store
        self.ca = ca
        self.view = view
        self.clock = clock
        self._changed = asyncio.Event()
        self.waiting = 0  # long polls waiting for a change
        self.publish()

    def publish(self) -> None:
        """Install the current list in this node's own view and wake the long polls."""
        self.view.update(self.store.revocations, self.clock.monotonic_ns())
        self._changed.set()
        self._changed = asyncio.Event()

    async def keep_fresh(self, interval_s: float) -> None:
        """This node is the source of the list: its own view is always fresh (refresh it periodically)."""
        while True:
            await self.clock.sleep(interval_s)
            self.view.update(self.store.revocations, self.clock.monotonic_ns())

    # -- any authenticated principal ---------------------------------------------------------------------------

    @handler(Issue)
    async def issue(self, ctx: CallContext, req: Issue) -> IssueReply:
        caller = _caller(ctx)
        if not 0 < req.ttl_s <= MAX_CAPABILITY_TTL_NS / 1e9:
            raise InvalidArgumentError(f"issue: ttl_s {req.ttl_s} outside (0, {MAX_CAPABILITY_TTL_NS // 10**9}]")
        policy = self.store.policy
        if req.resources:
            requests = [(list(req.resources), [str(r) for r in parse_rights(req.rights)], req.max_depth)]
        else:
            requests = [
                ([e.resource], [str(r) for r in e.rights], min(req.max_depth, e.max_depth))
                for e in policy.entries(caller.id)
            ]
        now_ns = self.clock.wall_ns()
        chains = []
        for resources, rights, depth in requests:
            cap = policy.issue(
                holder_key=caller.public_key,
                holder_name=caller.name,
                resources=resources,
                rights=rights,
                now_ns=now_ns,
                authority_key=self.ca.public_key,
                ttl_ns=int(req.ttl_s * 1e9),
                max_depth=depth,
            )
            chains.append(CapabilityChain(links=(sign_capability(cap, self.ca.key),)).to_bytes())
            log.info(
                "issued capability %s to %s: %s on %s for %.0fs",
                cap.id.hex(),
                caller.describe(),
                ",".join(cap.rights),
                " ".join(cap.resources),
                req.ttl_s,
            )
        return IssueReply(chains)

    @handler(GetRevocations)
    async def revocations(self, ctx: CallContext, req: GetRevocations) -> RevocationsReply:
        current = self.store.revocations
        if req.known_version == current.version and req.wait_s > 0:
            changed = self._changed
            self.waiting += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(req.wait_s, MAX_POLL_WAIT_S))
            finally:
                self.waiting -= 1
            current = self.store.revocations
        return RevocationsReply(current.version, current.to_bytes())

    # -- admin -------------------------------------------------------------------------------------------------

    @handler(AddPrincipal, requires=ADMIN_PRINCIPALS)
    async def add_principal(self, ctx: CallContext, req: AddPrincipal) -> AddPrincipalReply:
        try:
            kind = PrincipalKind(req.kind)
        except ValueError:
            raise InvalidArgumentError(f"add principal {req.name}: kind must be user or service") from None
        record = self.store.add_principal(req.name, req.public_key, kind)
        hosts = req.hosts or ["localhost", "127.0.0.1"]
        pem = self.ca.issue_certificate_pem(
            PublicKey(record.name, record.public_key), kind, now_s=self.clock.wall_ns() / 1e9, hosts=hosts
        )
        log.info("%s registered %s %s (%s)", _caller(ctx).describe(), kind.value, record.name, record.id)
        return AddPrincipalReply(_info(record), pem, self.ca.certificate_pem())

    # -- applications' principals (FuxiMaster) -----------------------------------------------------------------

    @handler(EnrolApp, requires=ENROL_APP)
    async def enrol_app(self, ctx: CallContext, req: EnrolApp) -> AddPrincipalReply:
        self._check_app_name(req.name)
        record = self.store.replace_principal(req.name, req.public_key, PrincipalKind.USER)
        pem = self.ca.issue_certificate_pem(  # its master and workers serve each other (SamePrincipalServer)
            PublicKey(record.name, record.public_key),
            PrincipalKind.USER,
            now_s=self.clock.wall_ns() / 1e9,
            serves=True,
        )
        log.info("%s enrolled application principal %s (%s)", _caller(ctx).describe(), record.name, record.id)
        return AddPrincipalReply(_info(record), pem, self.ca.certificate_pem())

    @handler(RetireApp, requires=RETIRE_APP)
    async def retire_app(self, ctx: CallContext, req: RetireApp) -> RevocationsReply:
        self._check_app_name(req.name)
        record = self.store.remove_principal(req.name)
        current = self.store.revocations
        if record is not None and req.until_ns > self.clock.wall_ns():
            current = current.revoke_holder(record.id, until_ns=req.until_ns)
            self.store.set_revocations(current)
            self.publish()
        log.info("%s retired application principal %s", _caller(ctx).describe(), req.name)
        return RevocationsReply(current.version, current.to_bytes())

    @staticmethod
    def _check_app_name(name: str) -> None:
        if not name.startswith(APP_NAME_PREFIX) or len(name) == len(APP_NAME_PREFIX):
            raise InvalidArgumentError(f"application principal {name!r}: its name must start with {APP_NAME_PREFIX!r}")

    @handler(ListPrincipals, requires=ADMIN_PRINCIPALS)
    async def list_principals(self, ctx: CallContext, req: ListPrincipals) -> list[PrincipalInfo]:
        return [_info(r) for r in sorted(self.store.principals.values(), key=lambda r: r.name)]

    @handler(PolicyGrant, requires=ADMIN_POLICY)
    async def grant(self, ctx: CallContext, req: PolicyGrant) -> PolicyReply:
        record = self.store.principal(req.principal)
        rights = parse_rights(req.rights)
        self.store.policy.grant(record.id, record.name, req.resources, rights, max_depth=req.max_depth)
        self.store.save_policy()
        log.info("%s granted %s: %s on %s", _caller(ctx).describe(), record.name, req.rights, req.resources)
        return self._policy_reply(record.id)

    @handler(PolicyRevoke, requires=ADMIN_POLICY)
    async def policy_revoke(self, ctx: CallContext, req: PolicyRevoke) -> PolicyReply:
        record = self.store.principal(req.principal)
        self.store.policy.revoke(record.id, req.resources or None, parse_rights(req.rights) or None)
        self.store.save_policy()
        log.info("%s revoked from %s: %s on %s", _caller(ctx).describe(), record.name, req.rights, req.resources)
        return self._policy_reply(record.id)

    @handler(PolicyList, requires=ADMIN_POLICY)
    async def policy_list(self, ctx: CallContext, req: PolicyList) -> PolicyReply:
        principal_id = self.store.principal(req.principal).id if req.principal else None
        return self._policy_reply(principal_id)

    def _policy_reply(self, principal_id: str | None) -> PolicyReply:
        policy = self.store.policy
        entries = [
            PolicyEntryInfo(self.store.name_of(e.principal_id), e.principal_id, e.resource, list(e.rights), e.max_depth)
            for e in policy.entries(principal_id)
        ]
        return PolicyReply(policy.version, entries)

    @handler(Revoke, requires=ADMIN_REVOCATIONS)
    async def revoke(self, ctx: CallContext, req: Revoke) -> RevocationsReply:
        if bool(req.capability_id) == bool(req.holder):
            raise InvalidArgumentError("revoke: give exactly one of a capability id or a holder")
        current: RevocationList = self.store.revocations
        if req.capability_id:
            try:
                cap_id = bytes.fromhex(req.capability_id)
            except ValueError:
                raise InvalidArgumentError(f"revoke: capability id {req.capability_id!r} is not hex") from None
            updated = current.revoke_id(cap_id, until_ns=revocation_deadline(self.clock.wall_ns()))
            what = f"capability {req.capability_id}"
        else:
            holder = self._holder_id(req.holder)
            updated = current.revoke_holder(holder)
            what = f"holder {req.holder} ({holder})"
        self.store.set_revocations(updated)
        self.publish()
        log.warning("%s revoked %s (revocation list version %d)", _caller(ctx).describe(), what, updated.version)
        return RevocationsReply(updated.version, updated.to_bytes())

    def _holder_id(self, name_or_id: str) -> str:
        try:
            return self.store.principal(name_or_id).id
        except NotFoundError:
            if len(name_or_id) == PRINCIPAL_ID_CHARS and name_or_id.isalnum():
                return name_or_id  # an unregistered principal id (e.g. a delegate's key)
            raise
