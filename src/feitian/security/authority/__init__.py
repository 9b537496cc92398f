"""Zhongkui's (钟馗) services layer: the cluster authority service, which issues capabilities by a durable policy,
registers principals and publishes the revocation list (docs/security.md, "The authority service"), and what a
node and a local cluster need to use it. The identities, capabilities, guard and TLS below it are
:mod:`feitian.security`.

* :mod:`~feitian.security.authority.messages` — the ``authority.*`` wire messages and their rules
* :mod:`~feitian.security.authority.store` — the durable state (principals, policy, revocations)
* :mod:`~feitian.security.authority.service` — the handlers; :mod:`~feitian.security.authority.role` — the
  ``authority`` node role that runs them
* :mod:`~feitian.security.authority.agent` — a node's revocation long poll and capability renewal
* :mod:`~feitian.security.authority.node` — a node's security from its ``[security]`` config section: identity,
  guard, client credentials, agent
* :mod:`~feitian.security.authority.cluster` — a local cluster's security: its CA, authority key, identities and
  first capabilities (``DIR/security/``), and clients acting as one of its identities
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.security.authority.agent import SecurityAgent
from feitian.security.authority.cluster import ClusterSecurity, resolve_identity
from feitian.security.authority.messages import Issue
from feitian.security.authority.node import NodeSecurity, SecuritySection
from feitian.security.authority.role import AuthorityOptions, AuthorityRole
from feitian.security.authority.service import AuthorityService
from feitian.security.authority.store import AuthorityStore, PrincipalRecord

if TYPE_CHECKING:
    from feitian.security.authority.messages import (
        APP_NAME_PREFIX,
        AddPrincipal,
        EnrolApp,
        ListPrincipals,
        PolicyGrant,
        PolicyList,
        PolicyReply,
        PolicyRevoke,
        RetireApp,
        Revoke,
    )

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "APP_NAME_PREFIX": "feitian.security.authority.messages",
    "EnrolApp": "feitian.security.authority.messages",
    "RetireApp": "feitian.security.authority.messages",
    "AddPrincipal": "feitian.security.authority.messages",
    "ListPrincipals": "feitian.security.authority.messages",
    "PolicyGrant": "feitian.security.authority.messages",
    "PolicyList": "feitian.security.authority.messages",
    "PolicyReply": "feitian.security.authority.messages",
    "PolicyRevoke": "feitian.security.authority.messages",
    "Revoke": "feitian.security.authority.messages",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "APP_NAME_PREFIX",
    "AddPrincipal",
    "AuthorityOptions",
    "AuthorityRole",
    "AuthorityService",
    "AuthorityStore",
    "ClusterSecurity",
    "EnrolApp",
    "Issue",
    "ListPrincipals",
    "NodeSecurity",
    "PolicyGrant",
    "PolicyList",
    "PolicyReply",
    "PolicyRevoke",
    "PrincipalRecord",
    "RetireApp",
    "Revoke",
    "SecurityAgent",
    "SecuritySection",
    "resolve_identity",
]
