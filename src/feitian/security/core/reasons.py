"""Why a credential or a call was refused: one stable short string per cause, and the error class it maps to.

Every refusal is an :class:`~feitian.errors.UnauthenticatedError` (the credential cannot be trusted, or is no
longer current: get a fresh one) or a :class:`~feitian.errors.PermissionDeniedError` (the credential is
genuine but does not allow this: asking again will not help), carrying ``reason`` as a structured field. The
reason strings are part of the wire contract and never change meaning.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from feitian.errors import AccessReason, FeitianError, PermissionDeniedError, UnauthenticatedError

__all__ = ["Reason", "decode_credential", "refusal"]

_T = TypeVar("_T")


# The reasons are declared with the error classes (feitian.errors.AccessReason), so that every process knows them.
Reason = AccessReason


_DENIED = frozenset(
    {
        Reason.WIDENED_DELEGATION,
        Reason.WRONG_HOLDER,
        Reason.NOT_GRANTED,
        Reason.PROXY_DISABLED,
        Reason.MISSING_RIGHT,
        Reason.WRONG_CHUNK,
        Reason.WRONG_PATH,
        Reason.WRONG_SERVER,
    }
)


def refusal(reason: Reason, message: str, *, hint: str | None = None, **fields: Any) -> FeitianError:
    """The error for ``reason``: PermissionDeniedError for denial reasons, else UnauthenticatedError."""
    cls = PermissionDeniedError if reason in _DENIED else UnauthenticatedError
    return cls(message, hint=hint, reason=reason, **fields)


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
