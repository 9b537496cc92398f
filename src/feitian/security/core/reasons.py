"""Why a credential or a call was refused: one stable short string per cause, and the error class it maps to.

Every refusal is an :class:`~feitian.errors.UnauthenticatedError` (the credential cannot be trusted, or is no
longer current: get a fresh one) or a :class:`~feitian.errors.PermissionDeniedError` (the credential is
genuine but does not allow this: asking again will not help), carrying ``reason`` as a structured field. The
reason strings are part of the wire contract and never change meaning.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import msgspec

from feitian.errors import FeitianError, PermissionDeniedError, UnauthenticatedError

__all__ = ["Reason", "decode_credential", "refusal"]

_T = TypeVar("_T")


class Reason(enum.StrEnum):
    # UnauthenticatedError: the credential is absent, unreadable, not genuine or not current.
    MISSING = "missing"  # nothing was presented
    TRUNCATED = "truncated"  # the encoding ends early
    MALFORMED = "malformed"  # undecodable, over a size bound, or a field out of range
    BAD_SIGNATURE = "bad_signature"  # forged or altered
    UNTRUSTED_ISSUER = "untrusted_issuer"  # the chain does not start at the cluster authority
    BROKEN_CHAIN = "broken_chain"  # a link is not issued by the previous link's holder
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED_ID = "revoked_id"  # a capability of the chain is on the revocation list
    REVOKED_HOLDER = "revoked_holder"  # a principal of the chain (or the peer) is on the revocation list
    WRONG_AUDIENCE = "wrong_audience"  # a token minted for another receiver
    REPLAYED = "replayed"  # a token nonce seen before
    ISSUED_BEFORE_START = "issued_before_start"  # a token older than this receiver's replay memory
    BAD_CERTIFICATE = "bad_certificate"  # a TLS peer certificate without a valid feitian principal
    NOT_A_SERVICE = "not_a_service"  # a server whose certificate is not a service's
    UNEXPECTED_PEER = "unexpected_peer"  # a genuine service, but not the one the client asked for
    # PermissionDeniedError: the credential is genuine but does not allow this.
    WIDENED_DELEGATION = "widened_delegation"  # a link claims more than its parent holds
    WRONG_HOLDER = "wrong_holder"  # presented by a principal that is not its holder
    NOT_GRANTED = "not_granted"  # no presented capability (or policy entry) covers the request


_DENIED = frozenset({Reason.WIDENED_DELEGATION, Reason.WRONG_HOLDER, Reason.NOT_GRANTED})


def refusal(reason: Reason, message: str, *, hint: str | None = None, **fields: Any) -> FeitianError:
    """The error for ``reason``: PermissionDeniedError for denial reasons, else UnauthenticatedError."""
    cls = PermissionDeniedError if reason in _DENIED else UnauthenticatedError
    return cls(message, hint=hint, reason=reason.value, **fields)


def decode_credential(decoder: msgspec.msgpack.Decoder[_T], data: bytes, what: str) -> _T:
    """Decode untrusted bytes; empty, truncated or malformed input becomes the matching refusal."""
    if not data:
        raise refusal(Reason.MISSING, f"{what}: nothing presented")
    try:
        return decoder.decode(data)
    except (msgspec.ValidationError, UnicodeDecodeError) as exc:  # msgspec lets bad UTF-8 through as this
        raise refusal(Reason.MALFORMED, f"{what}: invalid ({exc})") from None
    except msgspec.DecodeError as exc:
        reason = Reason.TRUNCATED if "truncated" in str(exc) else Reason.MALFORMED
        raise refusal(reason, f"{what}: cannot decode ({exc})") from None
