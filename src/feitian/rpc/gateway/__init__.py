"""The HTTP gateway every feitian REST API is served through (Nuwa's today; Fuxi's and Shennong's later).

``HttpGateway`` owns the HTTP server, authentication and the capability check, overload (503 + Retry-After),
leader redirects, body bounds and the JSON error form (each error class's ``http_status``); a service adds its
routes to ``gateway.app.router``. ``openapi`` assembles a service's OpenAPI document with the shared parts;
``site`` serves HTTPS with client certificates and a readable refusal of plain HTTP. Imported on its own
(``feitian.rpc.gateway``), not from ``feitian.rpc``, so Kuafu users do not load aiohttp.
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.rpc.gateway.openapi import openapi_document, responses
from feitian.rpc.gateway.server import (
    GatewayLimits,
    HttpCaller,
    HttpGateway,
    error_body,
    http_status_for,
    json_response,
)
from feitian.rpc.gateway.site import TlsSite, plaintext_refusal

if TYPE_CHECKING:
    from feitian.rpc.gateway.openapi import json_content, ref

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "json_content": "feitian.rpc.gateway.openapi",
    "ref": "feitian.rpc.gateway.openapi",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "GatewayLimits",
    "HttpCaller",
    "HttpGateway",
    "TlsSite",
    "error_body",
    "http_status_for",
    "json_content",
    "json_response",
    "openapi_document",
    "plaintext_refusal",
    "ref",
    "responses",
]
