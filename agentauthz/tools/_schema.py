"""Cedar schema generation for tools: one action per tool, arguments in ``context.input``.

Tools come from two places: guarded Python functions (their :class:`ToolSpec`,
whose ``input_type`` :func:`~agentauthz.tools._spec.cedar_type` built from the
signature) and MCP tool descriptions (``name``, ``description``, a JSON Schema
``inputSchema``). Each becomes an action declaration following the
Cedar-for-agents convention::

    action "<tool>" appliesTo {
      principal: [<principal types>],
      resource: [<resource types>],
      context: { input: <record>, session?: <session record> },
    };

merged into a schema stub the user writes (Cedar schema text or Cedar JSON
schema) that declares the principal, resource and tool entity types.

Rules of the merge:

- The actions go into the stub's namespace: its only named namespace, or the
  top level when it has none; ``namespace=`` chooses another one (a namespace
  the stub lacks is created).
- An action the stub already declares under a tool's name is **replaced**
  (its action groups, ``in [...]``, and annotations are kept), so generating
  again from a full schema is idempotent; ``existing="error"`` refuses instead.
- Principal types are ``principal_types`` or, without it, the stub's entity
  types annotated ``@mcp_principal`` (the upstream generator's convention).
- A tool without a resource (every MCP tool, and guarded functions without
  ``resource=``) has the tool entity type as resource (``Tool`` unless
  ``tool_type=`` says otherwise); a guard with a computed resource must name its
  ``resource_types``.
- ``context.session`` is ``session?: <session_type>`` when the stub declares
  that common type (``Session`` by default); common types annotated
  ``@mcp_context("<name>")`` add a required ``<name>`` attribute, as upstream.
- The stub's session type (the type of ``context.session``) is **declared
  anew** from the tools, as :mod:`agentauthz.session._session` fills it: ``seen``,
  ``actions``, ``last_action``, ``last_actions``, ``approved``, and records
  ``calls`` and ``window_calls`` with one ``Long`` per tool action and
  ``totals`` with the summed arguments of each tool (``@authz.guard(
  sum_arguments=[...])``, ``session_sums=``). Its annotations are kept. A type
  annotated ``@mcp_context("session")`` is the stub's own and kept as written.
- Extra context a guard computes (``context=``) is not declared: its types are
  unknown. Policies that read it fail validation against the generated schema.

MCP ``inputSchema`` mapping (agrees with ``cedar-policy-mcp-schema-generator``
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

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cedarpy

from agentauthz._errors import ConfigurationError, PolicyError
from agentauthz._model import EntityUID
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._store import PolicyStore, truncate, validate_policies
from agentauthz.session._facts import (
    ProducedFacts,
    action_name,
    declared_facts,
    policy_reads,
    schema_reads,
    unproduced,
)
from agentauthz.session._session import SchemaShapes, session_record_type
from agentauthz.tools._spec import ToolSpec, spec_of

__all__ = [
    "DEFAULT_SESSION_TYPE",
    "DEFAULT_TOOL_TYPE",
    "generate_schema",
    "mcp_input_type",
    "missing_tool_actions",
    "read_mcp_tools",
    "tool_specs",
    "tool_sums",
    "validate_policies_for_tools",
]

DEFAULT_TOOL_TYPE = "Tool"
DEFAULT_SESSION_TYPE = "Session"
Existing = Literal["replace", "error"]
StubInput = str | Mapping[str, Any] | os.PathLike[str]

_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")
_PRIMITIVES = {"Long": "Long", "String": "String", "Boolean": "Bool"}
_STRING_FORMATS = {
    "date-time": "datetime",
    "date": "datetime",
    "ipv4": "ipaddr",
    "ipv6": "ipaddr",
    "duration": "duration",
    "decimal": "decimal",
}


# -- public API -------------------------------------------------------------------------


def generate_schema(
    stub: StubInput,
    *,
    tools: Iterable[Any] | Mapping[str, Any] = (),
    mcp_tools: Iterable[Mapping[str, Any]] = (),
    principal_types: Sequence[str] = (),
    namespace: str | None = None,
    tool_type: str = DEFAULT_TOOL_TYPE,
    session_type: str | None = DEFAULT_SESSION_TYPE,
    existing: Existing = "replace",
    session_sums: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """A Cedar schema: the stub plus one action per tool (and the session type).

    Args:
        stub: Cedar schema text, Cedar JSON schema (text or a mapping), or a
            path to either (``*.json`` is read as JSON). It declares the
            principal, resource and tool entity types.
        tools: guarded functions or their :class:`ToolSpec` (a list, or a dict
            such as ``Authorizer.tools``).
        mcp_tools: MCP tool descriptions (``name``, ``inputSchema``).
        principal_types: entity types of the principal; default: the stub's
            entity types annotated ``@mcp_principal``.
        namespace: where the actions go; default: the stub's only named
            namespace, else the top level (``""``).
        tool_type: entity type of the resource of a tool that names none (pass
            the Authorizer's ``tool_entity_type``).
        session_type: common type of the optional ``context.session``, added
            when the stub declares it; None never adds it.
        existing: ``"replace"`` actions the stub already declares under a
            tool's name, or ``"error"``.
        session_sums: summed arguments per tool action besides those the
            guards declare (``SessionConfig.sums``), for ``totals``.

    Returns:
        The schema in the stub's format: canonical Cedar schema text (as
        cedarpy renders it, declarations sorted) or indented JSON.

    Raises:
        ConfigurationError: a tool type with no Cedar equivalent (naming the
            tool and property), an entity type the stub does not declare, no
            principal types, two tools with one action, a conflicting action
            with ``existing="error"``.
        PolicyError: the stub does not parse, or the result does not.

    Example:
        >>> stub = 'entity User; entity Tool;'
        >>> print(generate_schema(stub, principal_types=["User"], mcp_tools=[
        ...     {"name": "add", "inputSchema": {"type": "object",
        ...      "properties": {"a": {"type": "integer"}}, "required": ["a"]}}]))
        entity Tool;
        <BLANKLINE>
        entity User;
        <BLANKLINE>
        action "add" appliesTo {
          principal: [User],
          resource: [Tool],
          context: {
            input: {
              a: Long
            }
          }
        };
        <BLANKLINE>
    """
    return _generate(stub, tools, mcp_tools, principal_types, namespace, tool_type, session_type, existing,
                     session_sums)[0]


def _generate(stub: StubInput, tools: Iterable[Any] | Mapping[str, Any],
              mcp_tools: Iterable[Mapping[str, Any]], principal_types: Sequence[str],
              namespace: str | None, tool_type: str, session_type: str | None, existing: Existing,
              session_sums: Mapping[str, Sequence[str]] | None) -> tuple[str, str]:
    """The generated schema and the namespace its tool actions went into."""
    if existing not in ("replace", "error"):
        raise ConfigurationError(f"existing must be 'replace' or 'error', not {existing!r}")
    parsed = _read_stub(stub)
    target = _choose_namespace(parsed, namespace)
    space = parsed.spaces.get(target, _Space())
    principals = tuple(principal_types) or tuple(space.principals)
    if not principals:
        raise ConfigurationError(
            "no principal types: pass principal_types (CLI: --principal-type) or annotate "
            "entity types of the stub with @mcp_principal")
    actions = _actions(tools, mcp_tools, principals, tool_type, target, session_sums or {})
    context = _shared_context(parsed, target, session_type)
    session = _session_type(parsed, target, context, actions)
    for action in actions:
        for type_name, role in action.entity_types():
            _check_entity_type(parsed, target, type_name, role)
        if action.name in space.actions and existing == "error":
            where = f"in namespace {target!r}" if target else "at the top level"
            raise ConfigurationError(
                f"the stub already declares action {action.name!r} {where} for {action.source}: "
                "remove it from the stub or let generation replace it (existing='replace')")
    if parsed.kind == "json":
        return _merge_json(parsed, target, actions, context, session), target
    return _merge_text(parsed, target, actions, context, session), target


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
    name = _mcp_name(tool)
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


def tool_specs(tools: Iterable[Any] | Mapping[str, Any]) -> list[ToolSpec]:
    """The :class:`ToolSpec` of each tool: specs, guarded functions, or an Authorizer's ``tools``.

    Raises:
        ConfigurationError: an item is not a guarded tool.

    Example:
        >>> tool_specs([])
        []
    """
    items = tools.values() if isinstance(tools, Mapping) else tools
    specs = []
    for item in items:
        spec = item if isinstance(item, ToolSpec) else spec_of(item)
        if spec is None:
            label = getattr(item, "__name__", None) or type(item).__name__
            raise ConfigurationError(f"{label!r} is not a guarded tool (decorate it with @authz.guard)")
        specs.append(spec)
    return specs


def validate_policies_for_tools(
    store: PolicyStore,
    tools: Iterable[Any] | Mapping[str, Any],
    stub: StubInput,
    *,
    principal_types: Sequence[str] = (),
    namespace: str | None = None,
    tool_type: str = DEFAULT_TOOL_TYPE,
    session_type: str | None = DEFAULT_SESSION_TYPE,
    session_sums: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Check a store against its tools: schema actions, session facts, and policies.

    Reports, all at once:

    * every tool whose action the store's schema does not declare (no call of
      it could be decided), at the line of the schema file where to add it,
      with the declaration to add (as :func:`generate_schema` writes it);
    * every ``context.session`` fact the store's schema declares or a policy
      reads that nothing fills: a total of an argument no tool sums
      (``sum_arguments``, ``session_sums``), an attribute agentauthz does not
      record (see :mod:`agentauthz.session._facts`);
    * every policy that does not validate against the schema generated for the
      tools: a misspelled tool action, an argument the tool does not have
      (``context.input.ammount``).

    Args:
        store: the policies, and the schema requests are checked against.
        tools: the registered tools (guarded functions or specs).
        stub: the schema stub generation starts from (often ``store.schema_text``).
        principal_types: see :func:`generate_schema`; so are ``namespace``,
            ``tool_type`` and ``session_type``.
        session_sums: ``SessionConfig.sums``: all of it is filled at run time;
            what it names for the tools is declared in the generated schema.

    Raises:
        PolicyError: one ``file:line: message`` per problem (``.problems``).
        ConfigurationError: the schema cannot be generated (see
            :func:`generate_schema`).

    Example:
        >>> store = PolicyStore.from_text(
        ...     'permit(principal, action == Action::"add", resource) when { context.input.b < 3 };')
        >>> try:
        ...     validate_policies_for_tools(store, [], 'entity User; entity Tool;',
        ...                                 principal_types=["User"])
        ... except PolicyError as exc:
        ...     print(exc.problems[0])
        <text>:1: for policy, unrecognized action `Action::"add"`
    """
    specs = tool_specs(tools)
    sums = session_sums or {}
    schema, target = _generate(stub, specs, (), principal_types, namespace, tool_type, session_type,
                               "replace", tool_sums(sums, (action_name(spec.action) for spec in specs)))
    problems = missing_tool_actions(store, specs, schema, target)
    reads, declared = [], None
    if store.schema_text is not None:
        shapes = SchemaShapes(store.schema_text)
        reads, declared = schema_reads(shapes, store.schema_source), declared_facts(shapes)
    problems += unproduced([*reads, *policy_reads(store.policies)], ProducedFacts.of(specs, sums), declared)
    problems += validate_policies(store.policies, schema)
    if problems:
        raise PolicyError(problems)


def tool_sums(sums: Mapping[str, Sequence[str]], actions: Iterable[str]) -> dict[str, list[str]]:
    """``SessionConfig.sums`` of these tool actions, by action name: what generation declares.

    Example:
        >>> tool_sums({'Action::"pay"': ["amount"], "other": ["n"]}, ["pay"])
        {'pay': ['amount']}
    """
    wanted = set(actions)
    chosen: dict[str, list[str]] = {}
    for action, arguments in sums.items():
        name = action_name(action)
        if name in wanted:
            chosen.setdefault(name, []).extend(a for a in arguments if a not in chosen.get(name, ()))
    return chosen


# -- tools the enforced schema does not declare -------------------------------------------------


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
        line, opened = _insertion_point(text, space)
        what = declaration or f"action {_cedar_string(name)} appliesTo {{ ... }};"
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
    space = _text_spaces(text).get(namespace, _Space())
    return {name: _one_line(text[decl.start:decl.end]) for name, decl in space.actions.items()
            if decl is not None}


def _one_line(declaration: str) -> str:
    parts = re.split(r'("(?:[^"\\]|\\.)*")', declaration)  # odd parts: string literals, kept
    for index in range(0, len(parts), 2):
        parts[index] = re.sub(r"\s+", " ", re.sub(r"\{\s+\}", "{}", parts[index]))
    return "".join(parts).strip()


def _insertion_point(text: str, namespace: str) -> tuple[int, bool]:
    """The 1-based line where an action of ``namespace`` goes, and whether the namespace exists.

    Cedar text: the line of the namespace's closing brace, or past the end of
    the file for the top level. JSON: the line after the namespace's
    ``"actions"`` key (or after its own key).
    """
    if text.lstrip().startswith("{"):
        return _json_insertion_point(text, namespace)
    end = len(text.splitlines()) + 1
    if not namespace:
        return end, True
    tokens = _tokens(text)
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


# -- actions --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Action:
    name: str
    source: str
    principal_types: tuple[str, ...]
    resource_types: tuple[str, ...]
    input_type: dict[str, Any]
    sums: tuple[str, ...] = ()

    def entity_types(self) -> list[tuple[str, str]]:
        return ([(name, "principal type") for name in self.principal_types]
                + [(name, f"resource type of {self.source}") for name in self.resource_types])


def _actions(tools: Iterable[Any] | Mapping[str, Any], mcp_tools: Iterable[Mapping[str, Any]],
             principals: tuple[str, ...], tool_type: str, namespace: str,
             sums: Mapping[str, Sequence[str]]) -> list[_Action]:
    actions: dict[str, _Action] = {}

    def add(action: _Action) -> None:
        if action.name in actions:
            raise ConfigurationError(
                f"{actions[action.name].source} and {action.source} both map to action {action.name!r}")
        actions[action.name] = action

    for spec in tool_specs(tools):
        source = f"tool {spec.name!r}"
        if spec.resource_types:
            resources = tuple(spec.resource_types)
        elif spec.resource is None:
            resources = (tool_type,)
        else:
            raise ConfigurationError(
                f"{source} computes its resource: name its entity types with "
                "@authz.guard(resource_types=[...]) to generate its action")
        action_name = _action_name(spec.action, namespace, source)
        add(_Action(action_name, source, principals, resources, dict(spec.input_type),
                    tuple(dict.fromkeys([*spec.sums, *sums.get(action_name, ())]))))
    for item in mcp_tools:
        name = _mcp_name(item)
        add(_Action(name, f"MCP tool {name!r}", principals, (tool_type,), mcp_input_type(item),
                    tuple(sums.get(name, ()))))
    unknown = sorted(set(sums) - set(actions))
    if unknown:
        raise ConfigurationError(f"session_sums names no tool action: {', '.join(unknown)}")
    return sorted(actions.values(), key=lambda a: a.name)


def _session_type(stub: _Stub, target: str, context: list[tuple[str, str, bool]],
                  actions: list[_Action]) -> tuple[str, str, dict[str, Any]] | None:
    """(namespace, name, record type) of the session type to declare, if the context has one."""
    # Only the optional session context this module adds; a type annotated
    # @mcp_context("session") is the stub's own context (upstream convention), kept as written.
    common = next((common for attribute, common, required in context
                   if attribute == "session" and not required), None)
    if common is None:
        return None
    if "::" in common:
        space, _, local = common.rpartition("::")
    else:
        space = target if common in stub.spaces.get(target, _Space()).common_types else ""
        local = common
    sums: dict[str, dict[str, dict[str, Any]]] = {}
    for action in actions:
        attributes = action.input_type.get("attributes") or {}
        for argument in action.sums:
            kind = attributes.get(argument)
            if kind is None or (kind.get("type") != "Long" and kind.get("name") != "decimal"):
                raise ConfigurationError(
                    f"{action.source}: summed argument {argument!r} is not an int or decimal argument")
            sums.setdefault(action.name, {})[argument] = {
                key: value for key, value in kind.items() if key != "required"}
    return space, local, session_record_type([action.name for action in actions], sums)


def _action_name(action: str | EntityUID, namespace: str, source: str) -> str:
    if isinstance(action, str):
        return action
    expected = f"{namespace}::Action" if namespace else "Action"
    if action.type not in ("Action", expected):
        raise ConfigurationError(
            f"{source}: action {action} is not an action of namespace {namespace!r} "
            f"(expected type {expected})")
    return action.id


def _mcp_name(tool: Mapping[str, Any]) -> str:
    name = tool.get("name") if isinstance(tool, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ConfigurationError('MCP tool description without a "name"')
    return name


# -- JSON Schema -> Cedar ---------------------------------------------------------------


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


# -- stubs ------------------------------------------------------------------------------


@dataclass
class _Decl:
    """One declaration of a canonical Cedar schema text, located by offsets."""

    kind: str
    names: list[str]
    start: int
    end: int
    annotations: dict[str, str]
    prefix: str = ""  # annotations as written, kept when an action is replaced
    member_of: str = ""  # ``in [...]`` as written


@dataclass
class _Space:
    entity_types: set[str] = field(default_factory=set)
    common_types: set[str] = field(default_factory=set)
    actions: dict[str, _Decl | None] = field(default_factory=dict)
    principals: list[str] = field(default_factory=list)
    contexts: list[tuple[str, str]] = field(default_factory=list)
    close: int | None = None  # offset of the namespace's closing brace (text stubs)
    commons: dict[str, _Decl] = field(default_factory=dict)  # common type declarations (text stubs)


@dataclass
class _Stub:
    kind: Literal["cedar", "json"]
    text: str = ""
    document: dict[str, Any] = field(default_factory=dict)
    spaces: dict[str, _Space] = field(default_factory=dict)


def _read_stub(stub: StubInput) -> _Stub:
    name = "<stub>"
    if isinstance(stub, os.PathLike):
        path = Path(stub)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{name}: cannot read the schema stub ({exc})") from exc
        if path.suffix == ".json":
            try:
                stub = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PolicyError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        else:
            stub = text
    if isinstance(stub, str) and stub.lstrip().startswith("{"):
        try:
            stub = json.loads(stub)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    if isinstance(stub, Mapping):
        document = json.loads(json.dumps(stub))
        try:
            cedarpy.Schema.from_json_str(json.dumps(document))
        except ValueError as exc:
            raise PolicyError(f"{name}: {truncate(str(exc))}") from exc
        return _Stub("json", document=document, spaces=_json_spaces(document))
    if not isinstance(stub, str):
        raise ConfigurationError(
            f"the schema stub must be text, a mapping or a path, not {type(stub).__name__}")
    try:
        canonical = str(cedarpy.Schema.from_str(stub))
    except ValueError as exc:
        raise PolicyError(f"{name}: {truncate(str(exc))}") from exc
    return _Stub("cedar", text=canonical, spaces=_text_spaces(canonical))


def _json_spaces(document: Mapping[str, Any]) -> dict[str, _Space]:
    spaces: dict[str, _Space] = {}
    for namespace, body in document.items():
        space = spaces.setdefault(namespace, _Space())
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


def _choose_namespace(stub: _Stub, namespace: str | None) -> str:
    if namespace is not None:
        if namespace and not _PATH.fullmatch(namespace):
            raise ConfigurationError(f"namespace {namespace!r} is not a Cedar namespace path")
        return namespace
    named = sorted(name for name in stub.spaces if name)
    if len(named) > 1:
        raise ConfigurationError(
            f"the stub declares namespaces {', '.join(named)}: choose one for the actions "
            "(namespace=..., CLI: --namespace)")
    return named[0] if named else ""


def _declares(stub: _Stub, target: str, name: str, kind: Literal["entity", "common"]) -> bool:
    def has(space_name: str, local: str) -> bool:
        space = stub.spaces.get(space_name)
        if space is None:
            return False
        return local in (space.entity_types if kind == "entity" else space.common_types)

    if "::" in name:
        space_name, _, local = name.rpartition("::")
        return has(space_name, local)
    return has(target, name) or has("", name)


def _check_entity_type(stub: _Stub, target: str, name: str, role: str) -> None:
    if not _PATH.fullmatch(name):
        raise ConfigurationError(f"{role} {name!r} is not a Cedar entity type name")
    if not _declares(stub, target, name, "entity"):
        where = f"namespace {target!r} or the top level" if target else "the top level"
        raise ConfigurationError(
            f"entity type {name!r} ({role}) is not declared in the stub ({where})")


def _shared_context(stub: _Stub, target: str, session_type: str | None) -> list[tuple[str, str, bool]]:
    """(attribute, common type, required) added to every action's context next to ``input``."""
    context: list[tuple[str, str, bool]] = []
    for space_name in ("", target) if target else ("",):
        for attribute, common in stub.spaces.get(space_name, _Space()).contexts:
            qualified = f"{space_name}::{common}" if space_name and space_name != target else common
            context.append((attribute, qualified, True))
    names = {attribute for attribute, _, _ in context}
    if "input" in names:
        raise ConfigurationError('an @mcp_context("input") type would hide the tool arguments')
    if session_type is not None and "session" not in names:
        if _declares(stub, target, session_type, "common"):
            context.append(("session", session_type, False))
        elif session_type != DEFAULT_SESSION_TYPE:
            raise ConfigurationError(
                f"session type {session_type!r} is not a common type of the stub "
                f"(declare `type {session_type} = {{...}};`)")
    return context


def _context_type(action: _Action, context: list[tuple[str, str, bool]]) -> dict[str, Any]:
    attributes: dict[str, Any] = {"input": action.input_type}
    for attribute, common, required in context:
        attributes[attribute] = {"type": common} if required else {"type": common, "required": False}
    return {"type": "Record", "attributes": attributes}


# -- JSON merge -------------------------------------------------------------------------


def _merge_json(stub: _Stub, target: str, actions: list[_Action],
                context: list[tuple[str, str, bool]],
                session: tuple[str, str, dict[str, Any]] | None = None) -> str:
    document = stub.document
    if session is not None:
        space, local, record = session
        commons = document.setdefault(space, {"entityTypes": {}, "actions": {}}).setdefault(
            "commonTypes", {})
        previous = commons.get(local) or {}
        commons[local] = {**record, **({"annotations": previous["annotations"]}
                                       if "annotations" in previous else {})}
    body = document.setdefault(target, {"entityTypes": {}, "actions": {}})
    declared = body.setdefault("actions", {})
    for action in actions:
        previous = declared.get(action.name) or {}
        entry: dict[str, Any] = {key: previous[key] for key in ("memberOf", "annotations")
                                 if key in previous}
        entry["appliesTo"] = {
            "principalTypes": list(action.principal_types),
            "resourceTypes": list(action.resource_types),
            "context": _context_type(action, context),
        }
        declared[action.name] = entry
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        cedarpy.Schema.from_json_str(text)
    except ValueError as exc:
        raise PolicyError(f"the generated schema does not parse: {truncate(str(exc))}") from exc
    return text


# -- text merge -------------------------------------------------------------------------

_TOKEN = re.compile(
    r'(?P<space>\s+)|(?P<comment>//[^\n]*)|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<sep>::)|(?P<punct>.)",
    re.S,
)
_OPEN = {"{": "}", "[": "]", "(": ")"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.lastgroup or "", m.group(), m.start(), m.end())
            for m in _TOKEN.finditer(text) if m.lastgroup not in ("space", "comment")]


def _unescape(literal: str) -> str:
    body = literal[1:-1]
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        code = body[index + 1]
        if code == "u" and body[index + 2:index + 3] == "{":
            close = body.index("}", index)
            out.append(chr(int(body[index + 3:close], 16)))
            index = close + 1
        else:
            out.append(_ESCAPES.get(code, code))
            index += 2
    return "".join(out)


def _cedar_string(value: str) -> str:
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


class _TextReader:
    """Reads the declarations of a canonical Cedar schema text (cedarpy's rendering)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def fail(self) -> PolicyError:
        at = self.tokens[self.index].start if self.index < len(self.tokens) else len(self.text)
        line = self.text.count("\n", 0, at) + 1
        return PolicyError(f"<stub>:{line}: cannot read the canonical schema text")

    def peek(self, offset: int = 0) -> _Token | None:
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else None

    def take(self) -> _Token:
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
                value = _unescape(self.take().text)
                if self.take().text != ")":
                    raise self.fail()
            found[key] = value
        return found

    def spaces(self) -> dict[str, _Space]:
        spaces: dict[str, _Space] = {"": _Space()}
        while self.peek() is not None:
            start = self.index
            self.annotations()
            token = self.peek()
            if token is not None and token.kind == "ident" and token.text == "namespace":
                self.take()
                path = []
                while (part := self.take()).text != "{":
                    path.append(part.text)
                space = spaces.setdefault("".join(path), _Space())
                while (inner := self.peek()) is not None and inner.text != "}":
                    self.declaration(space)
                space.close = self.take().start
            else:
                self.index = start
                self.declaration(spaces[""])
        return spaces

    def declaration(self, space: _Space) -> None:
        first = self.peek()
        if first is None:
            raise self.fail()
        annotations = self.annotations()
        keyword = self.take()
        prefix = self.text[first.start:keyword.start]
        names: list[str] = []
        while True:
            token = self.take()
            if token.kind not in ("ident", "string"):
                raise self.fail()
            names.append(_unescape(token.text) if token.kind == "string" else token.text)
            after = self.peek()
            if after is None or after.text != ",":
                break
            self.take()
        member_of = ""
        member_start: int | None = None
        depth = 0
        while True:
            token = self.take()
            if depth == 0 and keyword.text == "action":
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
                end = token.end
                break
        decl = _Decl(keyword.text, names, first.start, end, annotations, prefix, member_of)
        if keyword.text == "entity":
            for name in names:
                space.entity_types.add(name)
                if "mcp_principal" in annotations:
                    space.principals.append(name)
        elif keyword.text == "type":
            common = names[0]
            space.common_types.add(common)
            space.commons[common] = decl
            if "mcp_context" in annotations:
                space.contexts.append((annotations["mcp_context"] or common, common))
        elif keyword.text == "action":
            for name in names:
                space.actions[name] = decl
        else:
            raise self.fail()


def _text_spaces(text: str) -> dict[str, _Space]:
    return _TextReader(text).spaces()


def _render_type(cedar: Mapping[str, Any], shadowed: set[str]) -> str:
    kind = cedar["type"]

    def builtin(name: str) -> str:
        return f"__cedar::{name}" if name in shadowed else name

    if kind in _PRIMITIVES:
        return builtin(_PRIMITIVES[kind])
    if kind == "Extension":
        return builtin(str(cedar["name"]))
    if kind == "Set":
        return f"Set<{_render_type(cedar['element'], shadowed)}>"
    if kind == "Record":
        parts = [
            f"{_cedar_string(name)}{'' if attribute.get('required', True) else '?'}: "
            f"{_render_type(attribute, shadowed)}"
            for name, attribute in cedar["attributes"].items()
        ]
        return "{" + ", ".join(parts) + "}"
    if kind in ("Entity", "EntityOrCommon"):
        return str(cedar["name"])
    return str(kind)


def _render_action(action: _Action, context: list[tuple[str, str, bool]], previous: _Decl | None,
                   shadowed: set[str]) -> str:
    prefix = previous.prefix if previous else ""
    member_of = f" {previous.member_of}" if previous and previous.member_of else ""
    if previous and len(previous.names) > 1:
        raise ConfigurationError(
            f"action {action.name!r} is declared together with {', '.join(previous.names)}")
    return (
        f"{prefix}action {_cedar_string(action.name)}{member_of} appliesTo {{\n"
        f"  principal: [{', '.join(action.principal_types)}],\n"
        f"  resource: [{', '.join(action.resource_types)}],\n"
        f"  context: {_render_type(_context_type(action, context), shadowed)}\n"
        "};\n"
    )


def _merge_text(stub: _Stub, target: str, actions: list[_Action],
                context: list[tuple[str, str, bool]],
                session: tuple[str, str, dict[str, Any]] | None = None) -> str:
    text = stub.text
    space = stub.spaces.get(target)
    shadowed = set()
    for name in ("Long", "String", "Bool", "decimal", "datetime", "duration", "ipaddr"):
        if _declares(stub, target, name, "common") or _declares(stub, target, name, "entity"):
            shadowed.add(name)
    edits: list[tuple[int, int, str]] = []
    rendered = []
    for action in actions:
        previous = space.actions.get(action.name) if space else None
        rendered.append(_render_action(action, context, previous, shadowed))
        if previous is not None:
            edits.append((previous.start, previous.end, ""))
    if session is not None:
        declared = stub.spaces.get(session[0], _Space()).commons.get(session[1])
        if declared is not None:
            edits.append((declared.start, declared.end,
                          f"{declared.prefix}type {_cedar_string(session[1])[1:-1]} = "
                          f"{_render_type(session[2], shadowed)};"))
    block = "\n".join(rendered)
    if space is not None and space.close is not None:
        edits.append((space.close, space.close, block))
    elif target and space is None:
        edits.append((len(text), len(text), f"\nnamespace {target} {{\n{block}}}\n"))
    else:
        edits.append((len(text), len(text), "\n" + block))
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    try:
        return str(cedarpy.Schema.from_str(text)).rstrip("\n") + "\n"
    except ValueError as exc:
        raise PolicyError(f"the generated schema does not parse: {truncate(str(exc))}") from exc
