"""The shared HTTP gateway (feitian.rpc.gateway) with a tiny route set that is not Nuwa's, on a real aiohttp
server on 127.0.0.1: errors in the JSON form with each class's status, overload 503 + Retry-After, leader
redirects, body bounds, unknown routes, OpenAPI assembly. (Authentication with client certificates and
capabilities is exercised through Nuwa's routes in tests/integration/coord/test_rest_security.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from feitian.errors import ConflictError, ConflictReason, NotLeaderError
from feitian.rpc.gateway import GatewayLimits, HttpGateway, json_response, openapi_document, responses
from feitian.testing.waiting import wait_for_condition


class Shelf:
    """A toy service: items on a shelf, a route that blocks until released, one that is never the leader."""

    def __init__(self, limits: GatewayLimits) -> None:
        self.items: dict[str, Any] = {}
        self.leader = ""
        self.release = asyncio.Event()
        self.blocked = 0
        self.gateway = HttpGateway(limits=limits, leader_url=lambda: self.leader, openapi=self.openapi, label="shelf")
        r = self.gateway.app.router
        r.add_put("/v1/items/{name}", self.put)
        r.add_get("/v1/items/{name}", self.get)
        r.add_get("/v1/block", self.block)
        r.add_post("/v1/leader-only", self.leader_only)

    @staticmethod
    def openapi() -> dict[str, Any]:
        paths = {"/v1/items/{name}": {"get": {"responses": responses("200", "Item", "the item", "404")}}}
        return openapi_document(title="shelf", description="a toy", paths=paths, schemas={"Item": {"type": "object"}})

    async def put(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.gateway.context(request, None, None, "shelf.Put")  # no security: everyone passes
        body = await self.gateway.json_body(request, frozenset({"size", "version"}))
        if "version" in body and body["version"] != len(self.items.get(name, {})):
            raise ConflictError(f"put {name}: version mismatch", reason=ConflictReason.STALE_VERSION)
        self.items[name] = body
        return json_response({"name": name, **body}, 201)

    async def get(self, request: web.Request) -> web.Response:
        return json_response(self.items[request.match_info["name"]])  # KeyError: a bug, answered as 500

    async def block(self, request: web.Request) -> web.Response:
        self.blocked += 1
        await self.release.wait()
        return json_response({})

    async def leader_only(self, request: web.Request) -> web.Response:
        raise NotLeaderError("write: not the leader", leader_hint="tcp://127.0.0.1:1")


@pytest.fixture
async def shelf() -> AsyncIterator[tuple[Shelf, str]]:
    service = Shelf(GatewayLimits(max_requests=2, max_body_bytes=1024, body_timeout_s=0.5))
    url = await service.gateway.start("tcp://127.0.0.1:0")
    try:
        yield service, url
    finally:
        service.release.set()
        await service.gateway.stop()


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.request(method, url, allow_redirects=False, **kw) as response:
        return response.status, await response.json(), response.headers


async def test_routes_errors_and_bodies(shelf: tuple[Shelf, str]) -> None:
    service, url = shelf
    async with aiohttp.ClientSession() as http:
        status, body, _ = await _call(http, "PUT", url + "/v1/items/a", json={"size": 3})
        assert status == 201 and body == {"name": "a", "size": 3}
        # A FeitianError: its class's status, the JSON error form, the reason as its string value.
        status, body, _ = await _call(http, "PUT", url + "/v1/items/a", json={"version": 7})
        assert status == 409
        assert body["error"]["code"] == "conflict" and body["error"]["fields"] == {"reason": "stale_version"}
        # Unknown body fields are refused by name.
        status, body, _ = await _call(http, "PUT", url + "/v1/items/a", json={"sise": 3})
        assert status == 400 and "unknown field 'sise'" in body["error"]["message"]
        status, body, _ = await _call(http, "PUT", url + "/v1/items/a", data=b"{not json", headers=_JSON)
        assert status == 400 and "not JSON" in body["error"]["message"]
        # A body over max_body_bytes: 413 message_too_large with the limit.
        status, body, _ = await _call(http, "PUT", url + "/v1/items/a", json={"size": "x" * 2000})
        assert status == 413 and body["error"]["code"] == "message_too_large"
        assert body["error"]["fields"]["limit"] == 1024
        # Unknown routes and methods: the same JSON shape.
        status, body, _ = await _call(http, "GET", url + "/v1/nothing")
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body, headers = await _call(http, "DELETE", url + "/v1/items/a")
        assert status == 405 and "GET" in headers["Allow"]
        # A bug in a handler: 500 internal, naming the exception.
        status, body, _ = await _call(http, "GET", url + "/v1/items/missing")
        assert status == 500 and body["error"]["code"] == "internal" and "KeyError" in body["error"]["message"]
    assert service.items == {"a": {"size": 3}}


_JSON = {"Content-Type": "application/json"}


async def test_overload_is_503_with_retry_after(shelf: tuple[Shelf, str]) -> None:
    service, url = shelf
    async with aiohttp.ClientSession() as http:
        held = [asyncio.ensure_future(_call(http, "GET", url + "/v1/block")) for _ in range(2)]
        await wait_for_condition(lambda: service.blocked == 2, 10, "two requests in flight")
        status, body, headers = await _call(http, "GET", url + "/v1/items/a")
        assert status == 503 and body["error"]["code"] == "overloaded" and headers["Retry-After"] == "1"
        service.release.set()
        assert [status for status, _, _ in await asyncio.gather(*held)] == [200, 200]
        status, _, _ = await _call(http, "PUT", url + "/v1/items/b", json={})
        assert status == 201  # served again once the requests in flight finished


async def test_a_body_that_does_not_arrive_in_time_is_cut_off(shelf: tuple[Shelf, str]) -> None:
    service, url = shelf
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    try:
        head = "PUT /v1/items/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        writer.write(head.encode() + b'{"size": ')  # and nothing more
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.startswith(b"HTTP/1.1 504 "), status_line
        headers = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode().lower()
        length = int(headers.split("content-length:")[1].split("\r\n")[0])
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
        assert body["error"]["code"] == "deadline_exceeded" and "body_timeout_s" in body["error"]["message"]
    finally:
        writer.close()
    assert "slow" not in service.items


async def test_not_the_leader_redirects_when_the_leader_is_known(shelf: tuple[Shelf, str]) -> None:
    service, url = shelf
    async with aiohttp.ClientSession() as http:
        status, body, _ = await _call(http, "POST", url + "/v1/leader-only?x=1")
        assert status == 503 and body["error"]["fields"]["leader_hint"] == "tcp://127.0.0.1:1"
        service.leader = "http://127.0.0.1:9/"
        status, body, headers = await _call(http, "POST", url + "/v1/leader-only?x=1")
        assert status == 307 and headers["Location"] == "http://127.0.0.1:9/v1/leader-only?x=1"
        assert body["error"]["code"] == "not_leader"


async def test_the_openapi_document_is_assembled_with_the_shared_parts(shelf: tuple[Shelf, str]) -> None:
    _, url = shelf
    async with aiohttp.ClientSession() as http:
        status, document, _ = await _call(http, "GET", url + "/openapi.json")
    assert status == 200 and document["info"]["title"] == "shelf"
    assert set(document["components"]["schemas"]) == {"Item", "Error"}
    assert set(document["components"]["securitySchemes"]) == {"clusterCertificate", "capability", "token"}
    get = document["paths"]["/v1/items/{name}"]["get"]["responses"]
    assert set(get) == {"200", "400", "401", "403", "404", "405", "503", "504"}
    assert get["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
