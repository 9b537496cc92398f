"""Checking REST responses against the service's own OpenAPI document (the subset of JSON Schema 2020-12 that
``feitian.coord.server.rest_openapi`` uses: type, const, enum, properties, required, additionalProperties, items,
minItems/maxItems, oneOf, $ref, contentEncoding base64)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


class SchemaError(AssertionError):
    pass


class OpenApi:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.checked: set[tuple[str, str, str]] = set()  # (path template, method, status) validated so far

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            ref = schema["$ref"]
            assert ref.startswith("#/"), ref
            node: Any = self.document
            for part in ref[2:].split("/"):
                node = node[part]
            schema = node
        return schema

    def validate(self, value: Any, schema: dict[str, Any], where: str = "$") -> None:
        schema = self.resolve(schema)
        if "oneOf" in schema:
            matches = 0
            problems = []
            for option in schema["oneOf"]:
                try:
                    self.validate(value, option, where)
                    matches += 1
                except SchemaError as exc:
                    problems.append(str(exc))
            if matches != 1:
                raise SchemaError(f"{where}: matches {matches} of oneOf (need 1): {problems}")
            return
        if "const" in schema and value != schema["const"]:
            raise SchemaError(f"{where}: {value!r} is not {schema['const']!r}")
        if "enum" in schema and value not in schema["enum"]:
            raise SchemaError(f"{where}: {value!r} not in {schema['enum']}")
        kinds = schema.get("type")
        if kinds is not None:
            kinds = kinds if isinstance(kinds, list) else [kinds]
            ok = any(
                isinstance(value, _TYPES[k]) and not (k in ("integer", "number") and isinstance(value, bool))
                for k in kinds
            )
            if not ok:
                raise SchemaError(f"{where}: {value!r} is not of type {kinds}")
        if isinstance(value, str) and schema.get("contentEncoding") == "base64":
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise SchemaError(f"{where}: not base64") from None
        if isinstance(value, dict):
            props = schema.get("properties", {})
            for name in schema.get("required", []):
                if name not in value:
                    raise SchemaError(f"{where}: missing {name!r}")
            for name, item in value.items():
                if name in props:
                    self.validate(item, props[name], f"{where}.{name}")
                elif schema.get("additionalProperties") is False:
                    raise SchemaError(f"{where}: unexpected property {name!r}")
        if isinstance(value, list):
            if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
                raise SchemaError(f"{where}: {len(value)} items outside the bounds")
            if "items" in schema:
                for i, item in enumerate(value):
                    self.validate(item, schema["items"], f"{where}[{i}]")

    def check_response(self, template: str, method: str, status: int, body: Any, content_type: str) -> None:
        """``body`` (decoded JSON) must match what the document declares for this operation and status."""
        operation = self.document["paths"][template][method.lower()]
        responses = operation["responses"]
        declared = responses.get(str(status))
        if declared is None:
            raise SchemaError(f"{method} {template}: status {status} is not declared ({sorted(responses)})")
        media = declared.get("content", {}).get(content_type)
        if media is None:
            raise SchemaError(f"{method} {template} {status}: content type {content_type} is not declared")
        self.validate(body, media["schema"], f"{method} {template} {status}")
        self.checked.add((template, method.lower(), str(status)))

    def refs_resolve(self) -> None:
        """Every $ref in the document points at something."""

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if "$ref" in node:
                    self.resolve(node)
                for item in node.values():
                    walk(item)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(self.document)
