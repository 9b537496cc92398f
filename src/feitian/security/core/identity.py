"""Principals: who is on the other end of a connection, and who holds a capability.

A principal is an Ed25519 public key. Its *principal id* is derived from the key (so it cannot be chosen),
its *name* is a human label chosen at creation ("admin", "coord-1"), and its *kind* says whether it is a
person (``user``) or a cluster service (``service``). Only the key and the id are authoritative; the name and
the kind are what the cluster authority wrote into the principal's certificate.

Pure: no clock, no randomness, no I/O. Signing is done by a :class:`Signer` handed in by the caller.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import re
from typing import Protocol

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from feitian.errors import InvalidArgumentError

__all__ = [
    "ED25519_PUBLIC_KEY_BYTES",
    "ED25519_SIGNATURE_BYTES",
    "PRINCIPAL_ID_CHARS",
    "Principal",
    "PrincipalKind",
    "Signer",
    "principal_id_for",
    "validate_name",
    "verify_signature",
]

ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
# 16 bytes of SHA-256 (128 bits) in unpadded lower-case base32.
PRINCIPAL_ID_CHARS = 26
_PRINCIPAL_ID_DOMAIN = b"feitian-principal-v1\x00"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class PrincipalKind(enum.StrEnum):
    USER = "user"
    SERVICE = "service"


def principal_id_for(public_key: bytes) -> str:
    """The principal id of a raw 32-byte Ed25519 public key: 26 base32 characters of its SHA-256."""
    if len(public_key) != ED25519_PUBLIC_KEY_BYTES:
        raise InvalidArgumentError(
            f"principal id: public key must be {ED25519_PUBLIC_KEY_BYTES} bytes, got {len(public_key)}"
        )
    digest = hashlib.sha256(_PRINCIPAL_ID_DOMAIN + public_key).digest()[:16]
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def validate_name(name: str) -> str:
    """Check a principal name: 1-64 of ``A-Z a-z 0-9 . _ @ -``, not starting with punctuation."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidArgumentError(
            f"principal name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


class Principal(msgspec.Struct, frozen=True):
    """An authenticated party: its public key, the id derived from it, its name and its kind."""

    id: str
    name: str
    kind: PrincipalKind
    public_key: bytes

    @classmethod
    def from_public_key(cls, public_key: bytes, name: str, kind: PrincipalKind) -> Principal:
        pid = principal_id_for(public_key)
        return cls(id=pid, name=validate_name(name), kind=kind, public_key=public_key)

    def describe(self) -> str:
        """``name (kind id)``, for error messages and logs."""
        return f"{self.name} ({self.kind} {self.id})"


class Signer(Protocol):
    """Something that holds an Ed25519 private key. :class:`feitian.security.KeyPair` is one."""

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        ...


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``. Never raises."""
    if len(public_key) != ED25519_PUBLIC_KEY_BYTES or len(signature) != ED25519_SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
