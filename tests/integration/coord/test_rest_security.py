"""Nuwa's REST API in a secured cluster (Zhongkui): mutual TLS with the cluster CA, then capabilities or tokens
checked per request against the same rules as the Kuafu methods."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from rest_schema import OpenApi
from test_rest import NODES, with_rest

from feitian.security import CapabilityChain, TlsIdentity, client_context
from feitian.security.authority.cluster import ClusterSecurity
from feitian.security.core import Right, mint_token
from feitian.security.keys import load_private_key, new_nonce
from feitian.testing.coord import CoordReplicas
from feitian.testing.waiting import wait_for_condition


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoordReplicas, dict[int, str]]]:
    replicas = CoordReplicas(tmp_path_factory.mktemp("nuwa-rest-secure"), 3, secure=True)
    urls = with_rest(replicas, "https")
    replicas.start_all()
    try:
        yield replicas, urls
    finally:
        assert replicas.stop() == []


class Admin:
    def __init__(self, replicas: CoordReplicas) -> None:
        files = replicas.cluster.security.identity("admin")
        self.files = files
        self.identity = TlsIdentity.load(files.key, files.cert, files.ca)
        self.ssl = client_context(self.identity)
        self.capabilities = files.read_capabilities()
        self.capability_header = {"X-Feitian-Capability": base64.b64encode(self.capabilities[0]).decode()}

    def token(self, audience: str, resources: list[str], rights: list[Right]) -> str:
        minted = mint_token(
            load_private_key(self.files.key),
            CapabilityChain.from_bytes(self.capabilities[0]),
            audience=audience,
            resources=resources,
            rights=rights,
            now_ns=time.time_ns(),
            nonce=new_nonce(),
        )
        return base64.b64encode(minted.to_bytes()).decode()


@pytest.fixture
async def admin(secured: tuple[CoordReplicas, dict[int, str]]) -> AsyncIterator[Admin]:
    replicas, urls = secured
    who = Admin(replicas)

    async def ready() -> bool:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=who.ssl)) as http,
            http.get(urls[1] + "/v1/status", headers=who.capability_header) as response,
        ):
            return response.status == 200 and (await response.json())["replica"]["leader_id"] != 0

    await wait_for_condition(ready, 30, "a leader, over HTTPS")
    yield who


def session(ssl_context: ssl.SSLContext | bool) -> aiohttp.ClientSession:
    """A fresh connection pool: credentials attach to a TLS connection, so each test controls its own."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context, force_close=False, limit=1))


async def call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as response:
        body = await response.json() if response.content_type == "application/json" else await response.read()
        return response.status, body


async def test_capabilities_over_mutual_tls(secured: Any, admin: Admin) -> None:
    _, urls = secured
    async with session(admin.ssl) as http:
        api = OpenApi((await call(http, "GET", urls[1] + "/openapi.json", headers=admin.capability_header))[1])
        # Credentials are checked before anything runs: a certificate alone grants nothing.
        status, error = await call(http, "GET", urls[1] + "/v1/nodes/")
        assert status == 401 and error["error"]["fields"]["reason"] == "missing"
        api.check_response(NODES, "GET", status, error, "application/json")
        # With the admin's capability (admin on *), attached to this connection once.
        status, _ = await call(
            http, "POST", urls[1] + "/v1/nodes/secure", json={"value_text": "x"}, headers=admin.capability_header
        )
        assert status in (201, 409)
        status, got = await call(http, "GET", urls[1] + "/v1/nodes/secure")  # same connection: no header needed
        assert status == 200 and base64.b64decode(got["value"]) in (b"x", b"y")
        api.check_response(NODES, "GET", status, got, "application/json")
        # The node records the authenticated principal as the creator.
        assert got["stat"]["creator"].startswith(f"admin:{admin.identity.principal.id}")


async def test_plaintext_and_foreign_certificates_are_refused(
    secured: Any, admin: Admin, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 16, friction 6: a request that cannot be served is told why, in a form its client can read, instead
    of a reset connection (curl exit 56)."""
    _, urls = secured
    # TLS without a client certificate: the handshake completes, and every request gets a 401 saying why.
    no_client_cert = ssl.create_default_context(cadata=admin.identity.ca_pem.decode())
    async with session(no_client_cert) as http:
        for path in ("/v1/status", "/openapi.json", "/v1/nodes/"):
            status, error = await call(http, "GET", urls[1] + path)
            assert status == 401, (path, error)
            assert error["error"]["fields"]["reason"] == "missing"
            assert "needs a client certificate (mutual TLS)" in error["error"]["message"]
            assert "--cert" in error["error"]["hint"]
    # Plain HTTP to the HTTPS port: a plain-text 400 naming the scheme, on the same connection.
    plain_url = urls[1].replace("https://", "http://")
    async with session(False) as http, http.get(plain_url + "/v1/status") as response:
        assert response.status == 400 and response.content_type == "text/plain"
        text = await response.text()
        assert "this port speaks HTTPS with client certificates" in text and urls[1] in text
    # The same with a raw socket: the whole request is read before the answer, so the close is not a reset.
    reader, writer = await asyncio.open_connection("127.0.0.1", int(urls[1].rsplit(":", 1)[1]))
    writer.write(b"POST /v1/nodes/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"v" * 5000)
    await writer.drain()
    answer = await reader.read()  # until the server closes: no ConnectionResetError
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"speaks HTTPS" in answer
    writer.close()
    # A certificate from another CA is still refused during the handshake.
    other = ClusterSecurity(tmp_path_factory.mktemp("other-ca"))
    other.create("other", [], tmp_path_factory.mktemp("other-authority"))
    files = other.identity("admin")
    foreign = client_context(TlsIdentity.load(files.key, files.cert, admin.files.ca))
    async with session(foreign) as http:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionResetError)):
            await call(http, "GET", urls[1] + "/v1/status")
    # The admin is served as before.
    async with session(admin.ssl) as http:
        status, _ = await call(http, "GET", urls[1] + "/v1/status", headers=admin.capability_header)
        assert status == 200
    # And the replica said what it refused, and why.
    replicas, _ = secured
    for line in (
        "rest: refused GET /v1/status from 127.0.0.1: no client certificate",
        "rest: refused a plaintext request from 127.0.0.1:",
        "rest: TLS handshake from 127.0.0.1:",  # the foreign certificate (logged as the server sees it fail)
    ):
        await wait_for_condition(lambda line=line: line in replicas.log(1), 10, f"the log line {line!r}")


async def test_a_capability_held_by_someone_else_is_refused(secured: Any, admin: Admin) -> None:
    replicas, urls = secured
    stolen = replicas.cluster.security.identity("coord-2").read_capabilities()[0]
    async with session(admin.ssl) as http:
        status, error = await call(
            http,
            "GET",
            urls[1] + "/v1/nodes/",
            headers={"X-Feitian-Capability": base64.b64encode(stolen).decode()},
        )
        assert status == 403 and error["error"]["fields"]["reason"] == "wrong_holder"


async def test_tokens_are_scoped_and_single_use(secured: Any, admin: Admin) -> None:
    _, urls = secured
    async with session(admin.ssl) as http:
        await call(http, "POST", urls[1] + "/v1/nodes/pub/", json={}, headers=admin.capability_header)
        await call(http, "POST", urls[1] + "/v1/nodes/pub/x", json={"value_text": "1"}, headers=admin.capability_header)
    token = admin.token("coord-2", ["coord:/pub"], [Right.READ])
    bearer = {"Authorization": f"Bearer {token}"}
    async with session(admin.ssl) as http:
        status, got = await call(http, "GET", urls[2] + "/v1/nodes/pub/x", headers=bearer)
        assert status == 200 and base64.b64decode(got["value"]) == b"1"
        # The token reads /pub only, and only reads.
        status, error = await call(http, "PUT", urls[2] + "/v1/nodes/pub/x", json={"value_text": "2"}, headers=bearer)
        assert status == 403 and error["error"]["fields"]["reason"] == "not_granted"
        status, error = await call(http, "GET", urls[2] + "/v1/nodes/", headers=bearer)
        assert status == 403
    async with session(admin.ssl) as http:  # a new connection: the token was used already
        status, error = await call(http, "GET", urls[2] + "/v1/nodes/pub/x", headers=bearer)
        assert status == 401 and error["error"]["fields"]["reason"] == "replayed"
    other = admin.token("coord-1", ["coord:/pub"], [Right.READ])  # minted for another replica
    async with session(admin.ssl) as http:
        status, error = await call(
            http, "GET", urls[2] + "/v1/nodes/pub/x", headers={"Authorization": f"Bearer {other}"}
        )
        assert status == 401 and error["error"]["fields"]["reason"] == "wrong_audience"
