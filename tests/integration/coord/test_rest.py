"""Nuwa's REST API on three real replica processes (insecure; test_rest_security.py covers Zhongkui): every
operation, redirects of writes to the leader, subscriptions by long poll and by stream, sessions — and every
response checked against the OpenAPI document the service serves."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import msgspec
import pytest
from rest_schema import OpenApi, SchemaError

from feitian.deploy.cluster import free_ports
from feitian.testing.coord import CoordReplicas
from feitian.testing.waiting import wait_for_condition

_prefixes = itertools.count(1)
NODES = "/v1/nodes/{path}"


def with_rest(replicas: CoordReplicas, scheme: str = "http") -> dict[int, str]:
    """Give each replica a REST port (fixed now, so each knows the others' URLs for redirects)."""
    ports = free_ports(len(replicas.ids))
    urls = {i: f"{scheme}://127.0.0.1:{port}" for i, port in zip(replicas.ids, ports, strict=True)}
    peers = {str(i): url for i, url in urls.items()}
    replicas.specs = [
        msgspec.structs.replace(
            spec, role_options={**spec.role_options, "rest": f"tcp://127.0.0.1:{port}", "rest_peers": peers}
        )
        for spec, port in zip(replicas.specs, ports, strict=True)
    ]
    return urls


class Rest:
    """A REST client for the tests that validates every JSON response against the OpenAPI document."""

    def __init__(self, http: aiohttp.ClientSession, urls: dict[int, str], api: OpenApi) -> None:
        self.http = http
        self.urls = urls
        self.api = api
        self.base = urls[1]

    async def call(
        self, method: str, path: str, template: str, *, at: int | None = None, redirects: bool = True, **kw: Any
    ) -> tuple[int, Any]:
        url = (self.urls[at] if at else self.base) + path
        async with self.http.request(method, url, allow_redirects=redirects, **kw) as response:
            raw = await response.read()
            content_type = response.content_type
            body: Any = json.loads(raw) if content_type == "application/json" else raw
            if content_type == "application/json":
                self.api.check_response(template, method, response.status, body, content_type)
            return response.status, body


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoordReplicas, dict[int, str]]]:
    replicas = CoordReplicas(tmp_path_factory.mktemp("nuwa-rest"), 3)
    urls = with_rest(replicas)
    replicas.start_all()
    try:
        yield replicas, urls
    finally:
        assert replicas.stop() == []


@pytest.fixture
async def rest(cluster: tuple[CoordReplicas, dict[int, str]]) -> AsyncIterator[Rest]:
    _replicas, urls = cluster
    async with aiohttp.ClientSession() as http:
        async with http.get(urls[1] + "/openapi.json") as response:
            assert response.status == 200
            api = OpenApi(await response.json())
        client = Rest(http, urls, api)

        async def leader_known() -> bool:
            status, body = await client.call("GET", "/v1/status", "/v1/status")
            return status == 200 and body["replica"]["leader_id"] != 0

        await wait_for_condition(leader_known, 20, "a leader")
        yield client


@pytest.fixture
def base() -> str:
    return f"/rest{next(_prefixes)}/"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_the_openapi_document_is_served_and_consistent(rest: Rest, cluster: Any) -> None:
    doc = rest.api.document
    assert doc["openapi"].startswith("3.1")
    rest.api.refs_resolve()
    operations = {op["operationId"] for item in doc["paths"].values() for op in item.values() if "operationId" in op}
    assert {"get", "create", "set", "delete", "txn", "watch", "createSession", "heartbeat", "status"} <= operations
    _, urls = cluster
    for i in urls:  # every replica serves the same document
        status, other = await rest.call("GET", "/openapi.json", "/openapi.json", at=i)
        assert status == 200 and other == doc
    with pytest.raises(SchemaError):  # the validator does refuse what the document does not allow
        rest.api.check_response(NODES, "GET", 200, {"stat": {}, "value": "x", "revision": 1}, "application/json")


async def test_files_directories_versions_and_errors(rest: Rest, base: str) -> None:
    status, created = await rest.call("POST", f"/v1/nodes{base}", NODES, json={})
    assert status == 201 and created["stat"]["path"] == base and created["result"] == "created"

    conf = f"{base}conf"
    status, created = await rest.call("POST", f"/v1/nodes{conf}", NODES, json={"value_text": "v1"})
    assert status == 201 and created["stat"]["version"] == 1
    status, got = await rest.call("GET", f"/v1/nodes{conf}", NODES)
    assert status == 200 and base64.b64decode(got["value"]) == b"v1" and got["stat"]["version"] == 1

    status, updated = await rest.call("PUT", f"/v1/nodes{conf}", NODES, json={"value": b64(b"v2"), "version": 1})
    assert status == 200 and updated["stat"]["version"] == 2
    status, error = await rest.call("PUT", f"/v1/nodes{conf}", NODES, json={"value_text": "v3", "version": 1})
    assert status == 409 and error["error"]["code"] == "conflict"
    assert (error["error"]["fields"]["expected"], error["error"]["fields"]["found"]) == (1, 2)

    status, error = await rest.call("POST", f"/v1/nodes{conf}", NODES, json={})
    assert status == 409 and error["error"]["code"] == "already_exists"
    status, error = await rest.call("GET", f"/v1/nodes{base}missing", NODES)
    assert status == 404 and error["error"]["code"] == "not_found"
    status, error = await rest.call("POST", f"/v1/nodes{base}bad", NODES, json={"value": "***"})
    assert status == 400 and "base64" in error["error"]["message"]
    status, error = await rest.call(
        "POST", f"/v1/nodes{base}bad", NODES, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and error["error"]["code"] == "invalid_argument"

    # Raw bytes in and out, and a sequential node.
    blob = bytes(range(256))
    status, _ = await rest.call(
        "PUT", f"/v1/nodes{conf}?version=2", NODES, data=blob, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 200
    async with rest.http.get(f"{rest.base}/v1/nodes{conf}?raw=true") as response:
        assert response.status == 200 and await response.read() == blob
        assert response.headers["X-Feitian-Version"] == "3"
    status, seq = await rest.call("POST", f"/v1/nodes{base}job-", NODES, json={"sequential": True})
    assert status == 201 and seq["stat"]["path"] == f"{base}job-0000000000"

    status, listing = await rest.call("GET", f"/v1/nodes{base}?values=true", NODES)
    assert status == 200
    assert [c["path"] for c in listing["children"]] == [conf, f"{base}job-0000000000"]
    assert [base64.b64decode(v) for v in listing["values"]] == [blob, b""]

    status, error = await rest.call("DELETE", f"/v1/nodes{conf}?version=1", NODES)
    assert status == 409
    status, deleted = await rest.call("DELETE", f"/v1/nodes{conf}?version=3", NODES)
    assert status == 200 and deleted["stat"]["version"] == 3
    status, _ = await rest.call("GET", f"/v1/nodes{conf}", NODES)
    assert status == 404


async def test_writes_at_a_follower_are_redirected_to_the_leader(rest: Rest, base: str, cluster: Any) -> None:
    _replicas, urls = cluster
    async with aiohttp.ClientSession() as http:
        for i, url in urls.items():
            async with http.get(url + "/v1/status") as response:
                status = await response.json()
            if status["replica"]["role"] == "follower":
                follower = i
            elif status["replica"]["role"] == "leader":
                leader = i
    status, error = await rest.call("POST", f"/v1/nodes{base}", NODES, at=follower, redirects=False, json={})
    assert status == 307 and error["error"]["code"] == "not_leader"
    async with rest.http.post(f"{urls[follower]}/v1/nodes{base}", json={}, allow_redirects=False) as response:
        assert response.headers["Location"] == f"{urls[leader]}/v1/nodes{base}"
    status, created = await rest.call("POST", f"/v1/nodes{base}", NODES, at=follower, json={})  # followed
    assert status == 201 and created["stat"]["path"] == base
    # Reads are linearizable on any replica: the follower sees the write at once.
    status, listing = await rest.call("GET", "/v1/nodes/", NODES, at=follower)
    assert status == 200 and base in [c["path"] for c in listing["children"]]


async def test_transactions_are_all_or_nothing(rest: Rest, base: str) -> None:
    await rest.call("POST", f"/v1/nodes{base}", NODES, json={})
    await rest.call("POST", f"/v1/nodes{base}a", NODES, json={"value_text": "1"})
    ops = [
        {"op": "check", "path": f"{base}a", "version": 1},
        {"op": "set", "path": f"{base}a", "value_text": "2"},
        {"op": "create", "path": f"{base}b", "value": b64(b"new")},
    ]
    status, committed = await rest.call("POST", "/v1/txn", "/v1/txn", json={"ops": ops})
    assert status == 200 and [r["result"] for r in committed["results"]] == ["checked", "updated", "created"]

    ops = [
        {"op": "delete", "path": f"{base}b"},
        {"op": "check", "path": f"{base}a", "version": 1},  # it is at 2 now: everything is undone
    ]
    status, error = await rest.call("POST", "/v1/txn", "/v1/txn", json={"ops": ops})
    assert status == 409 and error["error"]["fields"]["op_index"] == 1
    status, got = await rest.call("GET", f"/v1/nodes{base}b", NODES)
    assert status == 200 and base64.b64decode(got["value"]) == b"new"
    status, error = await rest.call("POST", "/v1/txn", "/v1/txn", json={"ops": [{"op": "rename"}]})
    assert status == 400


async def test_watch_by_long_poll_and_by_stream(rest: Rest, base: str) -> None:
    status, created = await rest.call("POST", f"/v1/nodes{base}", NODES, json={})
    since = created["revision"]

    async def poll() -> tuple[int, Any]:
        return await rest.call("GET", f"/v1/watch?path={base}&since={since}&timeout=10", "/v1/watch")

    waiting = asyncio.ensure_future(poll())
    status, made = await rest.call("POST", f"/v1/nodes{base}x", NODES, json={"value_text": "1"})
    status, reply = await waiting
    assert status == 200
    assert reply["events"] == [{"revision": made["revision"], "kind": "created", "path": f"{base}x"}]
    assert reply["through_revision"] >= made["revision"]

    # Nothing new: an empty batch after the timeout, through the current revision.
    status, reply = await rest.call("GET", f"/v1/watch?path={base}x&since={made['revision']}&timeout=0.2", "/v1/watch")
    assert status == 200 and reply["events"] == [] and reply["through_revision"] >= made["revision"]

    # A stream: one line per batch; three changes arrive in order.
    url = f"{rest.base}/v1/watch?path={base}&since={made['revision']}&stream=true"
    async with rest.http.get(url) as response:
        assert response.status == 200 and response.content_type == "application/x-ndjson"
        revisions = []
        for i in range(3):
            _, updated = await rest.call("PUT", f"/v1/nodes{base}x", NODES, json={"value_text": f"v{i}"})
            revisions.append(updated["revision"])
        seen: list[dict[str, Any]] = []
        while len(seen) < 3:
            line = await asyncio.wait_for(response.content.readline(), 10)
            batch = json.loads(line)
            rest.api.validate(batch, {"$ref": "#/components/schemas/WatchReply"})
            seen.extend(batch["events"])
        assert [(e["revision"], e["kind"]) for e in seen] == [(r, "changed") for r in revisions]

    status, _error = await rest.call("GET", f"/v1/watch?path={base}&mode=sideways", "/v1/watch")
    assert status == 400


async def test_sessions_own_ephemeral_nodes(rest: Rest, base: str) -> None:
    await rest.call("POST", f"/v1/nodes{base}", NODES, json={})
    status, session = await rest.call("POST", "/v1/sessions", "/v1/sessions", json={"ttl_ms": 5000})
    assert status == 201
    sid = session["session_id"]
    status, beat = await rest.call("POST", f"/v1/sessions/{sid}/heartbeat", "/v1/sessions/{id}/heartbeat")
    assert status == 200 and beat["session_id"] == sid
    status, created = await rest.call("POST", f"/v1/nodes{base}me", NODES, json={"ephemeral": True, "session_id": sid})
    assert status == 201 and created["stat"]["ephemeral_owner"] == sid
    status, closed = await rest.call("DELETE", f"/v1/sessions/{sid}", "/v1/sessions/{id}")
    assert status == 200 and closed["deleted"] == [f"{base}me"]
    status, _ = await rest.call("GET", f"/v1/nodes{base}me", NODES)
    assert status == 404
    status, error = await rest.call("POST", f"/v1/sessions/{sid}/heartbeat", "/v1/sessions/{id}/heartbeat")
    assert status == 410 and error["error"]["code"] == "session_expired"


async def test_retried_writes_apply_once(rest: Rest, base: str) -> None:
    await rest.call("POST", f"/v1/nodes{base}", NODES, json={})
    headers = {"X-Feitian-Client-Id": f"rest-test-{base}", "X-Feitian-Request-Seq": "1"}
    first = await rest.call("POST", f"/v1/nodes{base}seq-", NODES, json={"sequential": True}, headers=headers)
    again = await rest.call("POST", f"/v1/nodes{base}seq-", NODES, json={"sequential": True}, headers=headers)
    assert first == again and first[0] == 201
    _status, listing = await rest.call("GET", f"/v1/nodes{base}", NODES)
    assert len(listing["children"]) == 1


async def test_unknown_routes_get_the_json_error_shape(rest: Rest) -> None:
    for method, path, status in (("GET", "/v1/nope", 404), ("PATCH", "/v1/nodes/x", 405)):
        async with rest.http.request(method, rest.base + path) as response:
            assert response.status == status
            body = await response.json()
        rest.api.validate(body, {"$ref": "#/components/schemas/Error"})


async def test_status(rest: Rest, cluster: Any) -> None:
    _, urls = cluster
    roles = []
    for i in urls:
        status, body = await rest.call("GET", "/v1/status", "/v1/status", at=i)
        assert status == 200
        roles.append(body["replica"]["role"])
    assert sorted(roles) == ["follower", "follower", "leader"]


async def test_bad_input_is_refused_naming_it_and_changes_nothing(rest: Rest, base: str) -> None:
    conf = f"{base}conf"
    assert (await rest.call("POST", f"/v1/nodes{conf}", NODES, json={"value_text": "v1", "parents": True}))[0] == 201
    refusals: list[tuple[str, dict[str, Any] | bytes | None, str]] = [
        ("PUT", {"value_text": "typo", "versoin": 1}, "'versoin'"),  # a misspelt condition is not dropped
        ("PUT", {"valu": "eA=="}, "'valu'"),
        ("PUT", None, "the new value"),  # no body: no silent empty value
        ("PUT", {"value_text": "x", "version": 2**64}, "out of range"),
        ("PUT", b'{"value_text": "\xff\xfe"}', "not JSON"),
        ("PUT", {"value_text": "\ud800"}, "lone surrogate"),
    ]
    for method, body, message in refusals:
        kw: dict[str, Any] = {}
        if isinstance(body, dict):
            kw["data"] = json.dumps(body)  # json= would refuse the lone surrogate on this side
            kw["headers"] = {"Content-Type": "application/json"}
        elif isinstance(body, bytes):
            kw["data"] = body
            kw["headers"] = {"Content-Type": "application/json"}
        else:  # no body and no Content-Type at all (aiohttp would add application/octet-stream)
            kw["skip_auto_headers"] = ["Content-Type"]
        status, error = await rest.call(method, f"/v1/nodes{conf}", NODES, **kw)
        assert status == 400 and message in error["error"]["message"], (body, status, error)
    status, got = await rest.call("GET", f"/v1/nodes{conf}", NODES)
    assert status == 200 and base64.b64decode(got["value"]) == b"v1" and got["stat"]["version"] == 1
    empty = {"Content-Type": "application/octet-stream"}  # a raw body is the value, and may be empty
    status, updated = await rest.call("PUT", f"/v1/nodes{conf}?version=1", NODES, data=b"", headers=empty)
    assert status == 200 and updated["stat"]["value_bytes"] == 0
    both = await rest.call("PUT", f"/v1/nodes{conf}?version=2", NODES, json={"value_text": "x", "version": 2})
    assert both[0] == 400 and "not both" in both[1]["error"]["message"]
    status, error = await rest.call("DELETE", f"/v1/nodes{conf}?version={2**64}", NODES)
    assert status == 400 and "out of range" in error["error"]["message"]
    for op in ({"op": "check", "path": conf, "exists": 0}, {"op": "set", "path": conf, "expected_version": 1}):
        status, error = await rest.call("POST", "/v1/txn", "/v1/txn", json={"ops": [op]})
        assert status == 400, (op, error)
    status, error = await rest.call("POST", "/v1/txn", "/v1/txn", json={"ops": [], "extra": 1})
    assert status == 400 and "'extra'" in error["error"]["message"]
    huge = {"value": b64(b"x" * (9 << 20))}
    status, error = await rest.call("PUT", f"/v1/nodes{conf}", NODES, json=huge)
    assert (
        status == 413
        and error["error"]["code"] == "message_too_large"
        and "max_body_bytes" in error["error"]["message"]
    )
    status, error = await rest.call("GET", "/v1/nodes/a//b", NODES)
    assert status == 400 and "resource" not in error["error"]["message"]  # the path is named, not a capability
    assert (await rest.call("GET", f"/v1/nodes{conf}", NODES))[1]["stat"]["version"] == 2


async def test_a_watch_from_a_revision_that_does_not_exist_is_refused(rest: Rest, base: str) -> None:
    status, created = await rest.call("POST", f"/v1/nodes{base}w", NODES, json={"parents": True})
    revision = created["revision"]
    for since in (revision + 1000, -5):
        status, error = await rest.call("GET", f"/v1/watch?path={base}w&since={since}&timeout=1", "/v1/watch")
        assert status == 400, (since, error)
    status, reply = await rest.call("GET", f"/v1/watch?path={base}w&since={revision}&timeout=0", "/v1/watch")
    assert status == 200 and reply["events"] == []


async def test_405_names_the_allowed_methods_and_start_after_takes_a_name(rest: Rest, base: str) -> None:
    async with rest.http.request("PATCH", rest.base + "/v1/txn") as response:
        assert response.status == 405 and "POST" in response.headers["Allow"]
    for name in ("a", "b", "c"):
        await rest.call("POST", f"/v1/nodes{base}{name}", NODES, json={"parents": True})
    status, page = await rest.call("GET", f"/v1/nodes{base}?start_after=a", NODES)
    assert status == 200 and [c["path"] for c in page["children"]] == [f"{base}b", f"{base}c"]


async def test_a_long_poll_whose_client_left_frees_its_watch_slot(tmp_path: Any) -> None:
    """One replica allowing two watches: two clients start long polls and go away; the slots come back at once,
    not when their 60 s polls would have ended."""
    replicas = CoordReplicas(tmp_path / "nuwa", 1)
    urls = with_rest(replicas)
    replicas.specs = [
        msgspec.structs.replace(spec, role_options={**spec.role_options, "rest_limits": {"max_watches": 2}})
        for spec in replicas.specs
    ]
    await asyncio.to_thread(replicas.start_all)
    try:
        url = urls[1] + "/v1/watch?path=/&mode=subtree&since=0&timeout=60"
        async with aiohttp.ClientSession() as http:
            async with http.get(urls[1] + "/v1/watch?path=/&since=-1&timeout=0") as response:
                assert response.status == 200  # a leader: later polls wait instead of failing
            head = await (await http.get(urls[1] + "/v1/status")).json()
            url = urls[1] + f"/v1/watch?path=/&mode=subtree&since={head['revision']}&timeout=60"
            for _ in range(2):
                async with aiohttp.ClientSession() as leaving:
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(leaving.get(url), 0.5)  # a long poll in flight, then gone

            async def slot_free() -> bool:
                async with http.get(url.replace("timeout=60", "timeout=0")) as response:
                    return response.status == 200

            await wait_for_condition(slot_free, 10, "the slots of the polls whose clients left are free")
    finally:
        assert await asyncio.to_thread(replicas.stop) == []
