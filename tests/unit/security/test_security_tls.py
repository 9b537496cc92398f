"""Mutual TLS over 127.0.0.1 with certificates from the cluster authority (real sockets, real handshakes)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from zk_fixtures import ALICE, AUTHORITY, MALLORY, SERVICE, assert_refused

from feitian.errors import UnauthenticatedError
from feitian.security import (
    ClusterAuthority,
    KeyPair,
    Principal,
    PrincipalKind,
    Reason,
    TlsIdentity,
    client_context,
    peer_principal,
    principal_of_certificate,
    save_private_key,
    server_context,
    verify_server,
)

NOW_S = datetime.datetime.now(datetime.UTC).timestamp()  # certificates are checked by OpenSSL's own clock
CA = ClusterAuthority.create(AUTHORITY, cluster_name="test", now_s=NOW_S)
ROGUE_CA = ClusterAuthority.create(KeyPair.from_seed(b"\x09" * 32, "rogue"), cluster_name="test", now_s=NOW_S)
SERVER = TlsIdentity.issue(CA, SERVICE, PrincipalKind.SERVICE, now_s=NOW_S)
CLIENT = TlsIdentity.issue(CA, ALICE, PrincipalKind.USER, now_s=NOW_S)
TIMEOUT_S = 10


@dataclass
class Server:
    port: int
    seen: list[Principal] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


@asynccontextmanager
async def serving(identity: TlsIdentity) -> AsyncIterator[Server]:
    loop = asyncio.get_running_loop()
    state = Server(port=0)
    loop.set_exception_handler(lambda _loop, ctx: state.errors.append(ctx.get("exception") or RuntimeError()))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        principal = peer_principal(writer.get_extra_info("ssl_object"))
        state.seen.append(principal)
        writer.write(principal.id.encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(identity))
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


async def call(port: int, identity: TlsIdentity, **kwargs: bool) -> tuple[Principal, bytes]:
    async with asyncio.timeout(TIMEOUT_S):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(identity, **kwargs), server_hostname="127.0.0.1"
        )
        try:
            server = verify_server(writer.get_extra_info("ssl_object"))
            return server, await reader.read()
        finally:
            writer.close()


async def test_both_sides_see_the_right_principal() -> None:
    async with serving(SERVER) as server:
        seen_server, reply = await call(server.port, CLIENT)
    assert (seen_server.id, seen_server.name, seen_server.kind) == (SERVICE.principal_id, "coord-1", "service")
    assert seen_server.public_key == SERVICE.public_key
    [seen_client] = server.seen
    assert (seen_client.id, seen_client.name, seen_client.kind) == (ALICE.principal_id, "alice", "user")
    assert reply == ALICE.principal_id.encode()


async def test_service_to_service_uses_the_same_checks() -> None:
    other = TlsIdentity.issue(CA, KeyPair.from_seed(b"\x0a" * 32, "dfs-master"), PrincipalKind.SERVICE, now_s=NOW_S)
    async with serving(SERVER) as server:
        await call(server.port, other)
    assert server.seen[0].kind is PrincipalKind.SERVICE and server.seen[0].name == "dfs-master"


async def test_client_with_a_certificate_from_another_ca_is_refused() -> None:
    rogue_client = TlsIdentity(
        key=MALLORY,
        certificate_pem=ROGUE_CA.issue_certificate_pem(MALLORY.public(), PrincipalKind.USER, now_s=NOW_S),
        ca_pem=CA.certificate_pem(),  # it trusts the real cluster, but the cluster does not trust it
    )
    async with serving(SERVER) as server:
        # TLS 1.3: the client finishes its side first; the server's refusal arrives as an alert or EOF.
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            _, reply = await call(server.port, rogue_client)
            if not reply:
                raise ConnectionError("closed by the server")
    assert server.seen == []


async def test_client_without_a_certificate_is_refused() -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(cadata=CA.certificate_pem().decode())
    async with serving(SERVER) as server:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            async with asyncio.timeout(TIMEOUT_S):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", server.port, ssl=anonymous, server_hostname="127.0.0.1"
                )
                reply = await reader.read()
                writer.close()
                if not reply:
                    raise ConnectionError("closed by the server")
    assert server.seen == []


@pytest.mark.parametrize("kind", ["self-signed", "other CA", "user certificate"])
async def test_client_refuses_servers_not_certified_as_services(kind: str) -> None:
    if kind == "self-signed":
        pem = ClusterAuthority.create(MALLORY, cluster_name="test", now_s=NOW_S).certificate_pem()
        impostor = TlsIdentity(key=MALLORY, certificate_pem=pem, ca_pem=CA.certificate_pem())
    elif kind == "other CA":
        impostor = TlsIdentity.issue(ROGUE_CA, MALLORY, PrincipalKind.SERVICE, now_s=NOW_S)
    else:  # a genuine cluster certificate, but a user's: OpenSSL refuses its purpose
        impostor = TlsIdentity.issue(CA, MALLORY, PrincipalKind.USER, now_s=NOW_S)
    async with serving(impostor) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await call(server.port, CLIENT)
    assert server.seen == []


async def test_client_checks_the_host_name() -> None:
    elsewhere = TlsIdentity.issue(CA, SERVICE, PrincipalKind.SERVICE, now_s=NOW_S, hosts=["10.9.9.9"])
    async with serving(elsewhere) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await call(server.port, CLIENT)
        await call(server.port, CLIENT, check_hostname=False)


def test_contexts_allow_tls13_only_and_no_tickets() -> None:
    server, client = server_context(SERVER), client_context(CLIENT)
    for context in (server, client):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_3
        assert context.verify_mode == ssl.CERT_REQUIRED
    assert server.num_tickets == 0
    assert client.check_hostname


def test_verify_server_refuses_users_and_unexpected_services() -> None:
    class FakeSsl:
        def __init__(self, identity: TlsIdentity) -> None:
            self.der = ssl.PEM_cert_to_DER_cert(identity.certificate_pem.decode())

        def getpeercert(self, binary_form: bool) -> bytes:
            return self.der

    with pytest.raises(UnauthenticatedError) as info:
        verify_server(FakeSsl(CLIENT))  # type: ignore[arg-type]
    assert_refused(info, Reason.NOT_A_SERVICE, UnauthenticatedError)
    assert verify_server(FakeSsl(SERVER), expected="coord-1").id == SERVICE.principal_id  # type: ignore[arg-type]
    with pytest.raises(UnauthenticatedError) as info:
        verify_server(FakeSsl(SERVER), expected="dfs-master")  # type: ignore[arg-type]
    assert_refused(info, Reason.UNEXPECTED_PEER, UnauthenticatedError)


def _variant(subject: x509.Name, key: KeyPair) -> x509.Certificate:
    """coord-1's certificate with another subject or key, signed by the real authority."""
    good = x509.load_pem_x509_certificate(SERVER.certificate_pem)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(good.issuer)
        .public_key(key.private_key.public_key())
        .serial_number(1)
        .not_valid_before(good.not_valid_before_utc)
        .not_valid_after(good.not_valid_after_utc)
        .add_extension(good.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=False)
        .sign(AUTHORITY.private_key, None)
    )


def test_certificates_that_do_not_name_a_principal_consistently() -> None:
    good = x509.load_pem_x509_certificate(SERVER.certificate_pem)
    assert principal_of_certificate(good).id == SERVICE.principal_id
    wrong_key = _variant(good.subject, MALLORY)  # Mallory's key under coord-1's principal URI
    no_kind = _variant(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coord-1")]), SERVICE)
    for cert in (wrong_key, no_kind):
        with pytest.raises(UnauthenticatedError) as info:
            principal_of_certificate(cert.public_bytes(serialization.Encoding.DER))
        assert_refused(info, Reason.BAD_CERTIFICATE, UnauthenticatedError)
    with pytest.raises(UnauthenticatedError):
        principal_of_certificate(b"not a certificate")


def test_identity_files_round_trip(tmp_path: Path) -> None:
    folder = tmp_path
    save_private_key(folder / "svc.key", SERVICE)
    (folder / "svc.crt").write_bytes(SERVER.certificate_pem)
    (folder / "ca.crt").write_bytes(CA.certificate_pem())
    loaded = TlsIdentity.load(folder / "svc.key", folder / "svc.crt", folder / "ca.crt")
    assert loaded.principal.id == SERVICE.principal_id
    assert ClusterAuthority.from_pem(AUTHORITY, CA.certificate_pem()).cluster_name == "test"
