"""Mutual TLS between the processes of one principal (an application's master and workers): real Kuafu over
127.0.0.1. The server lets in only its own principal, the client talks only to its own principal."""

from __future__ import annotations

import time

import pytest

from feitian.errors import UnauthenticatedError
from feitian.rpc import Client, ClientConfig, Echo, Server, ServerConfig
from feitian.security import (
    ClientIdentity,
    ClusterAuthority,
    KeyPair,
    PrincipalKind,
    SamePrincipalClient,
    SamePrincipalServer,
    TlsIdentity,
)
from feitian.testing.rpc import serving

NOW_S = time.time()
CA = ClusterAuthority.create(KeyPair.generate("authority"), cluster_name="t", now_s=NOW_S)
APP = TlsIdentity.issue(CA, KeyPair.generate("app.1"), PrincipalKind.USER, now_s=NOW_S, serves=True)
OTHER = TlsIdentity.issue(CA, KeyPair.generate("app.2"), PrincipalKind.USER, now_s=NOW_S, serves=True)


def _client(tls: object) -> Client:
    return Client(ClientConfig(name="peer", connect_timeout_s=2.0), tls=tls)  # type: ignore[arg-type]


async def test_only_the_same_principal_gets_in_and_is_trusted() -> None:
    server = Server(ServerConfig(name="app-master"), security=SamePrincipalServer(APP))
    async with serving(server) as (_, address):
        async with _client(SamePrincipalClient(APP)) as ok:
            assert await ok.call(address, Echo(b"hi")) == b"hi"
        # Another application's processes: refused by the server (and by their own client check).
        async with _client(SamePrincipalClient(OTHER)) as other:
            with pytest.raises(UnauthenticatedError) as info:
                await other.call(address, Echo(b"hi"), timeout=5)
            assert info.value.fields["reason"] == "unexpected_peer"
        # A client of cluster services does not take the application's server for one: its certificate names no
        # host (the handshake fails), and were it to, it is a user's (not_a_service).
        async with _client(ClientIdentity(APP)) as standard:
            with pytest.raises(UnauthenticatedError) as info:
                await standard.call(address, Echo(b"hi"), timeout=5)
            assert info.value.fields["reason"] == "tls_handshake"


def test_a_server_of_another_principal_is_refused_by_the_client() -> None:
    import ssl

    der = ssl.PEM_cert_to_DER_cert(OTHER.certificate_pem.decode())
    with pytest.raises(UnauthenticatedError) as info:
        SamePrincipalClient(APP).check_server(der, "tcp://127.0.0.1:1")
    assert info.value.fields["reason"] == "unexpected_peer"
    SamePrincipalClient(APP).check_server(ssl.PEM_cert_to_DER_cert(APP.certificate_pem.decode()), "tcp://x:1")
