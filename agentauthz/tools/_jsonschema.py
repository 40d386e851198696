"""MCP tool descriptions, and the JSON Schema of their input as a Cedar record type.

An MCP tool describes its arguments with a JSON Schema ``inputSchema``;
generation declares them as the Cedar record of ``context.input``
(:func:`mcp_input_type`). The mapping (agrees with ``cedar-policy-mcp-schema-generator``
run with ``numbersAsDecimal`` and ``objectsAsRecords``, except where noted):

=====================================  ===========================================
JSON Schema                            Cedar
=====================================  ===========================================
``string``                             ``String``; format ``date-time``/``date`` ->
                                       ``datetime``, ``ipv4``/``ipv6`` -> ``ipaddr``,
                                       ``duration`` -> ``duration``, ``decimal`` ->
                                       ``decimal``
``integer``                            ``Long``
``number``                             ``decimal``
``boolean``                            ``Bool``
``array`` with ``items``               ``Set<items>``
``object`` with ``properties``         record; attributes not in ``required`` are
                                       optional; ``additionalProperties`` ignored
``enum``/``const`` of strings          ``String`` (upstream: an enumerated entity
                                       type per property)
``enum``/``const`` of integers         ``Long``
local ``$ref`` (``#/$defs/X``)         the referenced schema, inlined
``allOf`` of one schema                that schema (pydantic's wrapper of a ``$ref``)
``T`` or ``null`` (type list, anyOf,   ``T``, optional attribute (upstream: a record
oneOf)                                 of ``typeChoiceN`` attributes)
=====================================  ===========================================

Everything else raises :class:`~agentauthz.ConfigurationError` naming the tool
and the property path, where upstream invents placeholder types: unions of
different types (upstream: ``typeChoiceN`` records), objects without
properties below the top level (upstream: an empty record, or an entity with
tags for ``additionalProperties``), arrays without ``items`` and properties
without a type (upstream: an ``Unknown`` entity type), ``null``, remote
``$ref``, ``allOf`` of several schemas. A top-level ``inputSchema`` without
properties is a tool without arguments (an empty ``input`` record). Tool and
property names need not be identifiers: they are quoted (upstream rejects them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentauthz._errors import ConfigurationError

__all__ = ["mcp_input_type", "mcp_tool_name", "read_mcp_tools"]

_STRING_FORMATS = {
    "date-time": "datetime",
    "date": "datetime",
    "ipv4": "ipaddr",
    "ipv6": "ipaddr",
    "duration": "duration",
    "decimal": "decimal",
}


def mcp_input_type(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The Cedar record type (Cedar JSON schema) of an MCP tool's ``inputSchema``.

    Raises:
        ConfigurationError: a description without name or input schema, or a
            property with no Cedar equivalent; the message names the tool and
            the property path.

    Example:
        >>> mcp_input_type({"name": "f", "inputSchema": {"type": "object",
        ...     "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}})
        {'type': 'Record', 'attributes': {'tags': {'type': 'Set', 'element': {'type': 'String'}, \
'required': False}}}
    """
    name = mcp_tool_name(tool)
    schema = tool.get("inputSchema")
    if not isinstance(schema, Mapping):
        raise ConfigurationError(f"MCP tool {name!r}: needs an inputSchema object")
    return _JsonSchema(name, schema).top()


def read_mcp_tools(data: Any) -> list[Mapping[str, Any]]:
    """The tool descriptions in a parsed ``tools/list`` answer.

    Accepts a list of descriptions, ``{"tools": [...]}`` or the JSON-RPC
    response ``{"result": {"tools": [...]}}``.

    Raises:
        ConfigurationError: anything else.

    Example:
        >>> [t["name"] for t in read_mcp_tools({"tools": [{"name": "a", "inputSchema": {}}]})]
        ['a']
    """
    if isinstance(data, Mapping) and isinstance(data.get("result"), Mapping):
        data = data["result"]
    if isinstance(data, Mapping) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list):
        raise ConfigurationError(
            'MCP tools: expected a list of tool descriptions, {"tools": [...]} '
            'or {"result": {"tools": [...]}}')
    for index, item in enumerate(data):
        if not isinstance(item, Mapping):
            raise ConfigurationError(f"MCP tools: item #{index} is not an object")
    return list(data)


def mcp_tool_name(tool: Mapping[str, Any]) -> str:
    """The ``name`` of an MCP tool description.

    Raises:
        ConfigurationError: it has none.
    """
    name = tool.get("name") if isinstance(tool, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ConfigurationError('MCP tool description without a "name"')
    return name


class _JsonSchema:
    """Maps one tool's JSON Schema to Cedar JSON-schema types."""

    def __init__(self, tool: str, root: Mapping[str, Any]) -> None:
        self.tool = tool
        self.root = root

    def fail(self, path: str, message: str) -> ConfigurationError:
        where = f" property {path!r}" if path else " inputSchema"
        return ConfigurationError(f"MCP tool {self.tool!r}{where}: {message}")

    def top(self) -> dict[str, Any]:
        schema, _ = self.resolve(self.root, "", ())
        kind = schema.get("type", "object")
        if kind != "object":
            raise self.fail("", f"must be an object schema, not {kind!r}")
        return self.record(schema, "", empty_ok=True)

    def resolve(self, schema: Any, path: str, seen: tuple[str, ...]) -> tuple[Mapping[str, Any], bool]:
        """Follow $ref and single allOf; drop null alternatives. Returns (schema, nullable)."""
        if not isinstance(schema, Mapping):
            raise self.fail(path, "is not a JSON Schema object")
        nullable = False
        while True:
            if "$ref" in schema:
                ref = schema["$ref"]
                if ref in seen:
                    raise self.fail(path, f"recursive $ref {ref!r} has no Cedar equivalent")
                seen = (*seen, ref)
                schema = self.lookup(ref, path)
                continue
            if "allOf" in schema:
                parts = schema["allOf"]
                if not isinstance(parts, list) or len(parts) != 1:
                    raise self.fail(path, "allOf of several schemas has no Cedar equivalent")
                schema = self.checked(parts[0], path)
                continue
            for key in ("anyOf", "oneOf"):
                if key in schema:
                    choices = schema[key]
                    if not isinstance(choices, list) or not choices:
                        raise self.fail(path, f"{key} must be a non-empty list")
                    present = [c for c in choices if not self.is_null(c)]
                    nullable = nullable or len(present) < len(choices)
                    if len(present) != 1:
                        raise self.fail(
                            path, f"{key} of several types has no Cedar equivalent "
                            "(only one type, optionally with null, maps to Cedar)")
                    schema = self.checked(present[0], path)
                    break
            else:
                kind = schema.get("type")
                if isinstance(kind, list):
                    present = [k for k in kind if k != "null"]
                    nullable = nullable or len(present) < len(kind)
                    if len(present) != 1:
                        raise self.fail(path, f"a union of types {kind} has no Cedar equivalent")
                    schema = {**schema, "type": present[0]}
                return schema, nullable

    def checked(self, schema: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(schema, Mapping):
            raise self.fail(path, "is not a JSON Schema object")
        return schema

    def is_null(self, schema: Any) -> bool:
        return isinstance(schema, Mapping) and (schema.get("type") == "null" or (
            "const" in schema and schema["const"] is None))

    def lookup(self, ref: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise self.fail(path, f"only local $ref (#/$defs/...) is supported, not {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise self.fail(path, f"$ref {ref!r} points nowhere")
            node = node[part]
        return self.checked(node, path)

    def convert(self, schema: Mapping[str, Any], path: str) -> dict[str, Any]:
        values = schema["enum"] if "enum" in schema else [schema["const"]] if "const" in schema else None
        kind = schema.get("type")
        if values is not None:
            if not isinstance(values, list) or not values:
                raise self.fail(path, "enum must be a non-empty list")
            if all(isinstance(v, str) for v in values) and kind in (None, "string"):
                return {"type": "String"}
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values) and kind in (
                    None, "integer", "number"):
                return {"type": "Long"}
            raise self.fail(path, "an enum maps to Cedar only when it holds only strings or only "
                                  "integers")
        if kind is None and "properties" in schema:
            kind = "object"
        if kind == "string":
            extension = _STRING_FORMATS.get(str(schema.get("format", "")))
            return {"type": "Extension", "name": extension} if extension else {"type": "String"}
        if kind == "integer":
            return {"type": "Long"}
        if kind == "number":
            return {"type": "Extension", "name": "decimal"}
        if kind == "boolean":
            return {"type": "Boolean"}
        if kind == "array":
            items = schema.get("items")
            if not isinstance(items, Mapping):
                raise self.fail(path, "an array needs an items schema (one type for every element)")
            element, _ = self.resolve(items, f"{path}[]", ())
            return {"type": "Set", "element": self.convert(element, f"{path}[]")}
        if kind == "object":
            return self.record(schema, path, empty_ok=False)
        if kind is None:
            raise self.fail(path, "has no type")
        raise self.fail(path, f"type {kind!r} has no Cedar equivalent")

    def record(self, schema: Mapping[str, Any], path: str, *, empty_ok: bool) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        if not isinstance(properties, Mapping):
            raise self.fail(path, "properties must be an object")
        if not properties and not empty_ok and schema.get("additionalProperties") is not False:
            raise self.fail(
                path, "an object without properties (free-form) has no Cedar equivalent: "
                "declare its properties")
        required = schema.get("required") or []
        if not isinstance(required, list):
            raise self.fail(path, "required must be a list")
        attributes: dict[str, Any] = {}
        for name, sub in properties.items():
            where = f"{path}.{name}" if path else str(name)
            resolved, nullable = self.resolve(sub, where, ())
            attribute = self.convert(resolved, where)
            if nullable or name not in required:
                attribute["required"] = False
            attributes[str(name)] = attribute
        return {"type": "Record", "attributes": attributes}
