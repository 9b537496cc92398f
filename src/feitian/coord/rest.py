"""Nuwa's RESTful HTTP/JSON API (NUWA-12), served by every coord replica next to its Kuafu server.

Each route maps to the same operation as a ``coord.*`` Kuafu method and calls the replica's
:class:`~feitian.coord.service.CoordService` in process, after the same authorization rule
(``feitian.coord.messages``). The OpenAPI 3.1 document is served at ``GET /openapi.json`` (``rest_openapi.py``);
requests are decoded in ``rest_parse.py``; docs/coord.md, "REST API", has examples.

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
(``rest_site.py``).
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
import base64
import binascii
import hashlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
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
from feitian.coord.ops_json import VALUE_KEYS, in_range, only, op_of, opt_bool, opt_int, text, value_of
from feitian.coord.rest_openapi import openapi_document
from feitian.coord.rest_parse import SELECTOR_MODES, flag, float_param, int_param
from feitian.coord.rest_site import TlsSite
from feitian.coord.service import MAX_WATCH_WAIT_MS, CoordService
from feitian.errors import (
    DeadlineExceededError,
    FeitianError,
    InternalError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotLeaderError,
    OverloadedError,
    UnauthenticatedError,
)
from feitian.rpc import CallContext, PeerInfo, TcpAddress, parse_address
from feitian.security.core import MethodRule

log = logging.getLogger(__name__)

__all__ = ["HTTP_STATUS", "RestApi", "RestLimits", "http_status_for"]

SHUTDOWN_S = 2.0


class RestLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_requests: int = 10_000
    max_watches: int = 5_000
    max_body_bytes: int = 8 << 20  # a 4 MiB transaction in base64, with room for JSON
    body_timeout_s: float = 10.0  # to receive a whole request body (a client that trickles it is cut off)
    default_timeout_s: float = 10.0
    stream_keepalive_s: float = 15.0


# Error code -> HTTP status (the JSON body carries the code, message, hint and fields).
HTTP_STATUS: dict[str, int] = {
    "invalid_argument": 400,
    "config": 400,
    "message_too_large": 413,
    "not_found": 404,
    "already_exists": 409,
    "conflict": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "unavailable": 503,
    "not_leader": 503,
    "connection_lost": 503,
    "overloaded": 503,
    "deadline_exceeded": 504,
    "cancelled": 499,
    "session_expired": 410,
    "data_corruption": 500,
    "protocol": 500,
    "internal": 500,
}


def http_status_for(error: FeitianError) -> int:
    return HTTP_STATUS.get(error.code, 500)


def _error_body(error: FeitianError) -> dict[str, Any]:
    fields = {k: v for k, v in error.fields.items() if isinstance(v, str | int | float | bool | None | list | dict)}
    return {"error": {"code": error.code, "message": error.message, "hint": error.hint, "fields": fields}}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status, content_type="application/json", headers=headers)


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


# -- callers ------------------------------------------------------------------------------------------------------


class _Caller:
    """The security state of one HTTP connection: its principal and the credentials it has presented."""

    __slots__ = ("conn", "peer", "presented")

    def __init__(self, peer: PeerInfo, conn: Any) -> None:
        self.peer = peer
        self.conn = conn  # a feitian.security.guard.ConnectionSecurity, or None without security
        self.presented: set[bytes] = set()


class RestApi:
    """The REST server of one coord replica. ``security``: the node's ``NodeSecurity`` (None: plain HTTP)."""

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
        self.guard = security.guard if security is not None else None
        self.node_name = node_name
        self.rest_peers = dict(rest_peers or {})
        self.limits = limits or RestLimits()
        self.url = ""
        self._callers: dict[int, tuple[asyncio.BaseTransport | None, _Caller]] = {}  # id(transport) -> state
        self._sweep_at = 1024
        self._requests = 0
        self._watches = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.app = web.Application(client_max_size=self.limits.max_body_bytes, middlewares=[self._middleware])
        self._routes()

    def _routes(self) -> None:
        r = self.app.router
        r.add_get("/openapi.json", self._openapi)
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
        address = parse_address(listen)
        if not isinstance(address, TcpAddress):
            raise InvalidArgumentError(f"rest listen address must be tcp://host:port, got {listen!r}")
        # On stop, open long polls and streams get SHUTDOWN_S to end before their connections are closed.
        # A client that goes away cancels its request's handler: a long poll frees its watch slot at once.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S, handler_cancellation=True
        )
        await self._runner.setup()
        if self.security is not None:
            from feitian.security.tls import server_context

            ssl_context = server_context(self.security.identity)
            # Asked for, not insisted on: a client without a certificate gets a 401 saying so (the middleware),
            # not a bare handshake failure. One that is presented must still come from the cluster's CA.
            ssl_context.verify_mode = ssl.CERT_OPTIONAL
            tls_site = TlsSite(self._runner, address.host, address.port, ssl_context)
            await tls_site.start()
            self.url = tls_site.url
            return self.url
        site = web.TCPSite(self._runner, address.host, address.port, backlog=1024)
        await site.start()
        port = self._runner.addresses[0][1]
        host = f"[{address.host}]" if ":" in address.host else address.host
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the request path ------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.guard is not None and not _peer_certificate(request):
            missing = UnauthenticatedError(
                f"{request.method} {request.path}: this API needs a client certificate (mutual TLS), and the "
                "connection presented none",
                hint="present a certificate issued by the cluster's CA, e.g. curl --cacert DIR/security/ca.pem "
                "--cert DIR/security/identities/admin.crt --key DIR/security/identities/admin.key URL "
                "(docs/coord.md, REST API)",
                reason="missing",
            )
            log.info("rest: refused %s %s from %s: no client certificate", request.method, request.path, request.remote)
            return _json(_error_body(missing), 401)
        if self._requests >= self.limits.max_requests:
            overloaded = OverloadedError(f"rest: {self._requests} requests in flight (max_requests)")
            return _json(_error_body(overloaded), 503, headers={"Retry-After": "1"})
        self._requests += 1
        try:
            return await handler(request)
        except FeitianError as exc:
            return self._error(request, exc)
        except web.HTTPRequestEntityTooLarge:
            too_large = MessageTooLargeError(
                f"{request.method} {request.path}: the body is larger than {self.limits.max_body_bytes} bytes "
                "(max_body_bytes)",
                limit=self.limits.max_body_bytes,
            )
            return self._error(request, too_large)
        except web.HTTPException as exc:  # no such route or method: the same JSON error shape
            code = "not_found" if exc.status == 404 else "invalid_argument"
            message = f"{request.method} {request.path}: {exc.reason}"
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            body: dict[str, Any] = {"error": {"code": code, "message": message, "hint": None, "fields": {}}}
            return _json(body, exc.status, headers=headers)
        except ConnectionError:  # the client went away mid-request: nobody to answer
            log.debug("rest: %s %s: the client went away", request.method, request.path)
            return web.Response(status=499)
        except Exception as exc:  # a bug: report it as such, once
            log.exception("rest: %s %s failed", request.method, request.path)
            error = InternalError(f"{request.method} {request.path}: {type(exc).__name__}: {exc}")
            return self._error(request, error)
        finally:
            self._requests -= 1

    def _error(self, request: web.Request, exc: FeitianError) -> web.Response:
        if isinstance(exc, NotLeaderError):
            target = self._leader_url(request)
            if target:
                return _json(_error_body(exc), 307, headers={"Location": target})
        return _json(_error_body(exc), http_status_for(exc))

    def _leader_url(self, request: web.Request) -> str:
        """The same request at the leader's REST server, when this replica knows where that is."""
        hint = self.service.replica.leader_address
        if not hint:
            return ""
        for replica_id, address in self.service.replica.config.peers.items():
            if address == hint and replica_id in self.rest_peers:
                return self.rest_peers[replica_id].rstrip("/") + request.path_qs
        return ""

    def _caller(self, request: web.Request) -> _Caller:
        transport = request.transport  # one per HTTP connection
        entry = self._callers.get(id(transport))
        if entry is None or entry[0] is not transport:
            if len(self._callers) >= self._sweep_at:
                self._sweep()
            entry = (transport, self._open(request))
            self._callers[id(transport)] = entry
        caller = entry[1]
        if self.guard is not None:
            self._present(request, caller)
        return caller

    def _sweep(self) -> None:
        """Forget the state of closed connections (amortized: when the table has doubled since the last sweep)."""
        self._callers = {k: v for k, v in self._callers.items() if v[0] is not None and not v[0].is_closing()}
        self._sweep_at = max(1024, 2 * len(self._callers))

    def _open(self, request: web.Request) -> _Caller:
        peer_address = request.remote or "unknown"
        if self.guard is None:
            return _Caller(PeerInfo(peer_address, "http"), None)
        certificate = _peer_certificate(request)
        if not certificate:
            raise UnauthenticatedError("rest: no client certificate", reason="missing")
        conn = self.guard.open_connection(certificate)
        return _Caller(PeerInfo(peer_address, conn.principal.name, conn.principal), conn)

    def _present(self, request: web.Request, caller: _Caller) -> None:
        assert self.guard is not None
        credentials: list[tuple[str, str]] = []
        for header in request.headers.getall("X-Feitian-Capability", []):
            credentials.extend(("capability", part.strip()) for part in header.split(",") if part.strip())
        authorization = request.headers.get("Authorization", "")
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise UnauthenticatedError("rest: Authorization must be 'Bearer <base64 token>'", reason="malformed")
            credentials.append(("token", value.strip()))
        for kind, encoded in credentials:
            digest = hashlib.sha256(encoded.encode()).digest()
            if digest in caller.presented:
                continue
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise UnauthenticatedError(f"rest: the {kind} is not valid base64", reason="malformed") from None
            if kind == "capability":
                self.guard.present_capability(caller.conn, raw)
            else:
                self.guard.present_token(caller.conn, raw)
            caller.presented.add(digest)

    def _authorize(self, request: web.Request, rule: MethodRule[Any] | None, req: Any, method: str) -> _Caller:
        caller = self._caller(request)
        if self.guard is not None:
            self.guard.check(caller.conn, rule, req, method=method)
        return caller

    def _context(
        self, request: web.Request, rule: MethodRule[Any] | None, req: Any, method: str, timeout_s: float | None = None
    ) -> CallContext:
        caller = self._authorize(request, rule, req, method)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s if timeout_s is not None else self.limits.default_timeout_s)
        return CallContext(method, 0, caller.peer, deadline, b"")

    async def _body(self, request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
        """The request's JSON object (an octet-stream body is the value), with only ``allowed`` keys, received
        within ``body_timeout_s``."""
        what = f"{request.method} {request.path}"
        # A raw body is the value (maybe empty); only when the client says so (aiohttp assumes octets otherwise).
        octets = "Content-Type" in request.headers and request.content_type == "application/octet-stream"
        if not request.can_read_body and not octets:
            return {}
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                raw = await request.read()
        except TimeoutError:
            raise DeadlineExceededError(
                f"{what}: the body did not arrive within {self.limits.body_timeout_s}s (body_timeout_s)"
            ) from None
        if octets:
            return {"value": base64.b64encode(raw).decode()}
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"{what}: the body is not JSON (UTF-8): {exc}") from None
        if not isinstance(body, dict):
            raise InvalidArgumentError(f"{what}: the body must be a JSON object")
        only(body, allowed, what)
        return body

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

    async def _openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def _status(self, request: web.Request) -> web.Response:
        req = StatusRequest()
        ctx = self._context(request, STATUS_RULE, req, "coord.Status")
        return _json(_builtins(await self.service.status(ctx, req)))

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
            return _json(out)
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
        return _json(_builtins(result))

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
        return _json(_builtins(await self.service.create(ctx, req)), 201)

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
        return _json(_builtins(await self.service.set(ctx, req)))

    async def _delete(self, request: web.Request) -> web.Response:
        path = self._path("delete", request.match_info["path"])
        req = DeleteRequest(path=path, expected_version=int_param(request, "version"), **self._dedupe(request))
        ctx = self._context(request, DELETE_RULE, req, "coord.Delete")
        return _json(_builtins(await self.service.delete(ctx, req)))

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
        return _json(_builtins(await self.service.txn(ctx, req)))

    # -- sessions --------------------------------------------------------------------------------------------

    async def _create_session(self, request: web.Request) -> web.Response:
        body = await self._body(request, _SESSION_KEYS)
        ttl_ms = opt_int(body, "ttl_ms", "create session")
        if ttl_ms is None:
            raise InvalidArgumentError("create session: ttl_ms is required")
        req = CreateSessionRequest(ttl_ms=ttl_ms, **self._dedupe(request))
        ctx = self._context(request, SESSION_RULE, req, "coord.CreateSession")
        return _json(_builtins(await self.service.create_session(ctx, req)), 201)

    def _session_id(self, request: web.Request) -> int:
        raw = request.match_info["id"]
        try:
            return in_range(int(raw, 0), "session id")
        except ValueError:
            raise InvalidArgumentError(f"session id {raw!r}: expected an integer") from None

    async def _heartbeat(self, request: web.Request) -> web.Response:
        req = HeartbeatRequest(self._session_id(request))
        ctx = self._context(request, SESSION_RULE, req, "coord.Heartbeat")
        return _json(_builtins(await self.service.heartbeat(ctx, req)))

    async def _close_session(self, request: web.Request) -> web.Response:
        req = CloseSessionRequest(session_id=self._session_id(request), **self._dedupe(request))
        ctx = self._context(request, SESSION_RULE, req, "coord.CloseSession")
        return _json(_builtins(await self.service.close_session(ctx, req)))

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
                return _json(_watch_json(await self.service.watch(ctx, req)))
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
                if reply.compacted is not None or self._closing.is_set():
                    break  # the subscriber must reload, then watch again from the reload's revision
                req = WatchRequest(selector, reply.through_revision, int(keepalive_s * 1000))
                try:  # the caller's rights are checked again for every poll (a revocation ends the stream)
                    ctx = self._context(request, SELECT_RULE, req, "coord.Watch", timeout_s=keepalive_s + 5)
                except FeitianError as exc:
                    await response.write(msgspec.json.encode(_error_body(exc)) + b"\n")
                    break
                polling = asyncio.ensure_future(self.service.watch(ctx, req))
                closing = asyncio.ensure_future(self._closing.wait())
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
                    await response.write(msgspec.json.encode(_error_body(exc)) + b"\n")
                    break
            await response.write_eof()
        except ConnectionError:  # the subscriber went away
            pass
        return response


def _peer_certificate(request: web.Request) -> bytes | None:
    """The client's DER certificate on this request's TLS connection (None: no TLS, or none presented)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    certificate: bytes | None = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return certificate
