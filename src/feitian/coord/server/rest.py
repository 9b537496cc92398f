"""Nuwa's RESTful HTTP/JSON API (NUWA-12), served by every coord replica next to its Kuafu server.

Each route maps to the same operation as a ``coord.*`` Kuafu method and calls the replica's
:class:`~feitian.coord.server.service.CoordService` in process, after the same authorization rule
(``feitian.coord.messages``). The OpenAPI 3.1 document is served at ``GET /openapi.json`` (``rest_openapi.py``);
requests are decoded in ``rest_parse.py``; docs/coord.md, "REST API", has examples. Authentication, capability
checks, overload, leader redirects, body bounds, the JSON error form (each error class's ``http_status``) and the
OpenAPI frame are the shared HTTP gateway's (``feitian.rpc.gateway``); this module holds Nuwa's routes.

::

    GET    /v1/nodes/{path}          a file's value and stat; a directory (path ending "/") lists its entries
    POST   /v1/nodes/{path}          create (201)
    PUT    /v1/nodes/{path}          set, optionally only at ``version``
    DELETE /v1/nodes/{path}          delete, optionally only at ``version``
    POST   /v1/txn                   all-or-nothing transaction of check/create/set/delete operations
    GET    /v1/watch?path=&since=    subscription: long poll, or ``stream=true`` for newline-delimited JSON
    POST   /v1/sessions              sessions (for ephemeral nodes): create, heartbeat, close
    GET    /v1/status                the replica's state

**Authentication (Zhongkui).** A replica of a secured cluster serves HTTPS with *mutual* TLS 1.3: the client
presents a certificate issued by the cluster CA (its principal) and verifies the replica's against ``ca.pem``,
exactly like Kuafu. Rights come from credentials sent in headers, verified once per TLS connection and attached to
it (like Kuafu's presentations): ``X-Feitian-Capability: <base64 chain>`` (a line of the identity's ``.caps``
file; the header may repeat) and/or ``Authorization: Bearer <base64 token>`` (``feitian token mint --audience
<replica name>``; single use per replica, so one token serves one connection). Every request is then checked
against the operation's rule; refusals are 401 (cannot be trusted) or 403 (not allowed), with the Zhongkui reason.
A client without a certificate gets a 401 saying one is required, a plaintext request a readable 400
(``feitian.rpc.gateway.site``).
A replica without security serves plain HTTP, and every caller may do everything (as with Kuafu).

**Leaders.** Reads are linearizable on any replica (``stale=true`` skips the read barrier). Writes go to the
leader: a follower answers ``307 Temporary Redirect`` to the leader's REST URL when it knows it (``rest_peers``),
else ``503`` with ``leader_hint`` (the leader's Kuafu address).

**Bounds.** At most ``max_requests`` requests in flight (``503`` overloaded beyond), of which at most
``max_watches`` watches; request bodies up to ``max_body_bytes``; a long poll waits at most 60 s; a stream sends
a line at least every ``wait`` seconds (an empty batch) so either side notices a dead connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from feitian.coord.core import Selector
from feitian.coord.core.paths import validate_path
from feitian.coord.messages import (
    CREATE_RULE,
    DELETE_RULE,
    READ_RULE,
    SELECT_RULE,
    SESSION_RULE,
    SET_RULE,
    STATUS_RULE,
    TXN_RULE,
    CloseSessionRequest,
    CreateRequest,
    CreateSessionRequest,
    DeleteRequest,
    GetRequest,
    HeartbeatRequest,
    ListRequest,
    SetRequest,
    StatusRequest,
    TxnRequest,
    WatchReply,
    WatchRequest,
)
from feitian.coord.ops_json import VALUE_KEYS, in_range, op_of, opt_bool, opt_int, text, value_of
from feitian.coord.server.rest_openapi import openapi_document
from feitian.coord.server.rest_parse import SELECTOR_MODES, flag, float_param, int_param
from feitian.coord.server.service import MAX_WATCH_WAIT_MS, CoordService
from feitian.errors import FeitianError, InvalidArgumentError, OverloadedError
from feitian.rpc import CallContext
from feitian.rpc.gateway import GatewayLimits, HttpGateway, error_body, http_status_for, json_response
from feitian.security.core import MethodRule

__all__ = ["RestApi", "RestLimits", "http_status_for"]


class RestLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_requests: int = 10_000
    max_watches: int = 5_000
    max_body_bytes: int = 8 << 20  # a 4 MiB transaction in base64, with room for JSON
    body_timeout_s: float = 10.0  # to receive a whole request body (a client that trickles it is cut off)
    default_timeout_s: float = 10.0
    stream_keepalive_s: float = 15.0

    def gateway(self) -> GatewayLimits:
        """The bounds the HTTP gateway enforces (the rest are the watch routes' own)."""
        return GatewayLimits(
            max_requests=self.max_requests,
            max_body_bytes=self.max_body_bytes,
            body_timeout_s=self.body_timeout_s,
            default_timeout_s=self.default_timeout_s,
        )


def _builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)  # bytes -> base64 strings, structs -> dicts


def _event(event: Any) -> dict[str, Any]:
    return {"revision": event.revision, "kind": str(event.kind), "path": event.path}


def _watch_json(reply: WatchReply) -> dict[str, Any]:
    return {
        "events": [_event(e) for e in reply.events],
        "through_revision": reply.through_revision,
        "more": reply.more,
        "compacted": _builtins(reply.compacted) if reply.compacted is not None else None,
        "revision": reply.revision,
    }


# The JSON fields each body may carry (anything else is refused, naming it).
_CREATE_KEYS = frozenset({"ephemeral", "sequential", "parents", "session_id"}) | VALUE_KEYS
_SET_KEYS = frozenset({"version", "session_id"}) | VALUE_KEYS
_TXN_KEYS = frozenset({"ops", "session_id"})
_SESSION_KEYS = frozenset({"ttl_ms"})


class RestApi:
    """The REST server of one coord replica: Nuwa's routes on the shared HTTP gateway (``feitian.rpc.gateway``:
    authentication, capability checks, overload, leader redirects, body bounds, errors, OpenAPI).
    ``security``: the node's ``NodeSecurity`` (None: plain HTTP)."""

    def __init__(
        self,
        service: CoordService,
        *,
        security: Any = None,
        node_name: str = "coord",
        rest_peers: dict[int, str] | None = None,
        limits: RestLimits | None = None,
    ) -> None:
        self.service = service
        self.security = security
        self.node_name = node_name
        self.rest_peers = dict(rest_peers or {})
        self.limits = limits or RestLimits()
        ssl_context = None
        if security is not None:
            from feitian.security import server_context

            ssl_context = server_context(security.identity)  # a fresh one: the gateway relaxes its verify mode
        self.gateway = HttpGateway(
            guard=security.guard if security is not None else None,
            ssl_context=ssl_context,
            limits=self.limits.gateway(),
            leader_url=self._leader_url,
            openapi=openapi_document,
            label="rest",
            example_path="/v1/status",
            docs="docs/coord.md, REST API",
        )
        self.guard = self.gateway.guard
        self.app = self.gateway.app
        self._watches = 0
        self._routes()

    @property
    def url(self) -> str:
        return self.gateway.url

    def _routes(self) -> None:
        r = self.app.router
        r.add_get("/v1/status", self._status)
        r.add_get("/v1/nodes{path:/.*}", self._get)
        r.add_post("/v1/nodes{path:/.*}", self._create)
        r.add_put("/v1/nodes{path:/.*}", self._set)
        r.add_delete("/v1/nodes{path:/.*}", self._delete)
        r.add_post("/v1/txn", self._txn)
        r.add_get("/v1/watch", self._watch)
        r.add_post("/v1/sessions", self._create_session)
        r.add_post("/v1/sessions/{id}/heartbeat", self._heartbeat)
        r.add_delete("/v1/sessions/{id}", self._close_session)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, listen: str) -> str:
        """Serve on ``listen`` (``tcp://host:port``; port 0 picks one); returns the base URL."""
        return await self.gateway.start(listen)

    async def stop(self) -> None:
        await self.gateway.stop()

    # -- the request path ------------------------------------------------------------------------------------

    def _leader_url(self) -> str:
        """The leader's REST base URL, when this replica knows where that is."""
        hint = self.service.replica.leader_address
        if not hint:
            return ""
        for replica_id, address in self.service.replica.config.peers.items():
            if address == hint and replica_id in self.rest_peers:
                return self.rest_peers[replica_id]
        return ""

    def _authorize(self, request: web.Request, rule: MethodRule[Any] | None, req: Any, method: str) -> None:
        self.gateway.authorize(request, rule, req, method)

    def _context(
        self, request: web.Request, rule: MethodRule[Any] | None, req: Any, method: str, timeout_s: float | None = None
    ) -> CallContext:
        return self.gateway.context(request, rule, req, method, timeout_s)

    async def _body(self, request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
        return await self.gateway.json_body(request, allowed)

    def _path(self, op: str, path: str) -> str:
        """A node path, checked before anything else sees it (authorization would name the resource instead)."""
        validate_path(op, text(path, f"{op} path"), self.service.sm.limits)
        return path

    @staticmethod
    def _dedupe(request: web.Request) -> dict[str, Any]:
        """Retried writes: ``X-Feitian-Client-Id`` + ``X-Feitian-Request-Seq`` (docs/coord.md, Retried writes)."""
        client_id = request.headers.get("X-Feitian-Client-Id", "")
        seq = request.headers.get("X-Feitian-Request-Seq", "")
        if not client_id and not seq:
            return {}
        try:
            number = int(seq)
        except ValueError:
            raise InvalidArgumentError(f"X-Feitian-Request-Seq {seq!r}: expected an integer") from None
        return {
            "client_id": text(client_id, "X-Feitian-Client-Id"),
            "request_seq": in_range(number, "X-Feitian-Request-Seq"),
        }

    # -- handlers --------------------------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        req = StatusRequest()
        ctx = self._context(request, STATUS_RULE, req, "coord.Status")
        return json_response(_builtins(await self.service.status(ctx, req)))

    async def _get(self, request: web.Request) -> web.StreamResponse:
        path = self._path("get", request.match_info["path"])
        stale = flag(request, "stale")
        if path.endswith("/"):
            start_after = text(request.query.get("start_after", ""), "start_after")
            if start_after and not start_after.startswith("/"):
                start_after = path + start_after  # a name in the directory
            list_req = ListRequest(
                path,
                start_after=start_after,
                limit=int_param(request, "limit", 0) or 0,
                values=flag(request, "values"),
                stale=stale,
            )
            ctx = self._context(request, READ_RULE, list_req, "coord.List")
            page = await self.service.list(ctx, list_req)
            out = _builtins(page)
            if not list_req.values:
                out.pop("values", None)
            return json_response(out)
        req = GetRequest(path, stale)
        ctx = self._context(request, READ_RULE, req, "coord.Get")
        result = await self.service.get(ctx, req)
        if flag(request, "raw"):
            headers = {
                "X-Feitian-Version": str(result.stat.version),
                "X-Feitian-Mod-Revision": str(result.stat.mod_revision),
                "X-Feitian-Revision": str(result.revision),
            }
            return web.Response(body=result.value, content_type="application/octet-stream", headers=headers)
        return json_response(_builtins(result))

    async def _create(self, request: web.Request) -> web.Response:
        path = self._path("create", request.match_info["path"])
        # Authorized on the path before the body is read (the rule depends on the path only): a caller without the
        # right sends nothing big. The deadline starts once the body is in.
        self._authorize(request, CREATE_RULE, CreateRequest(path=path), "coord.Create")
        body = await self._body(request, _CREATE_KEYS)
        what = f"create {path}"
        req = CreateRequest(
            path=path,
            value=value_of(body, what),
            ephemeral=opt_bool(body, "ephemeral", what),
            sequential=opt_bool(body, "sequential", what),
            parents=opt_bool(body, "parents", what),
            session_id=opt_int(body, "session_id", what) or 0,
            **self._dedupe(request),
        )
        ctx = self._context(request, CREATE_RULE, req, "coord.Create")
        return json_response(_builtins(await self.service.create(ctx, req)), 201)

    async def _set(self, request: web.Request) -> web.Response:
        path = self._path("set", request.match_info["path"])
        self._authorize(request, SET_RULE, SetRequest(path=path, value=b""), "coord.Set")
        body = await self._body(request, _SET_KEYS)
        what = f"set {path}"
        if not VALUE_KEYS & set(body):
            raise InvalidArgumentError(
                f"{what}: the body must give the new value", hint='value (base64) or value_text; "" for empty'
            )
        version = opt_int(body, "version", what)
        if "version" in request.query:
            if version is not None:
                raise InvalidArgumentError(f"{what}: give version in the body or the query, not both")
            version = int_param(request, "version")
        req = SetRequest(
            path=path,
            value=value_of(body, what),
            expected_version=version,
            session_id=opt_int(body, "session_id", what) or 0,
            **self._dedupe(request),
        )
        ctx = self._context(request, SET_RULE, req, "coord.Set")
        return json_response(_builtins(await self.service.set(ctx, req)))

    async def _delete(self, request: web.Request) -> web.Response:
        path = self._path("delete", request.match_info["path"])
        req = DeleteRequest(path=path, expected_version=int_param(request, "version"), **self._dedupe(request))
        ctx = self._context(request, DELETE_RULE, req, "coord.Delete")
        return json_response(_builtins(await self.service.delete(ctx, req)))

    async def _txn(self, request: web.Request) -> web.Response:
        body = await self._body(request, _TXN_KEYS)
        items = body.get("ops")
        if not isinstance(items, list) or not items:
            raise InvalidArgumentError("txn: ops must be a non-empty list")
        ops = tuple(op_of(item, i) for i, item in enumerate(items))
        for i, op in enumerate(ops):
            self._path(f"txn op {i}", op.path)
        req = TxnRequest(ops=ops, session_id=opt_int(body, "session_id", "txn") or 0, **self._dedupe(request))
        ctx = self._context(request, TXN_RULE, req, "coord.Txn")
        return json_response(_builtins(await self.service.txn(ctx, req)))

    # -- sessions --------------------------------------------------------------------------------------------

    async def _create_session(self, request: web.Request) -> web.Response:
        body = await self._body(request, _SESSION_KEYS)
        ttl_ms = opt_int(body, "ttl_ms", "create session")
        if ttl_ms is None:
            raise InvalidArgumentError("create session: ttl_ms is required")
        req = CreateSessionRequest(ttl_ms=ttl_ms, **self._dedupe(request))
        ctx = self._context(request, SESSION_RULE, req, "coord.CreateSession")
        return json_response(_builtins(await self.service.create_session(ctx, req)), 201)

    def _session_id(self, request: web.Request) -> int:
        raw = request.match_info["id"]
        try:
            return in_range(int(raw, 0), "session id")
        except ValueError:
            raise InvalidArgumentError(f"session id {raw!r}: expected an integer") from None

    async def _heartbeat(self, request: web.Request) -> web.Response:
        req = HeartbeatRequest(self._session_id(request))
        ctx = self._context(request, SESSION_RULE, req, "coord.Heartbeat")
        return json_response(_builtins(await self.service.heartbeat(ctx, req)))

    async def _close_session(self, request: web.Request) -> web.Response:
        req = CloseSessionRequest(session_id=self._session_id(request), **self._dedupe(request))
        ctx = self._context(request, SESSION_RULE, req, "coord.CloseSession")
        return json_response(_builtins(await self.service.close_session(ctx, req)))

    # -- subscriptions ---------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        path = request.query.get("path", "")
        if not path:
            raise InvalidArgumentError("watch: the query parameter path is required", hint="path=/apps/ for example")
        path = self._path("watch", path)
        mode = request.query.get("mode") or ("subtree" if path.endswith("/") else "node")
        if mode not in SELECTOR_MODES:
            raise InvalidArgumentError(f"watch: mode must be node, children or subtree, got {mode!r}")
        selector = SELECTOR_MODES[mode](path)
        since = int_param(request, "since", -1, minimum=-1)
        assert since is not None
        wait_s = min(float_param(request, "timeout", 30.0), MAX_WATCH_WAIT_MS / 1000)
        stream = flag(request, "stream")
        if self._watches >= self.limits.max_watches:
            raise OverloadedError(f"watch: {self._watches} watches in flight (max_watches)")
        self._watches += 1
        try:
            if not stream:
                req = WatchRequest(selector, since, int(wait_s * 1000))
                ctx = self._context(request, SELECT_RULE, req, "coord.Watch", timeout_s=wait_s + 5)
                return json_response(_watch_json(await self.service.watch(ctx, req)))
            return await self._stream(request, selector, since)
        finally:
            self._watches -= 1

    async def _stream(self, request: web.Request, selector: Selector, since: int) -> web.StreamResponse:
        """Newline-delimited JSON: one line per batch of events, an empty batch at least every keep-alive."""
        keepalive_s = self.limits.stream_keepalive_s
        first = WatchRequest(selector, since, 0)
        ctx = self._context(request, SELECT_RULE, first, "coord.Watch", timeout_s=keepalive_s + 5)
        reply = await self.service.watch(ctx, first)  # errors before the stream starts get a proper status
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while True:
                await response.write(msgspec.json.encode(_watch_json(reply)) + b"\n")
                if reply.compacted is not None or self.gateway.closing.is_set():
                    break  # the subscriber must reload, then watch again from the reload's revision
                req = WatchRequest(selector, reply.through_revision, int(keepalive_s * 1000))
                try:  # the caller's rights are checked again for every poll (a revocation ends the stream)
                    ctx = self._context(request, SELECT_RULE, req, "coord.Watch", timeout_s=keepalive_s + 5)
                except FeitianError as exc:
                    await response.write(msgspec.json.encode(error_body(exc)) + b"\n")
                    break
                polling = asyncio.ensure_future(self.service.watch(ctx, req))
                closing = asyncio.ensure_future(self.gateway.closing.wait())
                try:
                    await asyncio.wait({polling, closing}, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when the subscriber left and this handler is cancelled: nothing outlives it
                    for pending in (polling, closing):
                        pending.cancel()
                    await asyncio.gather(polling, closing, return_exceptions=True)
                if polling.cancelled():  # the server is stopping: end the stream cleanly
                    break
                try:
                    reply = polling.result()
                except FeitianError as exc:  # e.g. no leader for a while: tell the subscriber, and end
                    await response.write(msgspec.json.encode(error_body(exc)) + b"\n")
                    break
            await response.write_eof()
        except ConnectionError:  # the subscriber went away
            pass
        return response
