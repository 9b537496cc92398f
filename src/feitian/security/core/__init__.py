"""Zhongkui's pure core: capabilities, tokens, revocation and authorization, with time passed in.

Nothing here reads a clock, draws randomness, or touches files, sockets or event loops.
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.security.core.authorize import (
    Authorizer,
    MethodRule,
    requires,
    requires_authentication,
    requires_each,
)
from feitian.security.core.capability import (
    DEFAULT_CAPABILITY_TTL_NS,
    DEFAULT_CLOCK_SKEW_NS,
    DEFAULT_MAX_DEPTH,
    MAX_CAPABILITY_TTL_NS,
    MAX_CHAIN_LENGTH,
    Capability,
    CapabilityChain,
    Grant,
    SignedCapability,
    capability_id,
    delegate,
    issue_capability,
    new_capability,
    revocation_deadline,
    sign_capability,
    verify_chain,
)
from feitian.security.core.identity import Principal, PrincipalKind, Signer, principal_id_for, verify_signature
from feitian.security.core.reasons import Reason, refusal
from feitian.security.core.resources import Resource, parse_resource, resources_cover
from feitian.security.core.revocation import DEFAULT_MAX_STALENESS_NS, RevocationList, RevocationView
from feitian.security.core.rights import ALL_RIGHTS, Right, implied, parse_rights, rights_cover
from feitian.security.core.token import (
    DEFAULT_TOKEN_TTL_NS,
    MAX_TOKEN_TTL_NS,
    ReplayCache,
    Token,
    TokenBody,
    mint_token,
    verify_token,
)

if TYPE_CHECKING:
    from feitian.security.core.capability import MAX_DELEGATION_DEPTH

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "MAX_DELEGATION_DEPTH": "feitian.security.core.capability",
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
    "MAX_DELEGATION_DEPTH",
    "MAX_TOKEN_TTL_NS",
    "Authorizer",
    "Capability",
    "CapabilityChain",
    "Grant",
    "MethodRule",
    "Principal",
    "PrincipalKind",
    "Reason",
    "ReplayCache",
    "Resource",
    "RevocationList",
    "RevocationView",
    "Right",
    "SignedCapability",
    "Signer",
    "Token",
    "TokenBody",
    "capability_id",
    "delegate",
    "implied",
    "issue_capability",
    "mint_token",
    "new_capability",
    "parse_resource",
    "parse_rights",
    "principal_id_for",
    "refusal",
    "requires",
    "requires_authentication",
    "requires_each",
    "resources_cover",
    "revocation_deadline",
    "rights_cover",
    "sign_capability",
    "verify_chain",
    "verify_signature",
    "verify_token",
]
