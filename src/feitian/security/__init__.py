"""Zhongkui (钟馗): identities, mutual TLS, capabilities, tokens and authorization for every feitian component.

See docs/security.md for the threat model, the formats, the rights model and the revocation bound.

* keys: :class:`KeyPair`, :func:`load_private_key` (refuses group/other-readable files), :func:`save_private_key`
* TLS: :class:`ClusterAuthority` (the CA), :class:`TlsIdentity`, :func:`server_context`, :func:`client_context`,
  :func:`peer_principal`, :func:`verify_server`
* capabilities: :func:`issue_capability`, :func:`delegate`, :func:`verify_chain`, :class:`Policy`
* tokens: :func:`mint_token`, :func:`verify_token`, :class:`ReplayCache`
* servers: :class:`Guard` with :func:`requires` rules, or the pure :class:`Authorizer`
* on Kuafu: :class:`ServerGuard` (``Server(security=...)``), :class:`ClientIdentity` and :class:`CapabilitySet`
  (``Client(tls=..., credentials=...)``), :class:`IdentityFiles`
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.security.ca import ClusterAuthority, authority_key_of, principal_of_certificate
from feitian.security.core import (
    ALL_RIGHTS,
    DEFAULT_CAPABILITY_TTL_NS,
    DEFAULT_CLOCK_SKEW_NS,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_STALENESS_NS,
    DEFAULT_TOKEN_TTL_NS,
    MAX_CAPABILITY_TTL_NS,
    MAX_CHAIN_LENGTH,
    MAX_TOKEN_TTL_NS,
    Authorizer,
    Capability,
    CapabilityChain,
    Grant,
    MethodRule,
    Principal,
    PrincipalKind,
    Reason,
    ReplayCache,
    Resource,
    RevocationList,
    RevocationView,
    Right,
    SignedCapability,
    Signer,
    Token,
    TokenBody,
    capability_id,
    delegate,
    implied,
    issue_capability,
    mint_token,
    new_capability,
    parse_resource,
    parse_rights,
    principal_id_for,
    requires,
    requires_authentication,
    requires_each,
    resources_cover,
    revocation_deadline,
    rights_cover,
    sign_capability,
    verify_chain,
    verify_token,
)
from feitian.security.guard import ConnectionSecurity, Guard
from feitian.security.identity_files import IdentityFiles
from feitian.security.keys import (
    KeyPair,
    PublicKey,
    create_identity_files,
    load_private_key,
    load_public_key,
    new_nonce,
    save_private_key,
    save_public_key,
)
from feitian.security.kuafu import CapabilitySet, ClientIdentity, SamePrincipalClient, SamePrincipalServer, ServerGuard
from feitian.security.policy import Policy, PolicyEntry
from feitian.security.tls import TlsIdentity, client_context, peer_principal, server_context, verify_server

if TYPE_CHECKING:
    from feitian.security.identity_files import capabilities_text, read_capabilities, write_capabilities
    from feitian.security.kuafu import chain_expiry

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "chain_expiry": "feitian.security.kuafu",
    "capabilities_text": "feitian.security.identity_files",
    "read_capabilities": "feitian.security.identity_files",
    "write_capabilities": "feitian.security.identity_files",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "ALL_RIGHTS",
    "DEFAULT_CAPABILITY_TTL_NS",
    "DEFAULT_CLOCK_SKEW_NS",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_STALENESS_NS",
    "DEFAULT_TOKEN_TTL_NS",
    "MAX_CAPABILITY_TTL_NS",
    "MAX_CHAIN_LENGTH",
    "MAX_TOKEN_TTL_NS",
    "Authorizer",
    "Capability",
    "CapabilityChain",
    "CapabilitySet",
    "ClientIdentity",
    "ClusterAuthority",
    "ConnectionSecurity",
    "Grant",
    "Guard",
    "IdentityFiles",
    "KeyPair",
    "MethodRule",
    "Policy",
    "PolicyEntry",
    "Principal",
    "PrincipalKind",
    "PublicKey",
    "Reason",
    "ReplayCache",
    "Resource",
    "RevocationList",
    "RevocationView",
    "Right",
    "SamePrincipalClient",
    "SamePrincipalServer",
    "ServerGuard",
    "SignedCapability",
    "Signer",
    "TlsIdentity",
    "Token",
    "TokenBody",
    "authority_key_of",
    "capabilities_text",
    "capability_id",
    "chain_expiry",
    "client_context",
    "create_identity_files",
    "delegate",
    "implied",
    "issue_capability",
    "load_private_key",
    "load_public_key",
    "mint_token",
    "new_capability",
    "new_nonce",
    "parse_resource",
    "parse_rights",
    "peer_principal",
    "principal_id_for",
    "principal_of_certificate",
    "read_capabilities",
    "requires",
    "requires_authentication",
    "requires_each",
    "resources_cover",
    "revocation_deadline",
    "rights_cover",
    "save_private_key",
    "save_public_key",
    "server_context",
    "sign_capability",
    "verify_chain",
    "verify_server",
    "verify_token",
    "write_capabilities",
]
