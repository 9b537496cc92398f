"""The OpenAPI 3.1 document of Nuwa's REST API (``GET /openapi.json``; the server is ``feitian.coord.server.rest``).

Schemas are JSON Schema 2020-12. Values travel as base64 strings (``value``); requests may give ``value_text``
(UTF-8) instead, or a raw ``application/octet-stream`` body.
"""

from __future__ import annotations

from typing import Any

from feitian.rpc.gateway import json_content as _json_content
from feitian.rpc.gateway import openapi_document as _assemble
from feitian.rpc.gateway import ref as _ref
from feitian.rpc.gateway import responses as _responses

__all__ = ["openapi_document"]

_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_B64 = {"type": "string", "contentEncoding": "base64"}


def _obj(properties: dict[str, Any], required: list[str] | None = None, *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    if closed:
        schema["additionalProperties"] = False
    return schema


def _tagged(tag: str, properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    props = {"result": {"const": tag}, **properties}
    return _obj(props, [k for k in props if k not in optional])


_SCHEMAS: dict[str, Any] = {
    "NodeStat": _obj(
        {
            "path": _STR,
            "creator": _STR,
            "create_revision": _INT,
            "mod_revision": _INT,
            "version": _INT,
            "ephemeral_owner": _INT,
            "value_bytes": _INT,
            "children": _INT,
            "sequence": _INT,
        }
    ),
    "GetReply": _obj({"stat": _ref("NodeStat"), "value": _B64, "revision": _INT}),
    "ListReply": _obj(
        {
            "directory": _ref("NodeStat"),
            "children": {"type": "array", "items": _ref("NodeStat")},
            "revision": _INT,
            "more": _BOOL,
            "values": {"type": "array", "items": _B64},
        },
        ["directory", "children", "revision", "more"],
    ),
    "Created": _tagged(
        "created",
        {"revision": _INT, "stat": _ref("NodeStat"), "parents": {"type": "array", "items": _STR}},
    ),
    "Updated": _tagged("updated", {"revision": _INT, "stat": _ref("NodeStat")}),
    "Deleted": _tagged("deleted", {"revision": _INT, "stat": _ref("NodeStat")}),
    "Checked": _tagged("checked", {"path": _STR}),
    "TxnCommitted": _tagged(
        "txn",
        {
            "revision": _INT,
            "results": {
                "type": "array",
                "items": {"oneOf": [_ref("Created"), _ref("Updated"), _ref("Deleted"), _ref("Checked")]},
            },
        },
    ),
    "ValueInput": {
        "type": "object",
        "description": "value (base64) or value_text (UTF-8), not both; neither is an empty value",
        "properties": {"value": _B64, "value_text": _STR},
    },
    "CreateBody": _obj(
        {
            "value": _B64,
            "value_text": _STR,
            "ephemeral": _BOOL,
            "sequential": _BOOL,
            "parents": _BOOL,
            "session_id": _INT,
        },
        [],
    ),
    "SetBody": _obj({"value": _B64, "value_text": _STR, "version": _INT, "session_id": _INT}, []),
    "TxnOp": {
        "oneOf": [
            _obj(
                {
                    "op": {"const": "create"},
                    "path": _STR,
                    "value": _B64,
                    "value_text": _STR,
                    "ephemeral": _BOOL,
                    "sequential": _BOOL,
                    "parents": _BOOL,
                },
                ["op", "path"],
            ),
            _obj(
                {"op": {"const": "set"}, "path": _STR, "value": _B64, "value_text": _STR, "version": _INT},
                ["op", "path"],
            ),
            _obj({"op": {"const": "delete"}, "path": _STR, "version": _INT}, ["op", "path"]),
            _obj(
                {
                    "op": {"const": "check"},
                    "path": _STR,
                    "exists": _BOOL,
                    "version": _INT,
                    "create_revision": _INT,
                    "mod_revision": _INT,
                },
                ["op", "path"],
            ),
        ]
    },
    "TxnBody": _obj(
        {"ops": {"type": "array", "items": _ref("TxnOp"), "minItems": 1, "maxItems": 128}, "session_id": _INT},
        ["ops"],
    ),
    "Event": _obj({"revision": _INT, "kind": {"enum": ["created", "changed", "deleted"]}, "path": _STR}),
    "Compacted": _obj({"since": _INT, "compacted_through": _INT, "current_revision": _INT}),
    "WatchReply": _obj(
        {
            "events": {"type": "array", "items": _ref("Event")},
            "through_revision": _INT,
            "more": _BOOL,
            "compacted": {"oneOf": [_ref("Compacted"), {"type": "null"}]},
            "revision": _INT,
        }
    ),
    "SessionBody": _obj({"ttl_ms": _INT}),
    "SessionCreated": _tagged("session_created", {"session_id": _INT, "ttl_ms": _INT}),
    "HeartbeatReply": _obj({"session_id": _INT, "ttl_ms": _INT, "epoch": _INT}),
    "SessionClosed": _tagged(
        "session_closed",
        {"session_id": _INT, "existed": _BOOL, "revision": _INT, "deleted": {"type": "array", "items": _STR}},
    ),
    "ReplicaStats": _obj(
        {
            "role": _STR,
            "term": _INT,
            "leader_id": _INT,
            "commit_index": _INT,
            "applied_index": _INT,
            "fsyncs": _INT,
            "entries_persisted": _INT,
            "proposals": _INT,
        },
        closed=False,
    ),
    "Status": _obj(
        {
            "replica": _ref("ReplicaStats"),
            "revision": _INT,
            "nodes": _INT,
            "sessions": _INT,
            "leader_epoch": _INT,
            "tracking": _BOOL,
            "tracked_sessions": _INT,
            "history_events": _INT,
            "compacted_through": _INT,
        },
        closed=False,
    ),
}


_PATH_PARAM = {
    "name": "path",
    "in": "path",
    "required": True,
    "description": "the node's path without its leading '/'; a directory ends with '/' (the root: empty)",
    "schema": {"type": "string"},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_STALE = _query("stale", _BOOL, "answer from this replica without a read barrier (may be behind)")
_VERSION = _query("version", _INT, "only if the node is at this version (409 otherwise)")
_DEDUPE = [
    {
        "name": "X-Feitian-Client-Id",
        "in": "header",
        "required": False,
        "description": "with X-Feitian-Request-Seq: a retried write returns its first result instead of applying again",
        "schema": _STR,
    },
    {"name": "X-Feitian-Request-Seq", "in": "header", "required": False, "schema": _INT},
]

_PATHS: dict[str, Any] = {
    "/v1/nodes/{path}": {
        "parameters": [_PATH_PARAM],
        "get": {
            "operationId": "get",
            "summary": "Get a file (value and stat) or list a directory (a path ending with '/')",
            "parameters": [
                _STALE,
                _query("raw", _BOOL, "files: the value as application/octet-stream, stat in X-Feitian-* headers"),
                _query("values", _BOOL, "directories: include each entry's value, read at the same revision"),
                _query("start_after", _STR, "directories: continue after this path (paging)"),
                _query("limit", _INT, "directories: at most this many entries"),
            ],
            "responses": {
                "200": {
                    "description": "a file (GetReply) or a directory page (ListReply)",
                    "content": {
                        "application/json": {"schema": {"oneOf": [_ref("GetReply"), _ref("ListReply")]}},
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **{k: v for k, v in _responses("200", "GetReply", "", "404").items() if k != "200"},
            },
        },
        "post": {
            "operationId": "create",
            "summary": "Create a file or a directory (a path ending with '/'); sequential nodes get a suffix",
            "parameters": _DEDUPE,
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": _ref("CreateBody")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": _responses("201", "Created", "created", "307", "404", "409", "410", "413"),
        },
        "put": {
            "operationId": "set",
            "summary": "Replace a file's value (the body must give it), optionally only at a version",
            "parameters": [_VERSION, *_DEDUPE],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("SetBody")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": _responses("200", "Updated", "updated", "307", "404", "409", "410", "413"),
        },
        "delete": {
            "operationId": "delete",
            "summary": "Delete a file or an empty directory, optionally only at a version",
            "parameters": [_VERSION, *_DEDUPE],
            "responses": _responses("200", "Deleted", "deleted (the stat before the delete)", "307", "404", "409"),
        },
    },
    "/v1/txn": {
        "post": {
            "operationId": "txn",
            "summary": "Apply check/create/set/delete operations all or nothing, at one revision",
            "parameters": _DEDUPE,
            "requestBody": {"required": True, **_json_content(_ref("TxnBody"))},
            "responses": _responses("200", "TxnCommitted", "committed", "307", "404", "409", "410", "413"),
        }
    },
    "/v1/watch": {
        "get": {
            "operationId": "watch",
            "summary": "Subscribe to changes: a long poll, or a newline-delimited JSON stream (stream=true)",
            "parameters": [
                {**_query("path", _STR, "the node or directory watched"), "required": True},
                _query(
                    "mode",
                    {"enum": ["node", "children", "subtree"]},
                    "node: exactly the path; children: a directory and its entries; subtree: everything below "
                    "(default: subtree for a directory, node for a file)",
                ),
                _query(
                    "since",
                    {"type": "integer", "minimum": -1},
                    "events after this revision (default -1: from now); beyond the current revision: 400",
                ),
                _query("timeout", {"type": "number"}, "long poll: seconds to wait for an event (max 60)"),
                _query("stream", _BOOL, "stream batches as application/x-ndjson lines of WatchReply"),
            ],
            "responses": {
                **_responses("200", "WatchReply", "events after since (or compacted: reload, then resume)"),
                "200": {
                    "description": "events after since (or compacted: reload, then resume from the reload)",
                    "content": {
                        "application/json": {"schema": _ref("WatchReply")},
                        "application/x-ndjson": {"schema": _ref("WatchReply")},
                    },
                },
            },
        }
    },
    "/v1/sessions": {
        "post": {
            "operationId": "createSession",
            "summary": "Create a session (ephemeral nodes live as long as it gets heartbeats)",
            "parameters": _DEDUPE,
            "requestBody": {"required": True, **_json_content(_ref("SessionBody"))},
            "responses": _responses("201", "SessionCreated", "created", "307"),
        }
    },
    "/v1/sessions/{id}/heartbeat": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": _INT}],
        "post": {
            "operationId": "heartbeat",
            "summary": "Keep a session alive (answered by the leader)",
            "responses": _responses("200", "HeartbeatReply", "extended", "307", "410"),
        },
    },
    "/v1/sessions/{id}": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": _INT}],
        "delete": {
            "operationId": "closeSession",
            "summary": "Close a session: its ephemeral nodes are deleted",
            "parameters": _DEDUPE,
            "responses": _responses("200", "SessionClosed", "closed", "307"),
        },
    },
    "/v1/status": {
        "get": {
            "operationId": "status",
            "summary": "This replica's state",
            "responses": _responses("200", "Status", "status"),
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", **_json_content({"type": "object"})}},
        }
    },
}

_DESCRIPTION = (
    "feitian's coordination service (docs/coord.md, 'REST API'). In a secured cluster every "
    "request needs a client certificate from the cluster CA and capabilities or a token covering the "
    "operation (coord:<path> with read, create, write or delete)."
)


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it); the error schema, error responses and security
    schemes are the HTTP gateway's (``feitian.rpc.gateway.openapi``)."""
    return _assemble(title="Nuwa coordination service", description=_DESCRIPTION, paths=_PATHS, schemas=_SCHEMAS)
