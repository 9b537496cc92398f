"""OpenAPI 3.1 assembly for services behind the HTTP gateway: the parts every feitian REST API shares.

A service writes its own paths and schemas and calls :func:`openapi_document`, which adds the error schema
(the gateway's JSON error body), the security schemes of the gateway (mutual TLS, capabilities, tokens) and the
document's frame. :func:`responses` gives an operation's responses: its success plus the error statuses the
gateway can answer to any request (400, 401, 403, 405, 503, 504) and those the operation names.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["ERROR_NOTES", "ERROR_SCHEMA", "json_content", "openapi_document", "ref", "responses"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "hint": {"type": ["string", "null"]},
                "fields": {"type": "object"},
            },
            "required": ["code", "message", "hint", "fields"],
            "additionalProperties": False,
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}

# What each error status means, as the gateway (and feitian.errors' http_status) answers it.
ERROR_NOTES: dict[str, str] = {
    "307": "not the leader: the same request at the leader's REST URL (Location)",
    "400": "invalid argument",
    "401": "unauthenticated (missing, expired, revoked or untrusted credential)",
    "403": "permission denied (no capability covers the operation)",
    "404": "not found",
    "409": "already exists, or a version/condition mismatch (conflict)",
    "410": "the session expired",
    "405": "the path does not take this method (Allow names those it takes)",
    "413": "a value, transaction or request body over its limit (message_too_large)",
    "503": "unavailable: no leader, not the leader (leader_hint), or overloaded (Retry-After); retry",
    "504": "deadline exceeded",
}

_ALWAYS = ("400", "401", "403", "405", "503", "504")  # any request may get these from the gateway

_SECURITY_SCHEMES: dict[str, Any] = {
    "clusterCertificate": {"type": "mutualTLS", "description": "a certificate issued by the cluster CA"},
    "capability": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Feitian-Capability",
        "description": "a base64 capability chain held by the certificate's principal (repeatable)",
    },
    "token": {"type": "http", "scheme": "bearer", "description": "a token from `feitian token mint`"},
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def responses(ok_status: str, ok_schema: str, description: str, *errors: str) -> dict[str, Any]:
    """``ok_status`` with the schema ``ok_schema``, the gateway's error statuses, and ``errors``."""
    out: dict[str, Any] = {ok_status: {"description": description, **json_content(ref(ok_schema))}}
    for code in (*_ALWAYS, *errors):
        out[code] = {"description": ERROR_NOTES[code], **json_content(ref("Error"))}
    return out


def openapi_document(
    *, title: str, description: str, paths: dict[str, Any], schemas: dict[str, Any], version: str = "1"
) -> dict[str, Any]:
    """The whole document: ``paths`` and ``schemas`` (the service's) with the shared ``Error`` schema and
    security schemes; a fresh copy (callers may change it)."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version, "description": description},
            "paths": paths,
            "components": {
                "schemas": {**schemas, "Error": ERROR_SCHEMA},
                "securitySchemes": _SECURITY_SCHEMES,
            },
            "security": [{"clusterCertificate": [], "capability": []}, {"clusterCertificate": [], "token": []}],
        }
    )
