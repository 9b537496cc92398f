"""Mutually authenticated TLS 1.3 for every feitian connection (ZK-4).

Both ends present a certificate issued by the cluster authority (:mod:`feitian.security.ca`) and verify the
other's against the cluster CA only; the default trust store is never loaded, so nothing is trusted on first
use. The server requires a client certificate. The client additionally requires the server to be a *service*
principal: OpenSSL enforces it during the handshake through the certificate's extended key usage, and
:func:`verify_server` checks it again after the handshake (and, if asked, which service). Host names are
checked against the service certificate's DNS/IP SANs unless ``check_hostname=False``.

TLS 1.3 alone is allowed. Handshakes are not replayable (fresh ephemeral keys and randoms on both sides;
the client's CertificateVerify signs the whole transcript), 0-RTT is never enabled, and the server issues no
session tickets, so every connection runs a full mutual handshake. Afterwards records are AEAD-protected with
sequence numbers: tampering, reordering and replay inside a connection are detected by TLS.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from feitian.errors import ConfigError
from feitian.security.ca import DEFAULT_CERT_VALIDITY_S, ClusterAuthority, principal_of_certificate
from feitian.security.core.identity import Principal, PrincipalKind
from feitian.security.core.reasons import Reason, refusal
from feitian.security.keys import KeyPair, load_private_key

__all__ = ["TlsIdentity", "client_context", "peer_principal", "server_context", "verify_server"]

_DEFAULT_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """What one process needs for TLS: its key, its certificate and the cluster CA certificate (PEM)."""

    key: KeyPair
    certificate_pem: bytes
    ca_pem: bytes

    @classmethod
    def issue(
        cls,
        authority: ClusterAuthority,
        key: KeyPair,
        kind: PrincipalKind,
        *,
        now_s: float,
        validity_s: int = DEFAULT_CERT_VALIDITY_S,
        hosts: Sequence[str] = _DEFAULT_HOSTS,
        serves: bool = False,
    ) -> TlsIdentity:
        pem = authority.issue_certificate_pem(
            key.public(), kind, now_s=now_s, validity_s=validity_s, hosts=hosts, serves=serves
        )
        return cls(key=key, certificate_pem=pem, ca_pem=authority.certificate_pem())

    @classmethod
    def load(
        cls,
        key_path: str | os.PathLike[str],
        cert_path: str | os.PathLike[str],
        ca_path: str | os.PathLike[str],
    ) -> TlsIdentity:
        """Load from files; the key file is checked like :func:`~feitian.security.load_private_key` does."""
        key = load_private_key(key_path)
        try:
            return cls(key=key, certificate_pem=Path(cert_path).read_bytes(), ca_pem=Path(ca_path).read_bytes())
        except OSError as exc:
            raise ConfigError("load TLS identity", problems=[f"{exc.filename}: {exc.strerror}"]) from None

    @property
    def principal(self) -> Principal:
        return principal_of_certificate(_der(self.certificate_pem))


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))


def _base_context(protocol: int, identity: TlsIdentity) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cadata=identity.ca_pem.decode("ascii"))
    _load_chain(context, identity)
    return context


def _load_chain(context: ssl.SSLContext, identity: TlsIdentity) -> None:
    """``ssl`` only loads keys from files: write the key encrypted under a one-time in-memory password to a
    private temporary directory, load it, and delete it."""
    password = secrets.token_bytes(32)
    encrypted = identity.key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="feitian-tls-") as folder:  # mode 0700
        path = os.path.join(folder, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(identity.certificate_pem + b"\n" + encrypted)
        try:
            context.load_cert_chain(path, password=password)
        except ssl.SSLError as exc:
            raise ConfigError("TLS identity", problems=[f"certificate and key do not load: {exc}"]) from None


def server_context(identity: TlsIdentity) -> ssl.SSLContext:
    """A TLS 1.3 server context requiring a client certificate from the cluster CA; no session tickets."""
    context = _base_context(ssl.PROTOCOL_TLS_SERVER, identity)
    context.num_tickets = 0
    return context


def client_context(identity: TlsIdentity, *, check_hostname: bool = True) -> ssl.SSLContext:
    """A TLS 1.3 client context: present ``identity``, accept only cluster services as servers."""
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, identity)
    context.check_hostname = check_hostname
    return context


def peer_principal(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> Principal:
    """The authenticated principal at the other end of a completed handshake.

    With asyncio: ``peer_principal(writer.get_extra_info("ssl_object"))``.
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise refusal(Reason.MISSING, "TLS peer presented no certificate")
    return principal_of_certificate(der)


def verify_server(ssl_object: ssl.SSLObject | ssl.SSLSocket, *, expected: str | None = None) -> Principal:
    """Client side, after the handshake: the server must be a service (and ``expected``, by name or id)."""
    principal = peer_principal(ssl_object)
    if principal.kind is not PrincipalKind.SERVICE:
        raise refusal(Reason.NOT_A_SERVICE, f"server {principal.describe()} is not a cluster service")
    if expected is not None and expected not in (principal.name, principal.id):
        raise refusal(Reason.UNEXPECTED_PEER, f"server {principal.describe()} is not the expected service {expected!r}")
    return principal
