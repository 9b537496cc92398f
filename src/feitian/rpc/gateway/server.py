"""The HTTP gateway: what every feitian REST API shares, whichever service's routes it serves.

A service builds an :class:`HttpGateway`, adds its routes to ``gateway.app.router`` and calls, in each handler,
:meth:`HttpGateway.context` (authentication and the capability check of the operation's rule) and
:meth:`HttpGateway.json_body` (a bounded JSON body). The gateway does the rest:

* **Authentication (Zhongkui).** With a ``guard`` (``feitian.security.guard.Guard``) and a TLS server context
  (``feitian.security.tls.server_context``) it serves HTTPS with mutual TLS (``site.py``): a request without a
  client certificate gets a 401 saying one is required. Credentials come in
  headers and are verified once per TLS connection: ``X-Feitian-Capability: <base64 chain>`` (repeatable, or
  comma-separated) and ``Authorization: Bearer <base64 token>``. Without security it serves plain HTTP and every
  caller may do everything (as with Kuafu).
* **Overload.** At most ``max_requests`` requests in flight; beyond, ``503`` overloaded with ``Retry-After: 1``.
* **Errors.** A :class:`~feitian.errors.FeitianError` becomes the class's ``http_status`` with the JSON body
  ``{"error": {"code", "message", "hint", "fields"}}``; an unknown route or method the same shape (404/405),
  a body over ``max_body_bytes`` a 413, a bug a 500 (logged once).
* **Leaders.** A :class:`~feitian.errors.NotLeaderError` becomes ``307 Temporary Redirect`` to the same path at
  the leader's base URL when ``leader_url()`` knows it, else the 503.
* **OpenAPI.** ``GET /openapi.json`` serves the document ``openapi()`` returns (see ``openapi.py`` for the
  shared parts: the error schema, the error responses, the security schemes).
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

from feitian.errors import (
    AccessReason,
    DeadlineExceededError,
    FeitianError,
    InternalError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotFoundError,
    NotLeaderError,
    OverloadedError,
    UnauthenticatedError,
)
from feitian.rpc.context import CallContext, PeerInfo
from feitian.rpc.core.address import TcpAddress, parse_address
from feitian.rpc.core.messages import ErrorInfo
from feitian.rpc.gateway.site import TlsSite

__all__ = [
    "SHUTDOWN_S",
    "GatewayLimits",
    "HttpCaller",
    "HttpGateway",
    "error_body",
    "http_status_for",
    "json_response",
]

log = logging.getLogger(__name__)

SHUTDOWN_S = 2.0  # on stop, open long polls and streams get this long before their connections are closed
CLIENT_GONE_STATUS = 499  # logged only: a client that went away mid-request gets no answer


class GatewayLimits(msgspec.Struct, frozen=True):
    max_requests: int = 10_000  # in flight; beyond: 503 overloaded, Retry-After: 1
    max_body_bytes: int = 8 << 20  # a request body; beyond: 413 message_too_large
    body_timeout_s: float = 10.0  # to receive a whole request body (a client that trickles it is cut off)
    default_timeout_s: float = 10.0  # the deadline of a call, unless the handler gives one


def http_status_for(error: FeitianError) -> int:
    """The HTTP status of ``error``: its class's ``http_status`` (declared in ``feitian.errors``)."""
    return error.http_status


def error_body(error: FeitianError) -> dict[str, Any]:
    """The JSON body of an error answer: the fields of its wire form (ErrorInfo) but ``retryable``."""
    info = ErrorInfo.from_exception(error)
    return {"error": {"code": info.code, "message": info.message, "hint": info.hint, "fields": info.fields}}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status, content_type="application/json", headers=headers)


class HttpCaller:
    """The security state of one HTTP connection: its principal and the credentials it has presented."""

    __slots__ = ("conn", "peer", "presented")

    def __init__(self, peer: PeerInfo, conn: Any) -> None:
        self.peer = peer
        self.conn = conn  # a feitian.security.guard.ConnectionSecurity, or None without security
        self.presented: set[bytes] = set()


class HttpGateway:
    """One node's HTTP server (see the module docstring). ``guard``: the node's security guard (None: plain HTTP,
    everyone may do everything); ``ssl_context``: with a guard, a fresh server context from
    ``feitian.security.tls.server_context`` (the gateway asks for a client certificate without insisting, so that
    a client without one is told so). The gateway does not import ``feitian.security`` (``feitian.rpc`` sits below
    it): services pass these in. ``leader_url``: the leader's base URL, or "" (none known, or this node leads);
    ``openapi``: the document served at ``/openapi.json``; ``label`` starts log lines; ``example_path`` and
    ``docs`` go into the answers that tell a client how to connect."""

    def __init__(
        self,
        *,
        guard: Any = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: GatewayLimits | None = None,
        leader_url: Callable[[], str] | None = None,
        openapi: Callable[[], dict[str, Any]] | None = None,
        label: str = "http",
        example_path: str = "/",
        docs: str = "docs/security.md",
    ) -> None:
        if guard is not None and ssl_context is None:
            raise InvalidArgumentError("http gateway: a guard needs a TLS server context (client certificates)")
        self.guard = guard
        self.ssl_context = ssl_context
        self.limits = limits or GatewayLimits()
        self.leader_url = leader_url or (lambda: "")
        self.openapi = openapi
        self.label = label
        self.example_path = example_path
        self.docs = docs
        self.url = ""
        self.requests = 0  # in flight
        self.closing = asyncio.Event()  # set by stop(): long-running handlers end
        self._callers: dict[int, tuple[asyncio.BaseTransport | None, HttpCaller]] = {}  # id(transport) -> state
        self._sweep_at = 1024
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=self.limits.max_body_bytes, middlewares=[self._middleware])
        if openapi is not None:
            self.app.router.add_get("/openapi.json", self._openapi)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, listen: str) -> str:
        """Serve on ``listen`` (``tcp://host:port``; port 0 picks one); returns the base URL."""
        address = parse_address(listen)
        if not isinstance(address, TcpAddress):
            raise InvalidArgumentError(f"{self.label} listen address must be tcp://host:port, got {listen!r}")
        # A client that goes away cancels its request's handler: a long poll frees its slot at once.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S, handler_cancellation=True
        )
        await self._runner.setup()
        if self.guard is not None:
            assert self.ssl_context is not None
            ssl_context = self.ssl_context
            # Asked for, not insisted on: a client without a certificate gets a 401 saying so (the middleware),
            # not a bare handshake failure. One that is presented must still come from the cluster's CA.
            ssl_context.verify_mode = ssl.CERT_OPTIONAL
            tls_site = TlsSite(
                self._runner,
                address.host,
                address.port,
                ssl_context,
                example_path=self.example_path,
                docs=self.docs,
                label=self.label,
            )
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
        self.closing.set()
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
                f"({self.docs})",
                reason=AccessReason.MISSING,
            )
            log.info(
                "%s: refused %s %s from %s: no client certificate",
                self.label,
                request.method,
                request.path,
                request.remote,
            )
            return json_response(error_body(missing), missing.http_status)
        if self.requests >= self.limits.max_requests:
            overloaded = OverloadedError(f"{self.label}: {self.requests} requests in flight (max_requests)")
            return json_response(error_body(overloaded), overloaded.http_status, headers={"Retry-After": "1"})
        self.requests += 1
        try:
            return await handler(request)
        except FeitianError as exc:
            return self.error_response(request, exc)
        except web.HTTPRequestEntityTooLarge:
            too_large = MessageTooLargeError(
                f"{request.method} {request.path}: the body is larger than {self.limits.max_body_bytes} bytes "
                "(max_body_bytes)",
                limit=self.limits.max_body_bytes,
            )
            return self.error_response(request, too_large)
        except web.HTTPException as exc:  # no such route or method: the same JSON error shape
            message = f"{request.method} {request.path}: {exc.reason}"
            refused = NotFoundError(message) if exc.status == 404 else InvalidArgumentError(message)
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return json_response(error_body(refused), exc.status, headers=headers)
        except ConnectionError:  # the client went away mid-request: nobody to answer
            log.debug("%s: %s %s: the client went away", self.label, request.method, request.path)
            return web.Response(status=CLIENT_GONE_STATUS)
        except Exception as exc:  # a bug: report it as such, once
            log.exception("%s: %s %s failed", self.label, request.method, request.path)
            error = InternalError(f"{request.method} {request.path}: {type(exc).__name__}: {exc}")
            return self.error_response(request, error)
        finally:
            self.requests -= 1

    def error_response(self, request: web.Request, exc: FeitianError) -> web.Response:
        """The answer to a request that failed with ``exc``; not the leader: a redirect when the leader is known."""
        if isinstance(exc, NotLeaderError):
            base = self.leader_url()
            if base:
                return json_response(error_body(exc), 307, headers={"Location": base.rstrip("/") + request.path_qs})
        return json_response(error_body(exc), http_status_for(exc))

    async def _openapi(self, request: web.Request) -> web.Response:
        assert self.openapi is not None
        return json_response(self.openapi())

    # -- callers: authentication and the capability check ----------------------------------------------------

    def caller(self, request: web.Request) -> HttpCaller:
        """The caller of ``request``, with the credentials of its headers presented (once per connection)."""
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

    def _open(self, request: web.Request) -> HttpCaller:
        peer_address = request.remote or "unknown"
        if self.guard is None:
            return HttpCaller(PeerInfo(peer_address, "http"), None)
        certificate = _peer_certificate(request)
        if not certificate:
            raise UnauthenticatedError(f"{self.label}: no client certificate", reason=AccessReason.MISSING)
        conn = self.guard.open_connection(certificate)
        return HttpCaller(PeerInfo(peer_address, conn.principal.name, conn.principal), conn)

    def _present(self, request: web.Request, caller: HttpCaller) -> None:
        assert self.guard is not None
        credentials: list[tuple[str, str]] = []
        for header in request.headers.getall("X-Feitian-Capability", []):
            credentials.extend(("capability", part.strip()) for part in header.split(",") if part.strip())
        authorization = request.headers.get("Authorization", "")
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise UnauthenticatedError(
                    f"{self.label}: Authorization must be 'Bearer <base64 token>'", reason=AccessReason.MALFORMED
                )
            credentials.append(("token", value.strip()))
        for kind, encoded in credentials:
            digest = hashlib.sha256(encoded.encode()).digest()
            if digest in caller.presented:
                continue
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise UnauthenticatedError(
                    f"{self.label}: the {kind} is not valid base64", reason=AccessReason.MALFORMED
                ) from None
            if kind == "capability":
                self.guard.present_capability(caller.conn, raw)
            else:
                self.guard.present_token(caller.conn, raw)
            caller.presented.add(digest)

    def authorize(self, request: web.Request, rule: Any, req: Any, method: str) -> HttpCaller:
        """The caller, once the operation ``method`` on ``req`` passes ``rule`` (a ``feitian.security.core.MethodRule``,
        or None: no capability needed; UnauthenticatedError or
        PermissionDeniedError otherwise). Without security: everyone passes."""
        caller = self.caller(request)
        if self.guard is not None:
            self.guard.check(caller.conn, rule, req, method=method)
        return caller

    def context(
        self, request: web.Request, rule: Any, req: Any, method: str, timeout_s: float | None = None
    ) -> CallContext:
        """The call context of an authorized operation: its caller and a deadline ``timeout_s`` (default:
        ``default_timeout_s``) from now."""
        caller = self.authorize(request, rule, req, method)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s if timeout_s is not None else self.limits.default_timeout_s)
        return CallContext(method, 0, caller.peer, deadline, b"")

    # -- bodies ----------------------------------------------------------------------------------------------

    async def json_body(self, request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
        """The request's JSON object (an ``application/octet-stream`` body: ``{"value": <base64>}``) with only
        ``allowed`` keys, received within ``body_timeout_s`` (larger than ``max_body_bytes``: 413)."""
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
        # Unknown keys are refused: a misspelt ``version`` must not turn a conditional write into an unconditional one.
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise InvalidArgumentError(
                f"{what}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
                hint=f"the fields are {', '.join(sorted(allowed))}",
            )
        return body


def _peer_certificate(request: web.Request) -> bytes | None:
    """The client's DER certificate on this request's TLS connection (None: no TLS, or none presented)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    certificate: bytes | None = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return certificate
