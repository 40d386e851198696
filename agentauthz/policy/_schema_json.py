"""Cedar schema text to Cedar's JSON schema format.

Amazon Verified Permissions stores a policy store's schema only in the JSON
format (``PutSchema`` takes ``cedarJson``), while policy authors write the
human-readable ``.cedarschema`` text. cedarpy parses both but converts neither,
so this module does: it parses the text Cedar itself prints for the schema
(``str(cedarpy.Schema)``, a normalized form) and builds the JSON document, then
proves the conversion by parsing the JSON back and comparing Cedar's printouts.

Example:
    >>> doc = cedar_schema_to_json('entity User; action read appliesTo {principal: User, resource: User};')
    >>> sorted(doc[""]["actions"])
    ['read']
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import cedarpy

from agentauthz._errors import PolicyError
from agentauthz._model import unescape
from agentauthz.policy._schema_text import schema_tokens

__all__ = ["cedar_schema_to_json", "schema_json_text"]

# The kinds of schema_tokens, as this parser names them.
_KINDS = {"string": "str", "ident": "ident", "sep": "punct", "punct": "punct"}
_PRIMITIVES = {"Long": "Long", "String": "String", "Bool": "Boolean"}
_EXTENSIONS = ("ipaddr", "decimal", "datetime", "duration")


def schema_json_text(schema_text: str) -> str:
    """The schema as Cedar JSON text, whichever format ``schema_text`` is written in.

    Raises:
        PolicyError: the schema does not parse, or cannot be converted faithfully.
    """
    if schema_text.lstrip().startswith("{"):
        try:
            cedarpy.Schema.from_json_str(schema_text)
        except ValueError as exc:
            raise PolicyError(f"<schema>: {exc}") from exc
        return schema_text
    return json.dumps(cedar_schema_to_json(schema_text), ensure_ascii=False, sort_keys=True)


def cedar_schema_to_json(schema_text: str) -> dict[str, Any]:
    """Convert Cedar schema text to the JSON schema document (namespace -> declarations).

    The result is checked: Cedar must read it as the same schema as the text.

    Raises:
        PolicyError: the text does not parse, or the conversion does not round-trip.
    """
    try:
        normalized = str(cedarpy.Schema.from_str(schema_text))
    except ValueError as exc:
        raise PolicyError(f"<schema>: {exc}") from exc
    document = _Parser(normalized).schema()
    try:
        again = str(cedarpy.Schema.from_json_str(json.dumps(document)))
    except ValueError as exc:
        raise PolicyError(f"<schema>: the JSON form does not parse: {exc}") from exc
    if again != normalized:
        raise PolicyError("<schema>: cannot convert this schema to JSON faithfully")
    return document


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = [(_KINDS[token.kind], token.text) for token in schema_tokens(text)]
        self.index = 0

    # -- tokens --------------------------------------------------------------------

    def peek(self, offset: int = 0) -> tuple[str, str]:
        at = self.index + offset
        return self.tokens[at] if at < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token_kind, token = self.peek()
        if (value is not None and token != value) or (kind is not None and token_kind != kind) or (
                token_kind == "eof"):
            raise PolicyError(f"<schema>: expected {value or kind}, found {token or 'end of text'!r}")
        self.index += 1
        return token

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value and self.peek()[0] != "str":
            self.index += 1
            return True
        return False

    def name(self) -> str:
        kind, token = self.peek()
        if kind == "str":
            self.index += 1
            return unescape(token[1:-1], token)
        return self.take(kind="ident")

    def path(self) -> str:
        parts = [self.take(kind="ident")]
        while self.peek()[1] == "::" and self.peek(1)[0] == "ident":
            self.index += 1
            parts.append(self.take(kind="ident"))
        return "::".join(parts)

    # -- grammar -------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        while self.peek()[0] != "eof":
            annotations = self.annotations()
            if self.peek()[1] == "namespace" and self.peek(1)[0] == "ident":
                self.take("namespace")
                name = self.path()
                space = self.space(document, name)
                if annotations:
                    space["annotations"] = annotations
                self.take("{")
                while not self.accept("}"):
                    self.declaration(space, self.annotations())
            else:
                self.declaration(self.space(document, ""), annotations)
        return document

    @staticmethod
    def space(document: dict[str, Any], name: str) -> dict[str, Any]:
        return document.setdefault(name, {"entityTypes": {}, "actions": {}})  # type: ignore[no-any-return]

    def annotations(self) -> dict[str, str]:
        found: dict[str, str] = {}
        while self.accept("@"):
            key = self.take(kind="ident")
            value = ""
            if self.accept("("):
                token = self.take(kind="str")
                value = unescape(token[1:-1], token)
                self.take(")")
            found[key] = value
        return found

    def declaration(self, space: dict[str, Any], annotations: dict[str, str]) -> None:
        keyword = self.take(kind="ident")
        handlers: dict[str, Callable[[dict[str, Any], dict[str, str]], None]] = {
            "entity": self.entity, "action": self.action, "type": self.common_type}
        handler = handlers.get(keyword)
        if handler is None:
            raise PolicyError(f"<schema>: unexpected {keyword!r}")
        handler(space, annotations)

    def entity(self, space: dict[str, Any], annotations: dict[str, str]) -> None:
        names = [self.take(kind="ident")]
        while self.accept(","):
            names.append(self.take(kind="ident"))
        body: dict[str, Any] = {}
        if self.accept("enum"):
            self.take("[")
            values = [self.name()]
            while self.accept(","):
                if self.peek()[1] == "]":
                    break
                values.append(self.name())
            self.take("]")
            body["enum"] = values
        else:
            if self.accept("in"):
                body["memberOfTypes"] = self.type_list()
            self.accept("=")
            if self.peek()[1] == "{":
                body["shape"] = self.record()
            if self.accept("tags"):
                body["tags"] = self.type()
        self.take(";")
        if annotations:
            body["annotations"] = annotations
        for name in names:
            space["entityTypes"][name] = json.loads(json.dumps(body))

    def action(self, space: dict[str, Any], annotations: dict[str, str]) -> None:
        names = [self.name()]
        while self.accept(","):
            names.append(self.name())
        body: dict[str, Any] = {}
        if self.accept("in"):
            body["memberOf"] = self.action_refs()
        if self.accept("appliesTo"):
            body["appliesTo"] = self.applies_to()
        self.take(";")
        if annotations:
            body["annotations"] = annotations
        for name in names:
            space["actions"][name] = json.loads(json.dumps(body))

    def common_type(self, space: dict[str, Any], annotations: dict[str, str]) -> None:
        name = self.take(kind="ident")
        self.take("=")
        declared = self.type()
        self.take(";")
        if annotations:
            declared["annotations"] = annotations
        space.setdefault("commonTypes", {})[name] = declared

    def action_refs(self) -> list[dict[str, str]]:
        if not self.accept("["):
            return [self.action_ref()]
        refs: list[dict[str, str]] = []
        while not self.accept("]"):
            refs.append(self.action_ref())
            self.accept(",")
        return refs

    def action_ref(self) -> dict[str, str]:
        if self.peek()[0] == "str":
            return {"id": self.name()}
        parts = [self.take(kind="ident")]
        while self.accept("::"):
            if self.peek()[0] == "str":
                return {"type": "::".join(parts), "id": self.name()}
            parts.append(self.take(kind="ident"))
        if len(parts) != 1:
            raise PolicyError(f"<schema>: bad action reference {'::'.join(parts)!r}")
        return {"id": parts[0]}

    def type_list(self) -> list[str]:
        if not self.accept("["):
            return [self.path()]
        names: list[str] = []
        while not self.accept("]"):
            names.append(self.path())
            self.accept(",")
        return names

    def applies_to(self) -> dict[str, Any]:
        self.take("{")
        applies: dict[str, Any] = {"principalTypes": [], "resourceTypes": []}
        while not self.accept("}"):
            key = self.take(kind="ident")
            self.take(":")
            if key in ("principal", "resource"):
                applies[f"{key}Types"] = self.type_list()
            elif key == "context":
                applies["context"] = self.type()
            else:
                raise PolicyError(f"<schema>: unexpected {key!r} in appliesTo")
            self.accept(",")
        return applies

    def record(self) -> dict[str, Any]:
        self.take("{")
        attributes: dict[str, Any] = {}
        while not self.accept("}"):
            annotations = self.annotations()
            name = self.name()
            optional = self.accept("?")
            self.take(":")
            attribute = self.type()
            if optional:
                attribute["required"] = False
            if annotations:
                attribute["annotations"] = annotations
            attributes[name] = attribute
            self.accept(",")
        return {"type": "Record", "attributes": attributes}

    def type(self) -> dict[str, Any]:
        if self.peek()[1] == "{":
            return self.record()
        name = self.path()
        if name in ("Set", "__cedar::Set") and self.accept("<"):
            element = self.type()
            self.take(">")
            return {"type": "Set", "element": element}
        # A bare name can be a common type, an entity type or a builtin: Cedar's
        # JSON format says exactly that with EntityOrCommon, resolved as the text is.
        return {"type": "EntityOrCommon", "name": name}
