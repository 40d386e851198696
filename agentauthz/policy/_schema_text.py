"""Reading a Cedar schema as written: its tokens, and its declarations located in the text.

Schema generation edits the stub the author wrote (an action replaced where it
stands, new ones added at the end of their namespace) instead of printing the
schema anew, so that the stub's comments, order and layout survive. That needs
what cedarpy does not give: where each declaration starts and ends. This
module reads Cedar schema text into :class:`Namespace` objects holding located
:class:`Declaration` objects (:func:`read_namespaces`), reads the same names out
of a JSON schema (:func:`json_namespaces`), and says where a declaration of a
namespace goes (:func:`insertion_point`). :mod:`agentauthz.policy._schema_json`
tokenizes with :func:`schema_tokens` too.

The text must be a schema Cedar accepts (callers parse it with cedarpy first);
anything this reader cannot follow is a :class:`~agentauthz.PolicyError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentauthz._errors import PolicyError
from agentauthz._model import unescape

__all__ = [
    "Declaration",
    "Namespace",
    "Token",
    "attribute_name",
    "cedar_string",
    "insertion_point",
    "json_namespaces",
    "read_namespaces",
    "schema_tokens",
]

_TOKEN = re.compile(
    r'(?P<space>\s+)|(?P<comment>//[^\n]*)|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<sep>::)|(?P<punct>.)",
    re.S,
)
_OPEN = {"{": "}", "[": "]", "(": ")", "<": ">"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words Cedar's schema grammar does not take as a bare attribute name.
_RESERVED = frozenset({"in", "is", "if", "then", "else", "true", "false", "has", "like"})


@dataclass(frozen=True)
class Token:
    """A token of schema text: ``ident``, ``string``, ``sep`` (``::``) or ``punct``, with its offsets."""

    kind: str
    text: str
    start: int
    end: int


def schema_tokens(text: str) -> list[Token]:
    """The tokens of Cedar schema text, whitespace and ``//`` comments left out.

    Example:
        >>> [t.text for t in schema_tokens('entity User; // people')]
        ['entity', 'User', ';']
    """
    return [Token(m.lastgroup or "", m.group(), m.start(), m.end())
            for m in _TOKEN.finditer(text) if m.lastgroup not in ("space", "comment")]


def cedar_string(value: str) -> str:
    """``value`` as a Cedar string literal.

    Example:
        >>> print(cedar_string('say "hi"\\n'))
        "say \\"hi\\"\\n"
    """
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def attribute_name(name: str) -> str:
    """An attribute name as a schema writes it: bare when it can be, else quoted.

    Example:
        >>> attribute_name("amount"), attribute_name("in"), attribute_name("a b")
        ('amount', '"in"', '"a b"')
    """
    return name if _IDENTIFIER.fullmatch(name) and name not in _RESERVED else cedar_string(name)


@dataclass
class Declaration:
    """One declaration (``entity``, ``type``, ``action``) located in the schema text.

    Attributes:
        kind: ``entity``, ``type`` or ``action``.
        names: the names it declares (``entity A, B;`` declares two).
        start: offset of its first token (its first annotation, if any).
        end: offset just past its ``;``.
        annotations: its annotations (``@name("value")``; a bare ``@name`` maps to ``""``).
        prefix: the annotations as written, up to the keyword.
        member_of: an action's ``in [...]`` as written, else ``""``.
    """

    kind: str
    names: list[str]
    start: int
    end: int
    annotations: dict[str, str]
    prefix: str = ""
    member_of: str = ""


@dataclass
class Namespace:
    """What one namespace of a schema declares.

    Attributes:
        entity_types: entity type names.
        common_types: common type names.
        actions: action names; their declarations when read from text (None from JSON).
        principals: entity types annotated ``@mcp_principal``.
        contexts: ``(attribute, common type)`` of common types annotated ``@mcp_context``.
        close: offset of the namespace's closing brace (text; None at the top level).
        commons: common type declarations (text).
    """

    entity_types: set[str] = field(default_factory=set)
    common_types: set[str] = field(default_factory=set)
    actions: dict[str, Declaration | None] = field(default_factory=dict)
    principals: list[str] = field(default_factory=list)
    contexts: list[tuple[str, str]] = field(default_factory=list)
    close: int | None = None
    commons: dict[str, Declaration] = field(default_factory=dict)

    def add(self, declaration: Declaration) -> None:
        """Record a declaration read from text."""
        annotations = declaration.annotations
        if declaration.kind == "entity":
            for name in declaration.names:
                self.entity_types.add(name)
                if "mcp_principal" in annotations:
                    self.principals.append(name)
        elif declaration.kind == "type":
            common = declaration.names[0]
            self.common_types.add(common)
            self.commons[common] = declaration
            if "mcp_context" in annotations:
                self.contexts.append((annotations["mcp_context"] or common, common))
        else:
            for name in declaration.names:
                self.actions[name] = declaration


def read_namespaces(text: str, name: str = "<stub>") -> dict[str, Namespace]:
    """The namespaces of Cedar schema text (``""`` is the top level), declarations located.

    Args:
        text: schema text Cedar accepts (comments and any layout are fine).
        name: how the text is named in errors.

    Raises:
        PolicyError: the text is not a schema this reader can follow.

    Example:
        >>> spaces = read_namespaces('@mcp_principal entity User;\\nnamespace A { action "go"; }')
        >>> spaces[""].principals, list(spaces["A"].actions)
        (['User'], ['go'])
    """
    return _Reader(text, name).namespaces()


class _Reader:
    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name
        self.tokens = schema_tokens(text)
        self.index = 0

    def fail(self) -> PolicyError:
        at = self.tokens[self.index].start if self.index < len(self.tokens) else len(self.text)
        line = self.text.count("\n", 0, at) + 1
        return PolicyError(f"{self.name}:{line}: cannot read the schema text here")

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.fail()
        self.index += 1
        return token

    def annotations(self) -> dict[str, str]:
        found: dict[str, str] = {}
        while (token := self.peek()) is not None and token.text == "@":
            self.take()
            key = self.take().text
            value = ""
            if (after := self.peek()) is not None and after.text == "(":
                self.take()
                literal = self.take().text
                value = unescape(literal[1:-1], literal)
                if self.take().text != ")":
                    raise self.fail()
            found[key] = value
        return found

    def namespaces(self) -> dict[str, Namespace]:
        spaces: dict[str, Namespace] = {"": Namespace()}
        while self.peek() is not None:
            start = self.index
            self.annotations()
            token = self.peek()
            if token is not None and token.kind == "ident" and token.text == "namespace":
                self.take()
                path = []
                while (part := self.take()).text != "{":
                    path.append(part.text)
                space = spaces.setdefault("".join(path), Namespace())
                while (inner := self.peek()) is not None and inner.text != "}":
                    space.add(self.declaration())
                space.close = self.take().start
            else:
                self.index = start
                spaces[""].add(self.declaration())
        return spaces

    def declaration(self) -> Declaration:
        first = self.peek()
        if first is None:
            raise self.fail()
        annotations = self.annotations()
        keyword = self.take()
        if keyword.text not in ("entity", "type", "action"):
            raise self.fail()
        names = self.names()
        member_of, end = self.body(keyword.text == "action")
        return Declaration(keyword.text, names, first.start, end, annotations,
                           self.text[first.start:keyword.start], member_of)

    def names(self) -> list[str]:
        names: list[str] = []
        while True:
            token = self.take()
            if token.kind not in ("ident", "string"):
                raise self.fail()
            names.append(unescape(token.text[1:-1], token.text) if token.kind == "string" else token.text)
            after = self.peek()
            if after is None or after.text != ",":
                return names
            self.take()

    def body(self, is_action: bool) -> tuple[str, int]:
        """Skip to the declaration's ``;``: an action's ``in [...]`` as written, and the end offset."""
        member_of = ""
        member_start: int | None = None
        depth = 0
        while True:
            token = self.take()
            if depth == 0 and is_action:
                if token.text == "in" and member_start is None and not member_of:
                    member_start = token.start
                elif member_start is not None and token.text in ("appliesTo", "attributes", ";"):
                    member_of = self.text[member_start:token.start].strip()
                    member_start = None
            if token.text in _OPEN:
                depth += 1
            elif token.text in _OPEN.values():
                depth -= 1
            elif depth == 0 and token.text == ";":
                return member_of, token.end


def json_namespaces(document: Mapping[str, Any]) -> dict[str, Namespace]:
    """The namespaces of a Cedar JSON schema, as :func:`read_namespaces` reads text (no offsets).

    Example:
        >>> json_namespaces({"": {"entityTypes": {"User": {}}, "actions": {"go": {}}}})[""].entity_types
        {'User'}
    """
    spaces: dict[str, Namespace] = {}
    for namespace, body in document.items():
        space = spaces.setdefault(namespace, Namespace())
        for entity, definition in (body.get("entityTypes") or {}).items():
            space.entity_types.add(entity)
            if "mcp_principal" in ((definition or {}).get("annotations") or {}):
                space.principals.append(entity)
        for common, definition in (body.get("commonTypes") or {}).items():
            space.common_types.add(common)
            annotations = (definition or {}).get("annotations") or {}
            if "mcp_context" in annotations:
                space.contexts.append((annotations["mcp_context"] or common, common))
        for action in body.get("actions") or {}:
            space.actions[action] = None
    return spaces


def insertion_point(text: str, namespace: str) -> tuple[int, bool]:
    """The 1-based line where an action of ``namespace`` goes, and whether the namespace exists.

    Cedar text: the line of the namespace's closing brace, or past the end of
    the file for the top level. JSON: the line after the namespace's
    ``"actions"`` key (or after its own key).

    Example:
        >>> insertion_point('entity User;\\nnamespace A {\\n  entity B;\\n}\\n', "A")
        (4, True)
    """
    if text.lstrip().startswith("{"):
        return _json_insertion_point(text, namespace)
    end = len(text.splitlines()) + 1
    if not namespace:
        return end, True
    tokens = schema_tokens(text)
    for index, token in enumerate(tokens):
        if token.text != "namespace" or token.kind != "ident":
            continue
        path, position = [], index + 1
        while position < len(tokens) and tokens[position].text != "{":
            path.append(tokens[position].text)
            position += 1
        if "".join(path) != namespace:
            continue
        depth = 0
        for closing in tokens[position:]:
            depth += {"{": 1, "}": -1}.get(closing.text, 0)
            if depth == 0:
                return text.count("\n", 0, closing.start) + 1, True
    return end, False


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')


def _json_insertion_point(text: str, namespace: str) -> tuple[int, bool]:
    containers: list[str] = []  # "{" or "[" per open container
    keys: list[str | None] = []  # the key being read or last read in each open object
    pending: str | None = None
    found_space: int | None = None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        line = text.count("\n", 0, match.start()) + 1
        if token in "{[":
            containers.append(token)
            keys.append(None)
        elif token in "}]" and containers:
            containers.pop()
            keys.pop()
        elif token == ":" and pending is not None and containers and containers[-1] == "{":
            keys[-1] = pending
            depth = len(containers)
            if depth == 1 and pending == namespace:
                found_space = line + 1
            elif depth == 2 and pending == "actions" and keys[0] == namespace:
                return line + 1, True
        pending = json.loads(token) if token.startswith('"') else None
    return (found_space, True) if found_space is not None else (2, False)
