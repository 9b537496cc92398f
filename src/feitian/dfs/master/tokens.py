"""Chunk tokens, minted by the master (like HDFS block tokens; docs/dfs.md "Access control").

A token is a Zhongkui token (:func:`feitian.security.mint_token`) signed with the master's own key and carrying
the master's capability chain for ``dfs-chunk:*``. Its audience is one chunk server (its node name), its
resource one version of one chunk (``dfs-chunk:<id>/v<version>``), its rights ``read`` or ``read`` + ``write``.
When the master knows who will present it — the client that asked, or the chunk server forwarding a write down
the pipeline — the token is bound to that principal's key (``holder_key``), so nobody else can use it.

In a cluster without security the master mints nothing (empty tokens) and chunk servers check nothing.
"""

from __future__ import annotations

from typing import Any

from feitian.base.units import SECOND_NS
from feitian.dfs.core import chunk_resource
from feitian.errors import UnavailableError, UnavailableReason
from feitian.security import MAX_TOKEN_TTL_NS, CapabilityChain, Right, mint_token, new_nonce
from feitian.security.core import parse_resource, resources_cover

__all__ = ["TokenMinter"]

_CHUNKS = parse_resource("dfs-chunk:0/v0")


class TokenMinter:
    """Mints chunk tokens from a node's identity and capabilities (``security``: the node's NodeSecurity, or
    None in a cluster without security)."""

    def __init__(self, security: Any | None) -> None:
        self.security = security
        self._chain: CapabilityChain | None = None
        self._chain_bytes: bytes = b""

    @property
    def enabled(self) -> bool:
        return self.security is not None

    def _issuer_chain(self) -> CapabilityChain:
        assert self.security is not None
        chains = self.security.credentials.capabilities()
        if self._chain is not None and self._chain_bytes in chains:
            return self._chain
        for raw in chains:
            chain = CapabilityChain.from_bytes(raw)
            leaf = chain.leaf
            rights = {str(r) for r in leaf.rights}
            if resources_cover(tuple(parse_resource(r) for r in leaf.resources), (_CHUNKS,)) and (
                "admin" in rights or {"read", "write"} <= rights
            ):
                self._chain, self._chain_bytes = chain, raw
                return chain
        raise UnavailableError(
            "mint chunk token: this master holds no capability for dfs-chunk:* (read, write)",
            hint="the dfs-master role's grants (security/authority/cluster.py ROLE_GRANTS) give it one",
            reason=UnavailableReason.NO_CHUNK_CAPABILITY,
        )

    def mint(
        self,
        server_id: str,
        chunk_id: int,
        version: int,
        *,
        write: bool,
        now_ns: int,
        expires_ns: int,
        holder_key: bytes = b"",
    ) -> bytes:
        if self.security is None:
            return b""
        rights = [Right.READ, Right.WRITE] if write else [Right.READ]
        ttl = min(MAX_TOKEN_TTL_NS, max(SECOND_NS, expires_ns - now_ns))
        token = mint_token(
            self.security.identity.key,
            self._issuer_chain(),
            audience=server_id,
            resources=[chunk_resource(chunk_id, version)],
            rights=rights,
            now_ns=now_ns,
            nonce=new_nonce(),
            ttl_ns=ttl,
            holder_key=holder_key,
        )
        return token.to_bytes()
