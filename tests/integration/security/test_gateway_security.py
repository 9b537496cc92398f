"""The shared HTTP gateway (feitian.rpc.gateway) with Zhongkui, in process over real sockets on 127.0.0.1 and a
toy route that is not Nuwa's: mutual TLS, capabilities in headers checked per operation, readable refusals."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from zk_world import GET_RULE, Get, Pki, guarded_server

from feitian.rpc.gateway import HttpGateway, json_response
from feitian.security import PrincipalKind, TlsIdentity
from feitian.security.tls import client_context, server_context

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def secured() -> AsyncIterator[tuple[Pki, str]]:
    pki = Pki()
    world = guarded_server(pki, "shelf")  # its guard; the Kuafu server itself is not started
    _, identity = pki.identity("shelf", PrincipalKind.SERVICE)
    gateway = HttpGateway(guard=world.guard, ssl_context=server_context(identity), label="shelf")

    async def get(request: web.Request) -> web.Response:
        req = Get("/" + request.match_info["path"])
        ctx = gateway.context(request, GET_RULE, req, "test.Get")
        return json_response({"reader": ctx.peer.name, "path": req.path})

    gateway.app.router.add_get("/v1/things/{path:.*}", get)
    url = await gateway.start("tcp://127.0.0.1:0")
    try:
        yield pki, url
    finally:
        await gateway.stop()


def _client_ssl(pki: Pki, who: TlsIdentity | None) -> ssl.SSLContext:
    if who is None:  # trusts the cluster CA, presents no certificate
        context = ssl.create_default_context(cadata=pki.ca.certificate_pem().decode())
        context.check_hostname = False
        return context
    return client_context(who, check_hostname=False)


async def _get(context: ssl.SSLContext, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.get(url, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_credentials_in_headers_are_checked_per_operation(secured: tuple[Pki, str]) -> None:
    pki, url = secured
    alice_key, alice = pki.identity("alice")
    # No client certificate: a 401 that says one is needed.
    status, body = await _get(_client_ssl(pki, None), url + "/v1/things/apps/a")
    assert status == 401 and body["error"]["fields"]["reason"] == "missing"
    assert "needs a client certificate" in body["error"]["message"]
    # A certificate but no capability: the guard's 401 (nothing presented).
    status, body = await _get(_client_ssl(pki, alice), url + "/v1/things/apps/a")
    assert status == 401 and body["error"]["fields"]["reason"] == "missing"
    assert "no capability presented" in body["error"]["message"]
    # A capability for coord:/apps in the header: served, as alice.
    chain = base64.b64encode(pki.chain(alice_key)).decode()
    status, body = await _get(_client_ssl(pki, alice), url + "/v1/things/apps/a", {"X-Feitian-Capability": chain})
    assert status == 200 and body == {"reader": "alice", "path": "/apps/a"}
    # ... which does not cover another path.
    status, body = await _get(_client_ssl(pki, alice), url + "/v1/things/etc/x", {"X-Feitian-Capability": chain})
    assert status == 403 and body["error"]["fields"]["reason"] == "not_granted"
    # Unreadable credentials: 401 malformed.
    status, body = await _get(_client_ssl(pki, alice), url + "/v1/things/apps/a", {"Authorization": "Basic x"})
    assert status == 401 and body["error"]["fields"]["reason"] == "malformed"
    status, body = await _get(_client_ssl(pki, alice), url + "/v1/things/apps/a", {"X-Feitian-Capability": "!!"})
    assert status == 401 and body["error"]["fields"]["reason"] == "malformed"
