"""Request shapes already known to conform to the schema.

With a schema, cedarpy checks every request against it before evaluating: the
action is declared, the principal and resource types are ones the action
applies to, the context has exactly the declared attributes with the declared
types. On a small tool call that check is about a tenth of the call.

Whether a request passes depends only on its *shape*: the principal and
resource types, the action, and the context's attribute names and value types
(for an entity reference its type; for an extension value its function; for a
set the shapes of its elements). Ids matter only for enumerated entity types,
whose ids the schema lists, so the shape of such an entity keeps its id.

:class:`KnownShapes` remembers the shapes Cedar accepted for one store
version. A request of a known shape is evaluated without the schema: the
entities handle already holds the schema's action entities and the context is
written in explicit Cedar JSON (``__entity``, ``__extn``), so the decision,
determining policies and errors are the same. A request of an unknown shape
goes to Cedar with the schema, which decides it and, when it passes (Allow or
Deny rather than a refused request), teaches its shape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentauthz._model import Request

__all__ = ["KnownShapes", "enumerated_types"]

# Shapes remembered per store version; past this the memory starts over.
_MAX_SHAPES = 4096

Shape = Any
_SCALARS: dict[type, str] = {str: "s", bool: "b", int: "l"}


class KnownShapes:
    """Shapes of requests that passed Cedar's schema check, for one store version.

    Args:
        enumerated: entity types whose ids the schema enumerates.

    Example:
        >>> from agentauthz import EntityUID
        >>> shapes = KnownShapes(frozenset())
        >>> a = Request(EntityUID("User", "a"), EntityUID("Action", "x"), EntityUID("Doc", "1"), {"n": 1})
        >>> b = Request(EntityUID("User", "b"), EntityUID("Action", "x"), EntityUID("Doc", "2"), {"n": 2})
        >>> shapes.shape(a) == shapes.shape(b)
        True
    """

    def __init__(self, enumerated: frozenset[str]) -> None:
        self._enumerated = enumerated
        self._known: set[Shape] = set()

    def shape(self, request: Request) -> Shape:
        """The request's shape, or None when its context is not plain Cedar JSON."""
        principal = request.principal
        resource = request.resource
        action = request.action
        enumerated = self._enumerated
        try:
            context = self._value(request.cedar_context)
        except (TypeError, KeyError, AttributeError):
            return None
        return (
            principal.type, principal.id if principal.type in enumerated else None,
            ("Action", action) if isinstance(action, str) else (action.type, action.id),
            resource.type, resource.id if resource.type in enumerated else None,
            context,
        )

    def all_known(self, shapes: Sequence[Shape]) -> bool:
        """Whether every shape has passed the schema check before."""
        known = self._known
        return all(shape is not None and shape in known for shape in shapes)

    def learn(self, shapes: Sequence[Shape], passed: Sequence[bool]) -> None:
        """Remember the shapes whose requests Cedar accepted with the schema."""
        known = self._known
        for shape, ok in zip(shapes, passed, strict=True):
            if ok and shape is not None:
                if len(known) >= _MAX_SHAPES:
                    known.clear()
                known.add(shape)

    def _value(self, value: Any) -> Shape:
        kind = type(value)
        if kind is dict:
            if "__entity" in value or "__extn" in value:
                return self._tagged(value)
            # Scalars inline: a context is mostly records of strings, numbers and booleans.
            return ("record", tuple(
                (key, _SCALARS.get(type(item)) or self._value(item)) for key, item in value.items()))
        scalar = _SCALARS.get(kind)
        if scalar is not None:
            return scalar
        if kind is list:
            return ("set", frozenset(self._value(item) for item in value))
        raise TypeError(kind.__name__)

    def _tagged(self, value: dict[str, Any]) -> Shape:
        if len(value) != 1:
            raise TypeError("an entity reference or extension value with other keys")
        entity = value.get("__entity")
        if entity is not None:
            entity_type = entity["type"]
            return ("entity", entity_type, entity["id"] if entity_type in self._enumerated else None)
        return ("extension", value["__extn"]["fn"])


def enumerated_types(schema_json: str) -> frozenset[str]:
    """The entity types a JSON schema declares with an ``enum`` of ids (fully qualified)."""
    found = set()
    for namespace, declarations in json.loads(schema_json).items():
        for name, declaration in (declarations.get("entityTypes") or {}).items():
            if "enum" in declaration:
                found.add(f"{namespace}::{name}" if namespace else name)
    return frozenset(found)
