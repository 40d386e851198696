"""Tools whose action the store's schema does not declare: where to add it, and what.

A tool call is a Cedar request for the tool's action; when the schema a store
is checked against does not declare it, every call is denied (Cedar cannot
build the request). ``validate_tools`` reports each such tool at the line of
the schema file where its declaration goes, with the declaration to add, as
schema generation writes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import cedarpy

from agentauthz._model import EntityUID
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._schema_text import Namespace, cedar_string, insertion_point, read_namespaces
from agentauthz.policy._store import PolicyStore
from agentauthz.tools._spec import ToolSpec

__all__ = ["missing_tool_actions"]


def missing_tool_actions(store: PolicyStore, tools: Iterable[ToolSpec], generated: str,
                         namespace: str) -> list[str]:
    """One problem per tool whose action the store's schema lacks, with where and what to add.

    Without a schema Cedar checks no action, so nothing is missing.

    Args:
        store: the store whose schema requests are checked against.
        tools: the registered tools.
        generated: the schema generated for the tools (the declarations suggested).
        namespace: the namespace ``generated`` holds the tool actions in.

    Example:
        >>> store = PolicyStore.from_text("permit(principal, action, resource);", schema=
        ...     "entity User, Tool;\\naction search appliesTo { principal: User, resource: Tool };")
        >>> from agentauthz.tools._spec import build_spec
        >>> def ping() -> str: ...
        >>> spec = build_spec(ping, name=None, action=None, resource=None, resource_types=(),
        ...                   context=None, on_deny="raise")
        >>> from agentauthz.tools._schema import generate_schema
        >>> generated = generate_schema(store.schema_text, tools=[spec], principal_types=["User"])
        >>> print(missing_tool_actions(store, [spec], generated, "")[0])
        <schema>:3: tool 'ping' has no action in the schema, so no call of it can be decided: \
add: action "ping" appliesTo { principal: [User], resource: [Tool], context: { input: {} } };
    """
    text = store.schema_text
    if text is None:
        return []
    declared = set(store.actions)
    names: dict[str, set[EntityUID]] = {}
    for uid in declared:
        names.setdefault(uid.id, set()).add(uid)
    declarations = _declarations(generated, namespace, as_json=text.lstrip().startswith("{"))
    problems = []
    for spec in sorted(tools, key=lambda spec: spec.name):
        action = spec.action
        if isinstance(action, str) and '::"' in action:
            action = EntityUID.parse(action)
        if isinstance(action, EntityUID):
            found = action in declared
            space = action.type.removesuffix("Action").removesuffix("::")
        else:
            found = len(names.get(action, ())) == 1 or EntityUID("Action", action) in declared
            space = namespace
            if not found and len(names.get(action, ())) > 1:
                spaces = sorted(str(uid) for uid in names[action])
                problems.append(f"{store.schema_source}: tool {spec.name!r}: action {action!r} is declared "
                                f"as {', '.join(spaces)}: name one in full (@authz.guard(action=...))")
                continue
        if found:
            continue
        name = action.id if isinstance(action, EntityUID) else action
        declaration = declarations.get(name) if space == namespace else None
        line, opened = insertion_point(text, space)
        what = declaration or f"action {cedar_string(name)} appliesTo {{ ... }};"
        if not opened and space and not text.lstrip().startswith("{"):
            what = f"namespace {space} {{ {what} }}"
        problems.append(f"{store.schema_source}:{line}: tool {spec.name!r} has no action in the schema, "
                        f"so no call of it can be decided: add: {what}")
    return problems


def _declarations(generated: str, namespace: str, *, as_json: bool) -> dict[str, str]:
    """Each action of ``namespace`` in ``generated``, one line, in Cedar text or as a JSON member."""
    if as_json:
        document = json.loads(schema_json_text(generated))
        actions = (document.get(namespace) or {}).get("actions") or {}
        return {name: json.dumps({name: entry}, ensure_ascii=False)[1:-1] for name, entry in actions.items()}
    text = generated if not generated.lstrip().startswith("{") else str(
        cedarpy.Schema.from_json_str(generated))
    space = read_namespaces(text, "<generated>").get(namespace, Namespace())
    return {name: _one_line(text[decl.start:decl.end]) for name, decl in space.actions.items()
            if decl is not None}


def _one_line(declaration: str) -> str:
    parts = re.split(r'("(?:[^"\\]|\\.)*")', declaration)  # odd parts: string literals, kept
    for index in range(0, len(parts), 2):
        parts[index] = re.sub(r"\s+", " ", re.sub(r"\{\s+\}", "{}", parts[index]))
    return "".join(parts).strip()
