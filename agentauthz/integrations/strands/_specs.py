"""The Cedar spec of a Strands tool: its JSON input schema, the application's settings, a profile.

A Strands tool describes its arguments as ``tool_spec["inputSchema"]["json"]``
(a JSON Schema; MCP tools look the same). :class:`ToolSpec.from_json_schema
<agentauthz.ToolSpec.from_json_schema>` reads it, so a call is validated exactly
as the tool will receive it. Two conventions name the request:

* ``"agentauthz"``: the action is the tool name and the resource the tool
  itself (``Tool::"<name>"``), as ``@authz.guard`` does; ``context.session``
  comes from an agentauthz session.
* ``"strands"``: the conventions of Strands' own ``CedarAuthorization``, so its
  policies run unchanged: the resource is ``Resource::"agent"`` and
  ``context.session`` is ``{call_count, hour_utc}`` (:func:`strands_session`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import threading
from collections.abc import Mapping
from typing import Any, Literal

from agentauthz._errors import ConfigurationError
from agentauthz._model import EntityUID
from agentauthz.tools._settings import ToolSettings
from agentauthz.tools._spec import ToolSpec

__all__ = ["STRANDS_RESOURCE", "Profile", "SpecCache", "strands_session", "tool_settings"]

Profile = Literal["agentauthz", "strands"]
PROFILES: tuple[Profile, ...] = ("agentauthz", "strands")

STRANDS_RESOURCE = EntityUID("Resource", "agent")
"""The resource of every call under the ``"strands"`` profile, as Strands' ``CedarAuthorization`` names it."""

# Distinct (name, schema) pairs kept; tools whose schemas change (MCP servers) are rebuilt past it.
_CACHE_SIZE = 1024


def tool_settings(tools: Mapping[str, ToolSettings] | None) -> dict[str, ToolSettings]:
    """The per-tool settings, checked when the intervention is built (a typo fails at start-up).

    Raises:
        ConfigurationError: a tool name is not a string, or its settings are not a
            :class:`~agentauthz.ToolSettings`.
    """
    checked: dict[str, ToolSettings] = {}
    for name, settings in (tools or {}).items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError("tools= is keyed by tool name (a non-empty string)")
        if not isinstance(settings, ToolSettings):
            raise ConfigurationError(
                f"tools[{name!r}] must be an agentauthz.ToolSettings, not {type(settings).__name__}")
        checked[name] = settings
    return checked


def input_schema(tool_spec: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The tool's name and the JSON Schema of its arguments.

    Raises:
        ConfigurationError: the spec has no name or no JSON input schema.
    """
    name = tool_spec.get("name")
    schema = tool_spec.get("inputSchema")
    if isinstance(schema, Mapping) and "json" in schema:
        schema = schema["json"]
    if not isinstance(name, str) or not isinstance(schema, Mapping):
        raise ConfigurationError(
            f"Strands tool {name!r} has no JSON input schema (tool_spec['inputSchema']['json'])")
    return name, schema


class SpecCache:
    """The spec of each Strands tool, built once per name and schema.

    Args:
        settings: the per-tool settings (:func:`tool_settings`).
        profile: the request conventions (``"agentauthz"`` or ``"strands"``).
    """

    def __init__(self, settings: Mapping[str, ToolSettings], profile: Profile) -> None:
        self.settings = settings
        self.profile = profile
        self._specs: dict[tuple[str, str], ToolSpec] = {}
        self._lock = threading.Lock()

    def spec(self, tool_spec: Mapping[str, Any]) -> ToolSpec:
        """How calls of this tool become Cedar requests.

        Raises:
            ConfigurationError: the schema has no Cedar equivalent, or a setting is wrong.
        """
        name, schema = input_schema(tool_spec)
        key = (name, json.dumps(schema, sort_keys=True, default=repr))
        with self._lock:
            cached = self._specs.get(key)
        if cached is not None:
            return cached
        settings = self.settings.get(name, ToolSettings())
        if self.profile == "strands" and settings.resource is None:
            settings = dataclasses.replace(settings, resource=STRANDS_RESOURCE)
        description = tool_spec.get("description")
        spec = settings.spec_from_json_schema(
            schema, name=name, description=description if isinstance(description, str) else "",
            on_deny="message")
        with self._lock:
            if len(self._specs) >= _CACHE_SIZE:
                self._specs.clear()
            self._specs[key] = spec
        return spec


def strands_session(spec: ToolSpec, *, call_count: int, now: float) -> ToolSpec:
    """The spec of one call under the ``"strands"`` profile: ``context.session`` as Strands builds it.

    ``call_count`` counts this call with the earlier ones of the same tool
    (Strands: per handler; here: per agent and end user), ``hour_utc`` is the
    hour of ``now`` (seconds since the epoch) in UTC.

    Example:
        >>> spec = ToolSpec.from_json_schema("transfer", {"properties": {"amount": {"type": "integer"}}})
        >>> strands_session(spec, call_count=2, now=3600.0).context_for({"amount": 5})
        {'session': {'call_count': 2, 'hour_utc': 1}}
    """
    base = spec.context
    session = {"call_count": call_count, "hour_utc": _dt.datetime.fromtimestamp(now, _dt.UTC).hour}

    def context(arguments: dict[str, Any]) -> Mapping[str, Any]:
        extra = dict((base(arguments) if callable(base) else base) or {})
        if "session" in extra:
            raise ConfigurationError(
                f"the context of tool {spec.name!r} must not set 'session': the strands profile fills it")
        extra["session"] = dict(session)
        return extra

    return dataclasses.replace(spec, context=context)
