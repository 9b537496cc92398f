"""An application's credentials, made by its submitter (ZK-3; docs/sched.md, "Security").

In a secured cluster every call needs a capability, and an application's processes hold none of their own. The
submitter gives them some of its own, narrowed: ``--grant dfs:/jobs/wc/=read,create,write`` makes a key for the
application, finds among the submitter's capabilities one that covers the resource and rights and may be
delegated further, and delegates exactly that to the application's key (``max_depth`` 0: the application
cannot pass it on). The key and the chains travel to FuxiMaster with the submission (over mutual TLS); see
:mod:`feitian.sched.master.identities` for what happens to them there.

The application's capabilities expire with the submitter's (at most ``ttl_s`` from now): an application that
runs longer loses its access then (there is no renewal yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import FeitianError, InvalidArgumentError, PermissionDeniedError
from feitian.rpc import Client
from feitian.sched.messages import MAX_CREDENTIAL_CHAINS, AppCredentials
from feitian.security import (
    CapabilityChain,
    KeyPair,
    parse_resource,
    parse_rights,
    resources_cover,
    rights_cover,
)
from feitian.security import delegate as delegate_chain

__all__ = ["DEFAULT_TTL_S", "MIN_VALIDITY_S", "AppGrant", "app_credentials", "credentials_for", "parse_grant"]

DEFAULT_TTL_S = 24 * 3600.0
MIN_VALIDITY_S = 60.0  # a capability expiring sooner than this is not worth delegating

AppGrant = tuple[str, tuple[str, ...]]  # (resource, rights)


def parse_grant(text: str) -> AppGrant:
    """``RESOURCE=RIGHT[,RIGHT...]``, e.g. ``dfs:/jobs/wc/=read,write``; InvalidArgumentError naming the problem."""
    resource, sep, rights_text = text.rpartition("=")
    if not sep or not resource or not rights_text:
        raise InvalidArgumentError(
            f"grant {text!r}: expected RESOURCE=RIGHTS", hint="e.g. --grant dfs:/jobs/wc/=read,create,write"
        )
    parse_resource(resource)
    rights = tuple(r.strip() for r in rights_text.split(",") if r.strip())
    parse_rights(rights)
    return resource, rights


def app_credentials(
    signer: KeyPair,
    chains: Iterable[bytes],
    grants: Sequence[AppGrant],
    *,
    clock: Clock | None = None,
    ttl_s: float = DEFAULT_TTL_S,
) -> AppCredentials:
    """A new key for the application and, per grant, one of ``chains`` (held by ``signer``) delegated to it.

    PermissionDeniedError lists every grant none of the chains covers (with delegation allowed)."""
    if not grants:
        raise InvalidArgumentError("application credentials: no grant given")
    if len(grants) > MAX_CREDENTIAL_CHAINS:
        raise InvalidArgumentError(f"application credentials: {len(grants)} grants, at most {MAX_CREDENTIAL_CHAINS}")
    now = (clock or MonotonicClock()).wall_ns()
    horizon = now + int(MIN_VALIDITY_S * 1e9)
    held: list[CapabilityChain] = []
    for data in chains:
        try:
            chain = CapabilityChain.from_bytes(data)
        except FeitianError:
            continue  # an unreadable chain is simply not used
        leaf = chain.leaf
        if leaf.holder_key == signer.public_key and leaf.max_depth >= 1 and leaf.expires_ns > horizon:
            held.append(chain)
    app_key = KeyPair.generate("app")
    out: list[bytes] = []
    missing: list[str] = []
    for resource, rights in grants:
        wanted_resource, wanted_rights = parse_resource(resource), parse_rights(rights)
        covering = [
            c
            for c in held
            if resources_cover([parse_resource(r) for r in c.leaf.resources], [wanted_resource])
            and rights_cover(parse_rights(c.leaf.rights), wanted_rights)
        ]
        if not covering:
            missing.append(f"{resource}={','.join(rights)}")
            continue
        parent = max(covering, key=lambda c: c.leaf.expires_ns)
        child = delegate_chain(
            parent,
            signer,
            holder_key=app_key.public_key,
            holder_name="app",
            now_ns=now,
            resources=[resource],
            rights=rights,
            expires_ns=min(parent.leaf.expires_ns, now + int(ttl_s * 1e9)),
            max_depth=0,
        )
        out.append(child.to_bytes())
    if missing:
        raise PermissionDeniedError(
            f"application credentials: none of {signer.name}'s capabilities covers (with delegation allowed) "
            + "; ".join(missing),
            hint="`feitian cap list` shows yours; a capability delegates only if its max_depth is 1 or more",
        )
    return AppCredentials(seed=app_key.seed(), chains=out)


def credentials_for(rpc: Client, grants: Sequence[AppGrant], *, ttl_s: float = DEFAULT_TTL_S) -> AppCredentials:
    """:func:`app_credentials` from the identity and capabilities ``rpc`` calls with."""
    identity = getattr(rpc.tls, "identity", None)
    key = getattr(identity, "key", None)
    credentials = rpc.credentials
    if not isinstance(key, KeyPair) or credentials is None:
        raise InvalidArgumentError(
            "application credentials: this client has no identity (an insecure cluster needs no grants)",
            hint="drop --grant, or connect with an identity (--identity)",
        )
    return app_credentials(key, credentials.capabilities(), grants, ttl_s=ttl_s)
