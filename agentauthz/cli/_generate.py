"""``agentauthz schema generate``: a schema stub plus one Cedar action per tool.

Tools come from the application (``--tools module:attribute``, imported with
the working directory on the path) and from MCP tool descriptions (``--mcp``).
The application is imported inside
:func:`~agentauthz.policy._store.schema_checks_deferred`: its Authorizer may be
built over policies that already name the tools being added, which the schema
declares only once it is generated.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentauthz._errors import ConfigurationError, PolicyError
from agentauthz.cli._common import EXIT_OK, Subparsers, UsageError, help_handler

__all__ = ["add_schema_command", "run_schema_generate_command"]


def add_schema_command(commands: Subparsers) -> None:
    """``agentauthz schema generate``: Cedar schema actions for tools."""
    schema = commands.add_parser("schema", help="generate Cedar schemas",
                                 description="Work with Cedar schemas.")
    schema.set_defaults(handler=help_handler(schema))
    actions = schema.add_subparsers(title="commands", metavar="COMMAND")
    generate = actions.add_parser(
        "generate",
        help="add one action per tool to a schema stub",
        description=(
            "Generate a Cedar schema: the stub plus one action per tool (Cedar-for-agents "
            "convention: arguments in context.input, optional context.session). Tools come "
            "from guarded Python functions (--tools) and MCP tool descriptions (--mcp). An "
            "action the stub already declares is replaced unless --on-existing error. The "
            "session type declares the totals the session configuration sums: an Authorizer "
            "given to --tools brings its SessionConfig (and its tool entity type), --sessions "
            "names one for the other tools: the schema is the one Authorizer.validate_tools() "
            "checks the policies against."),
    )
    generate.add_argument("--stub", required=True, metavar="STUB",
                          help="schema stub declaring the entity types (.cedarschema or "
                               ".cedarschema.json)")
    generate.add_argument("--tools", action="append", default=[], metavar="MODULE:ATTRIBUTE",
                          help="an Authorizer (its guarded tools and session configuration), or a "
                               "list or dict of guarded functions; repeatable")
    generate.add_argument("--sessions", action="append", default=[], metavar="MODULE:ATTRIBUTE",
                          help="a SessionConfig (or an Authorizer) whose sums= the session totals "
                               "declare; repeatable")
    generate.add_argument("--mcp", action="append", default=[], metavar="TOOLS.json",
                          help='MCP tool descriptions: a JSON list, {"tools": [...]} or a '
                               "tools/list response; repeatable")
    generate.add_argument("--principal-type", action="append", default=[], metavar="TYPE",
                          dest="principal_types",
                          help="principal entity type; repeatable (default: entity types the "
                               "stub annotates @mcp_principal)")
    generate.add_argument("--namespace", metavar="NS",
                          help="namespace of the actions (default: the stub's namespace); "
                               "'' for the top level")
    generate.add_argument("--tool-type", metavar="TYPE",
                          help="resource type of tools without a resource (default: the "
                               "Authorizer's tool_entity_type, else Tool)")
    generate.add_argument("--session-type", default="Session", metavar="TYPE",
                          help="common type of context.session, added when the stub declares it "
                               "(default: Session); '' for none")
    generate.add_argument("--on-existing", choices=("replace", "error"), default="replace",
                          help="what to do with actions the stub already declares (default: replace)")
    generate.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    generate.set_defaults(handler=run_schema_generate_command)


def run_schema_generate_command(args: argparse.Namespace) -> int:
    """``agentauthz schema generate``: the stub with one action per tool, on stdout or ``--output``."""
    from agentauthz.session._facts import action_name
    from agentauthz.tools._schema import generate_schema, tool_sums

    stub_path = Path(args.stub)
    if not stub_path.is_file():
        raise UsageError(f"--stub {args.stub}: no such file")
    stub: Any = _read(stub_path, "--stub")
    if stub_path.name.endswith(".json"):
        stub = _parse_json(stub, stub_path)
    found = _ApplicationTools.imported(args.tools, args.sessions)
    mcp_tools = _mcp_tools(args.mcp)
    if not found.tools and not mcp_tools:
        raise UsageError("no tools: give --tools MODULE:ATTRIBUTE and/or --mcp TOOLS.json")
    if args.tool_type is None and len(found.tool_types) > 1:
        raise UsageError("the Authorizers name different tool entity types "
                         f"({', '.join(sorted(found.tool_types))}): choose one with --tool-type")
    names = [action_name(spec.action) for spec in found.tools] + [str(tool.get("name")) for tool in mcp_tools]
    schema = generate_schema(
        stub, tools=found.tools, mcp_tools=mcp_tools, principal_types=args.principal_types,
        namespace=args.namespace, tool_type=args.tool_type or next(iter(found.tool_types), "Tool"),
        session_type=args.session_type or None, existing=args.on_existing,
        session_sums=tool_sums(found.sums, names), provenance=found.provenance,
        agent_type=_one(found.agent_types, "agent entity types"),
    )
    if args.output:
        try:
            Path(args.output).write_text(schema, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--output {args.output}: cannot write ({exc.strerror})") from exc
    else:
        sys.stdout.write(schema)
    return EXIT_OK


@dataclass
class _ApplicationTools:
    """What ``--tools`` and ``--sessions`` name: tool specs, session sums, tool entity types."""

    tools: list[Any] = field(default_factory=list)
    sums: dict[str, list[str]] = field(default_factory=dict)
    tool_types: set[str] = field(default_factory=set)
    provenance: set[str] = field(default_factory=set)  # tracked tool actions (Provenance.tools)
    agent_types: set[str] = field(default_factory=set)  # entity types of the Authorizers' agents

    @classmethod
    def imported(cls, tools: Sequence[str], sessions: Sequence[str]) -> _ApplicationTools:
        found = cls()
        for target in tools:
            value = _import_attribute(target, "--tools")
            found.tools.extend(_tool_specs(target, value))
            config = _session_config(value)
            if config is not None:
                _add_sums(found.sums, config.sums)
                found.tool_types.add(value.tool_entity_type)
                found.provenance.update(config.provenance.tools if config.provenance else ())
                if value.agent is not None:
                    found.agent_types.add(value.agent.entity_type)
        for target in sessions:
            config = _session_config(_import_attribute(target, "--sessions"), accept_config=True)
            if config is None:
                raise UsageError(f"--sessions {target}: expected a SessionConfig or an Authorizer")
            _add_sums(found.sums, config.sums)
            found.provenance.update(config.provenance.tools if config.provenance else ())
        return found


def _one(names: set[str], what: str) -> str | None:
    """The one name the Authorizers agree on, None for none; several are a usage error."""
    if len(names) > 1:
        raise UsageError(f"the Authorizers name different {what} ({', '.join(sorted(names))})")
    return next(iter(names), None)


def _mcp_tools(paths: Sequence[str]) -> list[Mapping[str, Any]]:
    from agentauthz.tools._jsonschema import read_mcp_tools

    found: list[Mapping[str, Any]] = []
    for path in paths:
        mcp_path = Path(path)
        if not mcp_path.is_file():
            raise UsageError(f"--mcp {path}: no such file")
        found.extend(read_mcp_tools(_parse_json(_read(mcp_path, "--mcp"), mcp_path)))
    return found


def _session_config(value: Any, *, accept_config: bool = False) -> Any:
    """The SessionConfig of an Authorizer (or the value itself, when it is one and accepted)."""
    from agentauthz._authorizer import Authorizer
    from agentauthz.session._session import SessionConfig

    if isinstance(value, Authorizer):
        return value.session_config
    return value if accept_config and isinstance(value, SessionConfig) else None


def _add_sums(sums: dict[str, list[str]], more: Mapping[str, Sequence[str]]) -> None:
    for action, arguments in more.items():
        known = sums.setdefault(action, [])
        known.extend(argument for argument in arguments if argument not in known)


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {path}: cannot read ({exc})") from exc


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc


def _import_attribute(target: str, option: str) -> Any:
    """The value ``module:attribute`` names (the working directory is importable).

    The module is imported with schema checks deferred: an application whose
    policies name a tool the schema does not declare yet still imports.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"{option} {target}: expected MODULE:ATTRIBUTE, e.g. myapp.agent:authz")
    from agentauthz.policy._store import schema_checks_deferred

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        with schema_checks_deferred():
            value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{option} {target}: cannot import {module_name!r} ({exc})") from exc
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UsageError(f"{option} {target}: {module_name!r} has no attribute {attribute!r}") from None
    return value


def _tool_specs(target: str, value: Any) -> list[Any]:
    """The guarded tools of an Authorizer, a list or a dict named by ``--tools``."""
    from agentauthz.tools._schema import tool_specs

    registry = getattr(value, "tools", None)
    if isinstance(registry, Mapping):
        value = registry
    elif not isinstance(value, (Mapping, list, tuple, set, frozenset)):
        value = [value]
    try:
        return list(tool_specs(value))
    except ConfigurationError as exc:
        raise UsageError(
            f"--tools {target}: expected an Authorizer, or a list or dict of guarded functions: {exc}"
        ) from exc
