"""Tokens: short-lived, audience-bound, single-use credentials minted at call time (ZK-3).

A party that holds a capability chain (a job master, a DFS master) mints a :class:`Token` with its private
key for one receiver: a scope (resources and rights, within its own chain), an ``audience`` (the receiver's
principal id or service name), a lifetime of seconds or minutes (at most :data:`MAX_TOKEN_TTL_NS`) and a
random nonce. The token carries the minter's chain, so the receiver verifies it offline, with the authority's
public key only. A token may be bound to the principal that will present it (``holder_key``); an unbound
token is a bearer token, usable by whoever presents it first.

The receiver remembers each accepted ``(issuer, nonce)`` in a :class:`ReplayCache` until the token expires,
so a token is accepted **once** per receiver: presenting it again, on any connection, is refused as
``replayed``. The cache is bounded; when it is full it refuses new tokens with
:class:`~feitian.errors.OverloadedError` (retryable) instead of forgetting nonces early, which would re-open
the replay window. A receiver that restarts has lost its memory, so it refuses every token issued before it
started (``issued_before_start``): replays across a restart are refused too.

Pure: the nonce and the time are arguments.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from typing import Annotated

import msgspec

from feitian.base.units import SECOND_NS
from feitian.errors import InvalidArgumentError, OverloadedError, UnavailableReason
from feitian.security.core.capability import (
    DEFAULT_CLOCK_SKEW_NS,
    MAX_CHAIN_BYTES,
    MAX_RESOURCES_PER_CAPABILITY,
    CapabilityChain,
    Grant,
    verify_chain,
)
from feitian.security.core.identity import (
    ED25519_PUBLIC_KEY_BYTES,
    ED25519_SIGNATURE_BYTES,
    Signer,
    principal_id_for,
    verify_signature,
)
from feitian.security.core.reasons import Reason, decode_credential, refusal
from feitian.security.core.resources import (
    MAX_RESOURCE_CHARS,
    Resource,
    canonical_resources,
    parse_resource,
    resources_cover,
)
from feitian.security.core.revocation import RevocationList
from feitian.security.core.rights import Right, canonical_rights, rights_cover

__all__ = [
    "DEFAULT_REPLAY_CACHE_ENTRIES",
    "DEFAULT_TOKEN_TTL_NS",
    "MAX_NONCE_BYTES",
    "MAX_TOKEN_BYTES",
    "MAX_TOKEN_TTL_NS",
    "MIN_NONCE_BYTES",
    "TOKEN_VERSION",
    "ReplayCache",
    "Token",
    "TokenBody",
    "mint_token",
    "verify_token",
]

TOKEN_VERSION = 1
MAX_TOKEN_TTL_NS = 10 * 60 * SECOND_NS
DEFAULT_TOKEN_TTL_NS = 60 * SECOND_NS
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 32
MAX_AUDIENCE_CHARS = 128
MAX_TOKEN_BYTES = MAX_CHAIN_BYTES + 8 * 1024
DEFAULT_REPLAY_CACHE_ENTRIES = 1 << 18
_SIGNING_DOMAIN = b"feitian-token-v1\x00"

_KEY_LEN = ED25519_PUBLIC_KEY_BYTES


class TokenBody(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="tok"):
    """The signed part of a token. Times are wall-clock nanoseconds since the Unix epoch."""

    version: int
    issuer_key: Annotated[bytes, msgspec.Meta(min_length=_KEY_LEN, max_length=_KEY_LEN)]
    audience: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_AUDIENCE_CHARS)]
    resources: Annotated[
        tuple[Annotated[str, msgspec.Meta(max_length=MAX_RESOURCE_CHARS)], ...],
        msgspec.Meta(min_length=1, max_length=MAX_RESOURCES_PER_CAPABILITY),
    ]
    rights: Annotated[tuple[Right, ...], msgspec.Meta(min_length=1, max_length=len(Right))]
    issued_at_ns: Annotated[int, msgspec.Meta(ge=0)]
    expires_ns: Annotated[int, msgspec.Meta(ge=0)]
    nonce: Annotated[bytes, msgspec.Meta(min_length=MIN_NONCE_BYTES, max_length=MAX_NONCE_BYTES)]
    holder_key: Annotated[bytes, msgspec.Meta(max_length=_KEY_LEN)]  # b"": a bearer token


class Token(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="token"):
    """A token on the wire: the encoded :class:`TokenBody`, the minter's signature, the minter's chain."""

    body: Annotated[bytes, msgspec.Meta(max_length=8 * 1024)]
    signature: Annotated[bytes, msgspec.Meta(max_length=ED25519_SIGNATURE_BYTES)]
    issuer_chain: CapabilityChain

    def open(self) -> TokenBody:
        """Decode the body *without verifying it*."""
        return decode_credential(_BODY_DECODER, self.body, "token body")

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Token:
        """Decode a token; anything else raises UnauthenticatedError (missing, truncated, malformed)."""
        if len(data) > MAX_TOKEN_BYTES:
            raise refusal(Reason.MALFORMED, f"token: {len(data)} bytes, over {MAX_TOKEN_BYTES}")
        return decode_credential(_TOKEN_DECODER, data, "token")


_ENCODER = msgspec.msgpack.Encoder()
_BODY_DECODER = msgspec.msgpack.Decoder(TokenBody)
_TOKEN_DECODER = msgspec.msgpack.Decoder(Token)


def mint_token(
    signer: Signer,
    issuer_chain: CapabilityChain,
    *,
    audience: str,
    resources: Iterable[str],
    rights: Iterable[Right | str],
    now_ns: int,
    nonce: bytes,
    ttl_ns: int = DEFAULT_TOKEN_TTL_NS,
    holder_key: bytes = b"",
) -> Token:
    """Mint a token from ``signer``, the holder of ``issuer_chain``. The expiry is clipped to the chain's.

    ``nonce`` must be fresh randomness (:func:`feitian.security.new_nonce`). Raises InvalidArgumentError for a
    scope outside the chain, a lifetime over :data:`MAX_TOKEN_TTL_NS`, or a bad nonce or audience.
    """
    leaf = issuer_chain.leaf
    resources_c = canonical_resources(resources)
    rights_c = canonical_rights(Right(r) for r in rights)
    problems = []
    if signer.public_key != leaf.holder_key:
        problems.append("the signer does not hold the issuer chain")
    if not 0 < ttl_ns <= MAX_TOKEN_TTL_NS:
        problems.append(f"ttl {ttl_ns}ns outside (0, {MAX_TOKEN_TTL_NS}]")
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        problems.append(f"nonce of {len(nonce)} bytes, need {MIN_NONCE_BYTES}..{MAX_NONCE_BYTES}")
    if not 0 < len(audience) <= MAX_AUDIENCE_CHARS:
        problems.append(f"audience must be 1..{MAX_AUDIENCE_CHARS} characters")
    if len(holder_key) not in (0, _KEY_LEN):
        problems.append("holder_key must be empty (bearer) or a 32-byte public key")
    if not resources_c or not rights_c:
        problems.append("at least one resource and one right required")
    granted = tuple(parse_resource(r) for r in leaf.resources)
    if not resources_cover(granted, (parse_resource(r) for r in resources_c)):
        problems.append(f"resources {list(resources_c)} not within the chain's {list(leaf.resources)}")
    if not rights_cover(leaf.rights, rights_c):
        problems.append(f"rights {[str(r) for r in rights_c]} not within the chain's")
    expires_ns = min(now_ns + ttl_ns, leaf.expires_ns)
    if expires_ns <= now_ns:
        problems.append("the issuer chain has expired")
    if problems:
        raise InvalidArgumentError("mint token: " + "; ".join(problems), problems=problems)
    body = TokenBody(
        version=TOKEN_VERSION,
        issuer_key=signer.public_key,
        audience=audience,
        resources=resources_c,
        rights=rights_c,
        issued_at_ns=now_ns,
        expires_ns=expires_ns,
        nonce=nonce,
        holder_key=holder_key,
    )
    encoded = _ENCODER.encode(body)
    return Token(body=encoded, signature=signer.sign(_SIGNING_DOMAIN + encoded), issuer_chain=issuer_chain)


def verify_token(
    token: Token | bytes,
    *,
    audiences: Collection[str],
    presenter_key: bytes,
    authority_key: bytes,
    now_ns: int,
    revocations: RevocationList,
    replay_cache: ReplayCache,
    skew_ns: int = DEFAULT_CLOCK_SKEW_NS,
) -> Grant:
    """Verify a token presented by ``presenter_key`` to a receiver known as any of ``audiences``.

    On success the nonce is remembered (so the same token is refused next time) and the grant is returned,
    held by the presenter. Raises UnauthenticatedError / PermissionDeniedError with a ``reason``, or
    OverloadedError when the replay cache is full.
    """
    if isinstance(token, bytes):
        token = Token.from_bytes(token)
    body = token.open()
    issuer_id = principal_id_for(body.issuer_key)
    what = f"token {body.nonce.hex()[:16]} from {issuer_id} for {body.audience!r}"

    def fail(reason: Reason, why: str) -> Exception:
        return refusal(reason, f"{what}: {why}", issuer_id=issuer_id, audience=body.audience)

    if body.version != TOKEN_VERSION:
        raise fail(Reason.MALFORMED, f"unsupported format version {body.version}")
    if not verify_signature(body.issuer_key, token.signature, _SIGNING_DOMAIN + token.body):
        raise fail(Reason.BAD_SIGNATURE, "signature does not verify (forged or altered)")
    if not 0 < body.expires_ns - body.issued_at_ns <= MAX_TOKEN_TTL_NS:
        raise fail(Reason.MALFORMED, f"lifetime outside (0, {MAX_TOKEN_TTL_NS // SECOND_NS}s]")
    if body.issued_at_ns > now_ns + skew_ns:
        raise fail(Reason.NOT_YET_VALID, f"issued in the future ({body.issued_at_ns}, now {now_ns})")
    if now_ns >= body.expires_ns:
        raise fail(Reason.EXPIRED, f"expired at {body.expires_ns} (now {now_ns})")
    if body.audience not in audiences:
        raise fail(Reason.WRONG_AUDIENCE, f"minted for another receiver (this one is {', '.join(sorted(audiences))})")
    chain = verify_chain(
        token.issuer_chain,
        authority_key=authority_key,
        now_ns=now_ns,
        revocations=revocations,
        skew_ns=skew_ns,
    )
    if chain.holder_key != body.issuer_key:
        raise fail(Reason.BROKEN_CHAIN, "the attached capability chain is not held by the token's issuer")
    try:
        resources: tuple[Resource, ...] = tuple(parse_resource(r) for r in body.resources)
    except InvalidArgumentError as exc:
        raise fail(Reason.MALFORMED, exc.message) from None
    if not chain.covers(resources, body.rights) or body.expires_ns > chain.expires_ns:
        raise fail(Reason.WIDENED_DELEGATION, "scope or expiry wider than the issuer's capability")
    if body.holder_key and body.holder_key != presenter_key:
        raise fail(Reason.WRONG_HOLDER, f"bound to {principal_id_for(body.holder_key)}, presented by another")
    holder_id = principal_id_for(presenter_key)
    if revocations.is_holder_revoked(holder_id, now_ns):
        raise fail(Reason.REVOKED_HOLDER, f"presenter {holder_id} is revoked")
    replay_cache.check_and_remember(
        body.issuer_key + body.nonce,
        issued_at_ns=body.issued_at_ns,
        expires_ns=body.expires_ns,
        now_ns=now_ns,
    )
    return Grant(
        holder_key=presenter_key,
        holder_id=holder_id,
        resources=resources,
        rights=frozenset(body.rights),
        not_before_ns=max(body.issued_at_ns, chain.not_before_ns),
        expires_ns=body.expires_ns,
        capability_ids=chain.capability_ids,
        principal_ids=(*chain.principal_ids, holder_id),
        source="token",
    )


class ReplayCache:
    """The nonces of tokens this receiver accepted, each remembered until its token expires.

    ``started_at_ns`` is the (wall) time the cache was created: tokens issued before it are refused, since the
    cache cannot know whether they were already used. ``max_entries`` bounds memory (about 150 bytes an entry)
    and so the sustained rate of accepted tokens, ``max_entries / token lifetime``; above it, new tokens get
    OverloadedError until older ones expire.
    """

    __slots__ = ("_expiries", "_heap", "max_entries", "started_at_ns")

    def __init__(self, *, started_at_ns: int, max_entries: int = DEFAULT_REPLAY_CACHE_ENTRIES) -> None:
        if max_entries <= 0:
            raise InvalidArgumentError(f"replay cache: max_entries {max_entries} must be > 0")
        self.started_at_ns = started_at_ns
        self.max_entries = max_entries
        self._expiries: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []

    def __len__(self) -> int:
        return len(self._expiries)

    def check_and_remember(self, key: bytes, *, issued_at_ns: int, expires_ns: int, now_ns: int) -> None:
        """Remember ``key`` until ``expires_ns``; refuse it if already remembered or issued before start."""
        self.prune(now_ns)
        if key in self._expiries:
            raise refusal(Reason.REPLAYED, "token: already used (replayed)")
        if issued_at_ns < self.started_at_ns:
            raise refusal(
                Reason.ISSUED_BEFORE_START,
                "token: issued before this receiver started, so it may have been used already",
                hint="mint a new token",
            )
        if len(self._expiries) >= self.max_entries:
            raise OverloadedError(
                f"token: replay cache full ({self.max_entries} unexpired tokens); retry later",
                reason=UnavailableReason.REPLAY_CACHE_FULL,
            )
        self._expiries[key] = expires_ns
        heapq.heappush(self._heap, (expires_ns, key))

    def prune(self, now_ns: int) -> None:
        """Forget nonces of tokens that have expired (they would be refused as expired anyway)."""
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            _, key = heapq.heappop(heap)
            self._expiries.pop(key, None)
