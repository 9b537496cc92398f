"""Nuwa's REST API in a secured cluster (Zhongkui): mutual TLS with the cluster CA, then capabilities or tokens
checked per request against the same rules as the Kuafu methods."""

from __future__ import annotations

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


async def test_plaintext_and_foreign_certificates_are_refused(secured: Any, admin: Admin) -> None:
    _, urls = secured
    no_client_cert = ssl.create_default_context(cadata=admin.identity.ca_pem.decode())
    async with session(no_client_cert) as http:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionResetError)):
            await call(http, "GET", urls[1] + "/v1/status")
    async with session(False) as http:  # plain HTTP to an HTTPS port
        with pytest.raises(aiohttp.ClientError):
            await call(http, "GET", urls[1].replace("https://", "http://") + "/v1/status")


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
