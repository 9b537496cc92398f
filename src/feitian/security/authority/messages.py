"""The authority service's wire messages (``authority.*``), and the rule each method declares.

Any authenticated principal may ask for capabilities (the policy decides what it gets) and read the revocation
list; changing the policy, the principals and the revocation list needs ``admin`` on ``authority:/...``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from feitian.rpc import Request
from feitian.security import DEFAULT_MAX_DEPTH, MethodRule, Right, requires

__all__ = [
    "ADMIN_POLICY",
    "ADMIN_PRINCIPALS",
    "ADMIN_REVOCATIONS",
    "APP_NAME_PREFIX",
    "APP_PRINCIPALS",
    "ENROL_APP",
    "RETIRE_APP",
    "AddPrincipal",
    "AddPrincipalReply",
    "EnrolApp",
    "GetRevocations",
    "Issue",
    "IssueReply",
    "ListPrincipals",
    "PolicyEntryInfo",
    "PolicyGrant",
    "PolicyList",
    "PolicyReply",
    "PolicyRevoke",
    "PrincipalInfo",
    "RetireApp",
    "RevocationsReply",
    "Revoke",
]

ADMIN_POLICY: MethodRule[Any] = requires(Right.ADMIN, "authority:/policy")
ADMIN_PRINCIPALS: MethodRule[Any] = requires(Right.ADMIN, "authority:/principals")
ADMIN_REVOCATIONS: MethodRule[Any] = requires(Right.ADMIN, "authority:/revocations")
# Applications' principals (ZK-3): FuxiMaster registers one per application and retires it when the application
# ends. Its capability names this subtree only, so it can register no other kind of principal.
APP_PRINCIPALS = "authority:/principals/apps/"
APP_NAME_PREFIX = "app."


class IssueReply(msgspec.Struct, frozen=True):
    chains: list[bytes]  # encoded CapabilityChain, one link each, held by the caller


class Issue(Request[IssueReply], frozen=True, tag="authority.Issue"):
    """Capabilities for the caller (the authenticated peer), within the policy.

    Empty ``resources`` asks for everything the policy allows the caller: one capability per policy entry.
    """

    resources: tuple[str, ...] = ()
    rights: tuple[str, ...] = ()
    ttl_s: float = 3600.0
    max_depth: int = 0


class RevocationsReply(msgspec.Struct, frozen=True):
    version: int
    data: bytes  # RevocationList.to_bytes()


class GetRevocations(Request[RevocationsReply], frozen=True, tag="authority.Revocations"):
    """The revocation list. A long poll: when ``known_version`` is current, the answer waits up to ``wait_s``
    for a change (and then comes anyway, which is what keeps a verifier's copy fresh)."""

    idempotent: ClassVar[bool] = True

    known_version: int = -1
    wait_s: float = 0.0


class PrincipalInfo(msgspec.Struct, frozen=True):
    name: str
    id: str
    kind: str  # "user" or "service"
    public_key: bytes


class AddPrincipalReply(msgspec.Struct, frozen=True):
    principal: PrincipalInfo
    certificate_pem: bytes  # the principal's TLS certificate, issued by the cluster authority
    ca_pem: bytes


class AddPrincipal(Request[AddPrincipalReply], frozen=True, tag="authority.AddPrincipal"):
    """Register a principal and issue its certificate (again, for the same key: a renewed certificate)."""

    name: str
    public_key: bytes
    kind: str = "user"
    hosts: tuple[str, ...] = ()  # for services: the host names and addresses its certificate names


class ListPrincipals(Request[list[PrincipalInfo]], frozen=True, tag="authority.ListPrincipals"):
    idempotent: ClassVar[bool] = True


class PolicyEntryInfo(msgspec.Struct, frozen=True):
    principal: str  # name
    principal_id: str
    resource: str
    rights: list[str]
    max_depth: int


class PolicyReply(msgspec.Struct, frozen=True):
    version: int
    entries: list[PolicyEntryInfo]


class PolicyGrant(Request[PolicyReply], frozen=True, tag="authority.PolicyGrant"):
    principal: str  # a registered name or principal id
    resources: tuple[str, ...]
    rights: tuple[str, ...]
    max_depth: int = DEFAULT_MAX_DEPTH


class PolicyRevoke(Request[PolicyReply], frozen=True, tag="authority.PolicyRevoke"):
    principal: str
    resources: tuple[str, ...] = ()  # empty: every resource
    rights: tuple[str, ...] = ()  # empty: every right


class PolicyList(Request[PolicyReply], frozen=True, tag="authority.PolicyList"):
    idempotent: ClassVar[bool] = True

    principal: str = ""  # empty: everyone


class Revoke(Request[RevocationsReply], frozen=True, tag="authority.Revoke"):
    """Put a capability (``capability_id``, hex) or a holder (name or id) on the revocation list."""

    capability_id: str = ""
    holder: str = ""


class EnrolApp(Request[AddPrincipalReply], frozen=True, tag="authority.EnrolApp"):
    """Register an application's principal (``app.<application id>``, a user) and issue its certificate.

    Needs ``create`` on ``authority:/principals/apps/<name>``. The principal gets no policy entries: what it may
    do comes from capabilities its submitter delegated to its key.
    """

    name: str
    public_key: bytes


class RetireApp(Request[RevocationsReply], frozen=True, tag="authority.RetireApp"):
    """An application ended: revoke its principal as a holder until ``until_ns`` (when the capabilities
    delegated to it expire anyway, so the revocation list stays bounded) and forget its registration.

    Needs ``delete`` on ``authority:/principals/apps/<name>``.
    """

    name: str
    until_ns: int


ENROL_APP: MethodRule[EnrolApp] = requires(Right.CREATE, lambda r: APP_PRINCIPALS + r.name)
RETIRE_APP: MethodRule[RetireApp] = requires(Right.DELETE, lambda r: APP_PRINCIPALS + r.name)
