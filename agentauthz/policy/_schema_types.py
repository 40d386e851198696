"""Reading a Cedar JSON schema document: declared entity types, actions and types, common types resolved.

Used where a value is checked or converted against what the schema declares:
token claims mapped to Cedar (:mod:`agentauthz.avp._tokens`) and requests of
decision cases explained (:mod:`agentauthz.testing._cases`).

A *resolved* type is one of ``{"type": "String" | "Long" | "Boolean"}``,
``{"type": "Set", "element": ...}`` (the element still to resolve),
``{"type": "Record", "attributes": {...}}`` (attributes still to resolve),
``{"type": "Entity", "name": "<full name>"}`` or ``{"type": "Extension",
"name": "ipaddr" | "decimal" | "datetime" | "duration"}``.

Example:
    >>> from agentauthz.policy._schema_json import cedar_schema_to_json
    >>> types = SchemaTypes(cedar_schema_to_json(
    ...     'namespace App { entity User; action read appliesTo { principal: User, resource: User, '
    ...     'context: { level: Long } }; }'))
    >>> [str(uid) for uid in types.actions()]
    ['App::Action::"read"']
    >>> types.applies_to(types.actions()[0], "principal")
    ['App::User']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agentauthz._model import EntityUID

__all__ = ["EXTENSION_CONSTRUCTORS", "SchemaTypes"]

#: Extension type -> the Cedar function that builds a value of it from a string.
EXTENSION_CONSTRUCTORS = {"ipaddr": "ip", "decimal": "decimal", "datetime": "datetime",
                          "duration": "duration"}
_PRIMITIVES = ("String", "Long", "Boolean", "Set", "Record", "Entity", "Extension", "EntityOrCommon")
_MAX_DEPTH = 16


class SchemaTypes:
    """Lookups in a Cedar JSON schema document (namespace -> declarations).

    Args:
        document: the schema as Cedar JSON, or None (then every lookup finds nothing).
    """

    def __init__(self, document: Mapping[str, Any] | None) -> None:
        self.document: Mapping[str, Any] | None = document if document else None

    @classmethod
    def from_schema(cls, schema: Any) -> SchemaTypes:
        """From a PolicyStore (its schema), schema text in either format, a JSON document, or None.

        Raises:
            PolicyError: the schema does not parse or convert.
        """
        if schema is None or isinstance(schema, Mapping):
            return cls(schema)
        text = schema if isinstance(schema, str) else getattr(schema, "schema_text", None)
        if text is None:
            return cls(None)
        from agentauthz.policy._schema_json import schema_json_text

        document = json.loads(schema_json_text(text))
        return cls(document if isinstance(document, Mapping) else None)

    # -- declarations ----------------------------------------------------------------------

    def _namespace(self, name: str) -> Mapping[str, Any]:
        body = self.document.get(name) if self.document is not None else None
        return body if isinstance(body, Mapping) else {}

    def entity_types(self) -> list[str]:
        """Full names of the declared entity types."""
        return [_full(space, name) for space in (self.document or {})
                for name in (self._namespace(space).get("entityTypes") or {})]

    def actions(self) -> list[EntityUID]:
        """Uids of the declared actions."""
        return [EntityUID(_full(space, "Action"), name) for space in (self.document or {})
                for name in (self._namespace(space).get("actions") or {})]

    def action(self, uid: EntityUID) -> Mapping[str, Any] | None:
        """The declaration of an action, or None when the schema does not declare it."""
        if uid.type != "Action" and not uid.type.endswith("::Action"):
            return None
        declared = (self._namespace(_namespace_of(uid.type)).get("actions") or {}).get(uid.id)
        return declared if isinstance(declared, Mapping) else None

    def applies_to(self, action: EntityUID, role: str) -> list[str]:
        """Full names of the ``role`` (``"principal"`` or ``"resource"``) types the action applies to."""
        declared = self.action(action) or {}
        applies = declared.get("appliesTo") or {}
        names = applies.get(f"{role}Types") if isinstance(applies, Mapping) else None
        namespace = _namespace_of(action.type)
        return [self._entity_name(name, namespace) for name in names or () if isinstance(name, str)]

    def context(self, action: EntityUID) -> Mapping[str, Any] | None:
        """The action's context type, resolved (an empty record when it declares none)."""
        declared = self.action(action) or {}
        applies = declared.get("appliesTo")
        context = applies.get("context") if isinstance(applies, Mapping) else None
        if context is None:
            return {"type": "Record", "attributes": {}}
        return self.resolve(context, _namespace_of(action.type))

    def entity_shape(self, entity_type: str) -> Mapping[str, Any] | None:
        """The attributes record of a declared entity type (resolved), or None when it is not declared."""
        namespace, _, name = entity_type.rpartition("::")
        declared = (self._namespace(namespace).get("entityTypes") or {}).get(name)
        if not isinstance(declared, Mapping):
            return None
        shape = declared.get("shape")
        if shape is None:
            return {"type": "Record", "attributes": {}}
        resolved = self.resolve(shape, namespace)
        return resolved if isinstance(resolved, Mapping) and resolved.get("type") == "Record" else None

    def _entity_name(self, name: str, namespace: str) -> str:
        if "::" in name or not namespace:
            return name
        declared = self._namespace(namespace).get("entityTypes") or {}
        return _full(namespace, name) if name in declared else name

    # -- types -----------------------------------------------------------------------------

    def resolve(self, declared: Any, namespace: str, depth: int = 0) -> Mapping[str, Any] | None:
        """A declared type with common-type references followed (see the module doc); None if unknown."""
        if depth > _MAX_DEPTH or not isinstance(declared, Mapping):
            return None
        kind = declared.get("type")
        name = declared.get("name")
        if kind in ("EntityOrCommon", "Entity", "Extension") and isinstance(name, str):
            return self._named(name, namespace, depth, kind)
        if isinstance(kind, str) and kind not in _PRIMITIVES:
            return self._named(kind, namespace, depth, "EntityOrCommon")
        return declared

    def _named(self, name: str, namespace: str, depth: int, kind: str) -> Mapping[str, Any] | None:
        bare = name.removeprefix("__cedar::")
        if kind != "Entity":
            if bare in ("String", "Long"):
                return {"type": bare}
            if bare in ("Bool", "Boolean"):
                return {"type": "Boolean"}
            if bare in EXTENSION_CONSTRUCTORS:
                return {"type": "Extension", "name": bare}
        space, _, short = name.rpartition("::")
        candidates = [(space, short)] if space else [(namespace, short), ("", short)]
        for space_name, short_name in candidates:
            body = self._namespace(space_name)
            if kind != "Entity":
                common = (body.get("commonTypes") or {}).get(short_name)
                if isinstance(common, Mapping):
                    return self.resolve(common, space_name, depth + 1)
            if short_name in (body.get("entityTypes") or {}):
                return {"type": "Entity", "name": _full(space_name, short_name)}
        return None


def _full(namespace: str, name: str) -> str:
    return f"{namespace}::{name}" if namespace else name


def _namespace_of(type_name: str) -> str:
    return type_name.rpartition("::")[0]
