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
- A tool with a guardrail (``guard(guardrail=...)``, ``ToolSettings(guardrail=...)``)
  has a required ``guardrail: { input: <fact> }`` (see
  :data:`agentauthz.guardrails._guardrail.INPUT_FACT_TYPE`).
- Extra context a guard computes (``context=``) is not declared: its types are
  unknown. Policies that read it fail validation against the generated schema.

The stub is edited, not printed anew: its comments, order and layout stay, a
replaced action (and the session type) is rewritten where it stands, and new
actions go at the end of their namespace. MCP ``inputSchema`` types map as
:mod:`agentauthz.tools._jsonschema` says; :mod:`agentauthz.tools._missing` finds
the tools a store's schema lacks.
"""

from __future__ import annotations

import dataclasses
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
from agentauthz.guardrails._guardrail import INPUT_FACT_TYPE
from agentauthz.policy._messages import author_message
from agentauthz.policy._schema_text import (
    Declaration,
    Namespace,
    attribute_name,
    cedar_string,
    json_namespaces,
    read_namespaces,
)
from agentauthz.policy._store import PolicyStore, schema_checks_are_deferred, validate_policies
from agentauthz.session._facts import (
    ProducedFacts,
    action_name,
    declared_facts,
    policy_reads,
    schema_reads,
    unproduced,
)
from agentauthz.session._session import SchemaShapes, session_record_type
from agentauthz.tools._jsonschema import mcp_input_type, mcp_tool_name, read_mcp_tools
from agentauthz.tools._missing import missing_tool_actions
from agentauthz.tools._spec import ToolSpec, spec_of

__all__ = [
    "DEFAULT_SESSION_TYPE",
    "DEFAULT_TOOL_TYPE",
    "generate_schema",
    "mcp_input_type",  # re-exported: the CLI and tests read MCP tools from here
    "missing_tool_actions",  # likewise, for validate_tools' callers
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
_BUILTIN_TYPES = ("Long", "String", "Bool", "decimal", "datetime", "duration", "ipaddr")


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
    provenance: Iterable[str] = (),
    agent_type: str | None = None,
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
        provenance: the tool actions whose calls carry provenance
            (``Provenance.tools``; ``"*"`` for all): their context declares
            ``provenance`` and ``provenance_all``, a ``Set<String>`` per
            argument that is a String, a Long or a Set of them.
        agent_type: the entity type of the agent (``Agent``; see
            :class:`~agentauthz.Agent`): every tool action's context declares
            ``agent?: <agent_type>``. The stub declares the type; with
            ``agent_grant`` add it to ``principal_types`` too.

    Returns:
        The schema in the stub's format: the stub's Cedar text with its
        comments, order and layout, the tool actions written in it; or
        indented JSON.

    Raises:
        ConfigurationError: a tool type with no Cedar equivalent (naming the
            tool and property), an entity type the stub does not declare, no
            principal types, two tools with one action, a conflicting action
            with ``existing="error"``.
        PolicyError: the stub does not parse, or the result does not.

    Example:
        >>> stub = 'entity User; // people\\nentity Tool;'
        >>> print(generate_schema(stub, principal_types=["User"], mcp_tools=[
        ...     {"name": "add", "inputSchema": {"type": "object",
        ...      "properties": {"a": {"type": "integer"}}, "required": ["a"]}}]))
        entity User; // people
        entity Tool;
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
                     session_sums, provenance, agent_type)[0]


def _generate(stub: StubInput, tools: Iterable[Any] | Mapping[str, Any],
              mcp_tools: Iterable[Mapping[str, Any]], principal_types: Sequence[str],
              namespace: str | None, tool_type: str, session_type: str | None, existing: Existing,
              session_sums: Mapping[str, Sequence[str]] | None,
              provenance: Iterable[str] = (), agent_type: str | None = None) -> tuple[str, str]:
    """The generated schema and the namespace its tool actions went into."""
    if existing not in ("replace", "error"):
        raise ConfigurationError(f"existing must be 'replace' or 'error', not {existing!r}")
    parsed = _read_stub(stub)
    target = _choose_namespace(parsed, namespace)
    space = parsed.spaces.get(target, Namespace())
    principals = tuple(principal_types) or tuple(space.principals)
    if not principals:
        raise ConfigurationError(
            "no principal types: pass principal_types (CLI: --principal-type) or annotate "
            "entity types of the stub with @mcp_principal")
    actions = _with_context_facts(
        _actions(tools, mcp_tools, principals, tool_type, target, session_sums or {}),
        frozenset(provenance), agent_type)
    if agent_type is not None:
        _check_entity_type(parsed, target, agent_type, "agent type")
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
    provenance: Iterable[str] = (),
    agent_type: str | None = None,
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
        provenance: the tracked tool actions (``Provenance.tools``), as
            :func:`generate_schema` takes them; so is ``agent_type``.

    Raises:
        PolicyError: one ``file:line: message`` per problem (``.problems``).
        ConfigurationError: the schema cannot be generated (see
            :func:`generate_schema`).

    Inside :func:`~agentauthz.policy._store.schema_checks_deferred` (while
    ``agentauthz schema generate`` imports the application) it checks nothing.

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
    if schema_checks_are_deferred():
        return  # `agentauthz schema generate` is importing the application: see schema_checks_deferred
    specs = tool_specs(tools)
    sums = session_sums or {}
    schema, target = _generate(stub, specs, (), principal_types, namespace, tool_type, session_type,
                               "replace", tool_sums(sums, (action_name(spec.action) for spec in specs)),
                               provenance, agent_type)
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


# -- actions --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Action:
    name: str
    source: str
    principal_types: tuple[str, ...]
    resource_types: tuple[str, ...]
    input_type: dict[str, Any]
    sums: tuple[str, ...] = ()
    guardrail: bool = False
    provenance: tuple[str, ...] | None = None  # the arguments of context.provenance, when tracked
    agent_type: str | None = None  # the entity type of context.agent, when declared

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
                    tuple(dict.fromkeys([*spec.sums, *sums.get(action_name, ())])),
                    guardrail=spec.guardrail is not None and spec.guardrail.inputs))
    for item in mcp_tools:
        name = mcp_tool_name(item)
        add(_Action(name, f"MCP tool {name!r}", principals, (tool_type,), mcp_input_type(item),
                    tuple(sums.get(name, ()))))
    unknown = sorted(set(sums) - set(actions))
    if unknown:
        raise ConfigurationError(f"session_sums names no tool action: {', '.join(unknown)}")
    return sorted(actions.values(), key=lambda a: a.name)


def _with_context_facts(actions: list[_Action], tracked: frozenset[str],
                        agent_type: str | None) -> list[_Action]:
    """The actions, with ``context.agent`` and, for ``tracked`` ones, the arguments of their provenance."""
    return [dataclasses.replace(
        action, agent_type=agent_type,
        provenance=provenance_arguments(action.input_type) if action.name in tracked or "*" in tracked
        else None) for action in actions]


def provenance_arguments(input_type: Mapping[str, Any]) -> tuple[str, ...]:
    """The arguments provenance covers: those typed String or Long, or a Set of them.

    Example:
        >>> provenance_arguments({"type": "Record", "attributes": {"to": {"type": "String"},
        ...     "cc": {"type": "Set", "element": {"type": "String"}}, "urgent": {"type": "Boolean"}}})
        ('cc', 'to')
    """
    covered = []
    for name, kind in (input_type.get("attributes") or {}).items():
        element = kind.get("element") if kind.get("type") == "Set" else kind
        if isinstance(element, Mapping) and element.get("type") in ("String", "Long"):
            covered.append(name)
    return tuple(sorted(covered))


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
        space = target if common in stub.spaces.get(target, Namespace()).common_types else ""
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


# -- stubs ------------------------------------------------------------------------------


@dataclass
class _Stub:
    """The stub as read: its text (Cedar) or document (JSON), and what each namespace declares."""

    kind: Literal["cedar", "json"]
    text: str = ""
    document: dict[str, Any] = field(default_factory=dict)
    spaces: dict[str, Namespace] = field(default_factory=dict)


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
            raise PolicyError(f"{name}: {author_message(str(exc))}") from exc
        return _Stub("json", document=document, spaces=json_namespaces(document))
    if not isinstance(stub, str):
        raise ConfigurationError(
            f"the schema stub must be text, a mapping or a path, not {type(stub).__name__}")
    try:
        cedarpy.Schema.from_str(stub)
    except ValueError as exc:
        raise PolicyError(f"{name}: {author_message(str(exc))}") from exc
    return _Stub("cedar", text=stub, spaces=read_namespaces(stub, name))


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
        for attribute, common in stub.spaces.get(space_name, Namespace()).contexts:
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
    if action.guardrail:
        attributes["guardrail"] = {"type": "Record", "attributes": {"input": INPUT_FACT_TYPE}}
    if action.provenance is not None:
        labels = {"type": "Record", "attributes": {
            name: {"type": "Set", "element": {"type": "String"}} for name in action.provenance}}
        attributes["provenance"] = labels
        attributes["provenance_all"] = json.loads(json.dumps(labels))
    if action.agent_type is not None:
        attributes["agent"] = {"type": "Entity", "name": action.agent_type, "required": False}
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
        raise PolicyError(f"the generated schema does not parse: {author_message(str(exc))}") from exc
    return text


# -- text merge: the stub edited in place ------------------------------------------------


def _merge_text(stub: _Stub, target: str, actions: list[_Action],
                context: list[tuple[str, str, bool]],
                session: tuple[str, str, dict[str, Any]] | None = None) -> str:
    """The stub's text with each tool action written where it stands, or added to its namespace."""
    text = stub.text
    space = stub.spaces.get(target)
    shadowed = {name for name in _BUILTIN_TYPES
                if _declares(stub, target, name, "common") or _declares(stub, target, name, "entity")}
    edits: list[tuple[int, int, str]] = []
    added: list[str] = []
    for action in actions:
        previous = space.actions.get(action.name) if space else None
        rendered = _render_action(action, context, previous, shadowed)
        if previous is None:
            added.append(rendered)
        else:
            edits.append((previous.start, previous.end,
                          previous.prefix + _indented(rendered, _indentation(text, previous.start))))
    if session is not None:
        declared = stub.spaces.get(session[0], Namespace()).commons.get(session[1])
        if declared is not None:
            rendered = f"type {session[1]} = {_render_type(session[2], shadowed)};"
            edits.append((declared.start, declared.end,
                          declared.prefix + _indented(rendered, _indentation(text, declared.start))))
    if added:
        edits.append(_addition(text, target, space, added))
    for start, end, replacement in sorted(edits, key=lambda edit: (edit[0], edit[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    try:
        cedarpy.Schema.from_str(text)
    except ValueError as exc:
        raise PolicyError(f"the generated schema does not parse: {author_message(str(exc))}") from exc
    return text if text.endswith("\n") else text + "\n"


def _addition(text: str, target: str, space: Namespace | None, rendered: list[str]) -> tuple[int, int, str]:
    """The edit adding new actions: before the namespace's closing brace, or at the end."""
    if space is not None and space.close is not None:
        line_start = text.rfind("\n", 0, space.close) + 1
        before_brace = text[line_start:space.close]
        if before_brace.strip():  # `namespace A { entity B; }` on one line
            block = "\n\n".join("  " + _indented(action, "  ") for action in rendered)
            return space.close, space.close, "\n" + block + "\n"
        inner = _inner_indentation(text[:line_start], before_brace)
        block = "\n\n".join(inner + _indented(action, inner) for action in rendered)
        return line_start, line_start, "\n" + block + "\n"
    if target and space is None:
        block = "\n\n".join("  " + _indented(action, "  ") for action in rendered)
        return len(text), len(text), _separator(text) + f"namespace {target} {{\n{block}\n}}\n"
    return len(text), len(text), _separator(text) + "\n\n".join(rendered) + "\n"


def _inner_indentation(before: str, brace: str) -> str:
    """How a namespace indents its declarations: as its last line, else 2 more than its brace."""
    for line in reversed(before.splitlines()):
        if line.strip():
            indentation = line[:len(line) - len(line.lstrip())]
            return indentation if len(indentation) > len(brace) else brace + "  "
    return brace + "  "


def _separator(text: str) -> str:
    """What goes between the stub's end and an added declaration: one blank line."""
    if not text.strip():
        return ""
    return "\n" if text.endswith("\n") else "\n\n"


def _indentation(text: str, offset: int) -> str:
    """The whitespace before ``offset`` on its line (empty if the line holds more before it)."""
    before = text[text.rfind("\n", 0, offset) + 1:offset]
    return before if not before.strip() else ""


def _indented(rendered: str, indentation: str) -> str:
    """``rendered`` with every line after the first indented: it continues at that indentation."""
    return rendered.replace("\n", "\n" + indentation) if indentation else rendered


def _render_type(cedar: Mapping[str, Any], shadowed: set[str], depth: int = 0) -> str:
    """A Cedar JSON-schema type as schema text; records one attribute a line, as Cedar prints them."""
    kind = cedar["type"]
    if kind in _PRIMITIVES or kind == "Extension":
        name = _PRIMITIVES.get(kind) or str(cedar["name"])
        return f"__cedar::{name}" if name in shadowed else name
    if kind == "Set":
        return f"Set<{_render_type(cedar['element'], shadowed, depth)}>"
    if kind == "Record":
        attributes = cedar["attributes"]
        if not attributes:
            return "{}"
        pad = "  " * (depth + 1)
        lines = [f"{pad}{attribute_name(name)}{'' if attribute.get('required', True) else '?'}: "
                 f"{_render_type(attribute, shadowed, depth + 1)}"
                 for name, attribute in attributes.items()]
        return "{\n" + ",\n".join(lines) + "\n" + "  " * depth + "}"
    if kind in ("Entity", "EntityOrCommon"):
        return str(cedar["name"])
    return str(kind)


def _render_action(action: _Action, context: list[tuple[str, str, bool]], previous: Declaration | None,
                   shadowed: set[str]) -> str:
    """The action's declaration (its annotations, if it replaces one, are the caller's to keep)."""
    member_of = f" {previous.member_of}" if previous and previous.member_of else ""
    if previous and len(previous.names) > 1:
        raise ConfigurationError(
            f"action {action.name!r} is declared together with {', '.join(previous.names)}")
    return (
        f"action {cedar_string(action.name)}{member_of} appliesTo {{\n"
        f"  principal: [{', '.join(action.principal_types)}],\n"
        f"  resource: [{', '.join(action.resource_types)}],\n"
        f"  context: {_render_type(_context_type(action, context), shadowed, 1)}\n"
        "};"
    )
