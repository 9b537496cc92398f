"""The cluster authority as an X.509 certificate authority, for mutually authenticated TLS (ZK-1, ZK-4).

The authority's Ed25519 key (the same key that signs capabilities; the two signature formats cannot be
confused: X.509 signs DER that starts with ``0x30``, capabilities sign bytes that start with ``feitian-``)
self-signs a CA certificate and issues one certificate per principal. Certificates use the principal's own
Ed25519 identity key, so completing a TLS handshake proves possession of the identity key itself; Python's
``ssl`` with OpenSSL 1.1.1+ / 3.x handles Ed25519 certificates in TLS 1.3 (checked by the tests).

A principal certificate carries:

* subject ``CN=<name>, OU=<kind>, O=<cluster>``; ``kind`` is ``user`` or ``service``;
* a URI SAN ``feitian://principal/<principal id>``; the id must be the hash of the certificate's key;
* for services, DNS/IP SANs of the hosts it serves on (default ``localhost`` and ``127.0.0.1``), so clients
  can check host names;
* extended key usage ``clientAuth`` for users, ``serverAuth`` + ``clientAuth`` for services: OpenSSL refuses a
  user's certificate on a server during the handshake ("unsuitable certificate purpose").

Times are wall-clock seconds, passed in.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from feitian.errors import InvalidArgumentError
from feitian.security.core.identity import Principal, PrincipalKind, principal_id_for
from feitian.security.core.reasons import Reason, refusal
from feitian.security.keys import KeyPair, PublicKey

__all__ = [
    "DEFAULT_CA_VALIDITY_S",
    "DEFAULT_CERT_VALIDITY_S",
    "PRINCIPAL_URI_PREFIX",
    "ClusterAuthority",
    "authority_key_of",
    "principal_of_certificate",
]

PRINCIPAL_URI_PREFIX = "feitian://principal/"
DEFAULT_CA_VALIDITY_S = 10 * 365 * 86400
DEFAULT_CERT_VALIDITY_S = 30 * 86400
_BACKDATE_S = 300  # tolerate that much clock skew on not-valid-before
_DEFAULT_HOSTS = ("localhost", "127.0.0.1")


def _time(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class ClusterAuthority:
    """The authority key and its self-signed CA certificate."""

    __slots__ = ("certificate", "key")

    def __init__(self, key: KeyPair, certificate: x509.Certificate) -> None:
        cert_key = certificate.public_key()
        if not isinstance(cert_key, Ed25519PublicKey) or _raw(cert_key) != key.public_key:
            raise InvalidArgumentError("cluster authority: the CA certificate is not for this key")
        self.key = key
        self.certificate = certificate

    @classmethod
    def create(
        cls, key: KeyPair, *, cluster_name: str, now_s: float, validity_s: int = DEFAULT_CA_VALIDITY_S
    ) -> ClusterAuthority:
        """Self-sign a CA certificate for ``key`` (what ``feitian cluster up`` does once)."""
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"feitian authority {key.principal_id}"),
            ]
        )
        public = key.private_key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_time(now_s - _BACKDATE_S))
            .not_valid_after(_time(now_s + validity_s))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key.private_key, None)
        )
        return cls(key, cert)

    @classmethod
    def from_pem(cls, key: KeyPair, certificate_pem: bytes) -> ClusterAuthority:
        return cls(key, x509.load_pem_x509_certificate(certificate_pem))

    @property
    def public_key(self) -> bytes:
        """The raw authority key: what capability verifiers need."""
        return self.key.public_key

    @property
    def cluster_name(self) -> str:
        values = self.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(values[0].value) if values else ""

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_certificate(
        self,
        subject: PublicKey,
        kind: PrincipalKind,
        *,
        now_s: float,
        validity_s: int = DEFAULT_CERT_VALIDITY_S,
        hosts: Sequence[str] = _DEFAULT_HOSTS,
        serves: bool = False,
    ) -> x509.Certificate:
        """Issue the TLS certificate of principal ``subject`` (``hosts`` are used for services only).

        ``serves``: a user principal whose processes also serve each other (an application's master and workers,
        :class:`~feitian.security.kuafu.SamePrincipalServer`): its certificate may be used by a TLS server too.
        It stays a user's: clients of cluster services still refuse it as a server (they accept services only).
        """
        public = Ed25519PublicKey.from_public_bytes(subject.key)
        ca_public = self.key.private_key.public_key()
        uri = x509.UniformResourceIdentifier(PRINCIPAL_URI_PREFIX + subject.principal_id)
        san: list[x509.GeneralName] = [uri]
        if kind is PrincipalKind.SERVICE:
            san.extend(_host_name(h) for h in hosts)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if kind is PrincipalKind.SERVICE or serves:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.cluster_name or "feitian"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind.value),
                x509.NameAttribute(NameOID.COMMON_NAME, subject.name),
            ]
        )
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_time(now_s - _BACKDATE_S))
            .not_valid_after(_time(min(now_s + validity_s, self.certificate.not_valid_after_utc.timestamp())))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False)
            .sign(self.key.private_key, None)
        )

    def issue_certificate_pem(
        self,
        subject: PublicKey,
        kind: PrincipalKind,
        *,
        now_s: float,
        validity_s: int = DEFAULT_CERT_VALIDITY_S,
        hosts: Sequence[str] = _DEFAULT_HOSTS,
        serves: bool = False,
    ) -> bytes:
        cert = self.issue_certificate(subject, kind, now_s=now_s, validity_s=validity_s, hosts=hosts, serves=serves)
        return cert.public_bytes(serialization.Encoding.PEM)


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _as_certificate(certificate: x509.Certificate | bytes) -> x509.Certificate:
    if isinstance(certificate, x509.Certificate):
        return certificate
    return x509.load_der_x509_certificate(certificate)


def principal_of_certificate(certificate: x509.Certificate | bytes) -> Principal:
    """The principal a certificate names (DER bytes or a parsed certificate).

    Does **not** check the issuer's signature or the validity period: call it on a peer certificate the TLS
    handshake has already verified against the cluster CA. Raises UnauthenticatedError
    (``reason="bad_certificate"``) when the certificate does not name a feitian principal consistently.
    """
    try:
        cert = _as_certificate(certificate)
        public = cert.public_key()
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError(f"{type(public).__name__} key, expected Ed25519")
        key = _raw(public)
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        ids = [u[len(PRINCIPAL_URI_PREFIX) :] for u in uris if u.startswith(PRINCIPAL_URI_PREFIX)]
        if ids != [principal_id_for(key)]:
            raise ValueError("its principal URI does not match its key")
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        kinds = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        if len(names) != 1 or len(kinds) != 1:
            raise ValueError("expected exactly one CN (name) and one OU (kind)")
        return Principal.from_public_key(key, str(names[0].value), PrincipalKind(str(kinds[0].value)))
    except (ValueError, x509.ExtensionNotFound, InvalidArgumentError) as exc:
        raise refusal(Reason.BAD_CERTIFICATE, f"peer certificate: not a feitian principal ({exc})") from None


def authority_key_of(ca_certificate_pem: bytes) -> bytes:
    """The raw authority key (what capability and token verifiers need) from the cluster CA certificate."""
    try:
        public = x509.load_pem_x509_certificate(ca_certificate_pem).public_key()
    except ValueError as exc:
        raise InvalidArgumentError(f"cluster CA certificate: cannot parse ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise InvalidArgumentError("cluster CA certificate: not an Ed25519 authority key")
    return _raw(public)
