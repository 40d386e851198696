"""Tool specs of MCP tools, built from their input schemas (see :mod:`agentauthz.integrations.mcp`)."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from agentauthz._errors import ConfigurationError
from agentauthz._model import EntityUID
from agentauthz.tools._settings import ToolSettings
from agentauthz.tools._spec import ToolSpec, spec_of

__all__ = ["ToolSpecs", "settings_by_name"]

_logger = logging.getLogger("agentauthz")
# Specs kept per (tool, schema): a server's tools and their versions, a client's servers.
_CACHE_SIZE = 1024


def settings_by_name(tools: Mapping[str, Any] | None) -> dict[str, ToolSettings]:
    """The ``tools=`` option: per MCP tool name, the action, resource and context deciding its calls.

    A value is a :class:`~agentauthz.ToolSettings`, or a :class:`~agentauthz.ToolSpec`
    or guarded tool whose settings are reused. The arguments are always those of
    the MCP tool's own input schema.

    Raises:
        ConfigurationError: a key is no name, or a value is none of these.
    """
    settings: dict[str, ToolSettings] = {}
    for name, value in (tools or {}).items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError("tools= maps MCP tool names (strings) to their settings")
        if isinstance(value, ToolSettings):
            settings[name] = value
            continue
        spec = value if isinstance(value, ToolSpec) else spec_of(value)
        if spec is None:
            raise ConfigurationError(f"tools={{{name!r}: ...}} must be an agentauthz.ToolSettings, "
                                     f"a ToolSpec or a guarded tool, not {type(value).__name__}")
        settings[name] = ToolSettings(action=spec.action, resource=spec.resource,
                                      resource_types=spec.resource_types, context=spec.context,
                                      sum_arguments=spec.sums, provenance=spec.provenance,
                                      guardrail=spec.guardrail)
    return settings


class ToolSpecs:
    """The :class:`~agentauthz.ToolSpec` of each MCP tool, cached per tool name and input schema.

    A schema with no Cedar equivalent (a free-form object, a union of types)
    gives :class:`~agentauthz.ConfigurationError`, every time it is asked for;
    it is logged once.

    Args:
        settings: per tool name, the spec whose action, resource, context and
            summed arguments to use (see :func:`settings_by_name`).
    """

    def __init__(self, settings: Mapping[str, ToolSettings] | None = None) -> None:
        self.settings = dict(settings or {})
        self._built: OrderedDict[tuple[str, str], ToolSpec | ConfigurationError] = OrderedDict()
        self._lock = threading.Lock()

    def action_of(self, name: str) -> str | EntityUID:
        """The Cedar action of tool ``name`` (its name unless ``tools=`` sets one)."""
        given = self.settings.get(name)
        return given.action if given is not None and given.action is not None else name

    def tool(self, tool: Any) -> ToolSpec:
        """The spec of an MCP tool (an ``mcp.types.Tool`` or its JSON form): :meth:`ToolSpec.from_mcp_tool`.

        Raises:
            ConfigurationError: the tool cannot be authorized (see :meth:`ToolSpec.from_mcp_tool`).
        """
        def read(key: str, alias: str) -> Any:
            return tool.get(alias) if isinstance(tool, Mapping) else getattr(tool, key, None)

        name, schema = read("name", "name"), read("input_schema", "inputSchema")
        given = self.settings.get(name, ToolSettings()) if isinstance(name, str) else ToolSettings()
        return self.cached(("tool", str(name)), schema,
                           lambda: given.spec_from_mcp_tool(tool, on_deny="message"))

    def cached(self, key: tuple[str, str], schema: Any, build: Callable[[], ToolSpec]) -> ToolSpec:
        """The spec ``build()`` makes for ``key`` and ``schema``, built once per distinct schema.

        Raises:
            ConfigurationError: what ``build`` raised (cached too).
        """
        try:
            text = json.dumps(schema, sort_keys=True, default=repr)
        except (TypeError, ValueError) as exc:  # not JSON: nothing a policy could be written for
            raise ConfigurationError(f"{key[0]} {key[1]!r}: its input schema is not JSON") from exc
        entry = (f"{key[0]}:{key[1]}", text)
        with self._lock:
            found = self._built.get(entry)
            if found is not None:
                self._built.move_to_end(entry)
        if found is None:
            try:
                found = build()
            except Exception as exc:  # any schema that cannot be read is refused, never let through
                found = exc if isinstance(exc, ConfigurationError) else ConfigurationError(
                    f"{key[0]} {key[1]!r}: its input schema cannot be read ({type(exc).__name__})")
                _logger.warning("%s %r cannot be authorized, so every call of it is refused: %s",
                                key[0], key[1], found)
            with self._lock:
                self._built[entry] = found
                while len(self._built) > _CACHE_SIZE:
                    self._built.popitem(last=False)
        if isinstance(found, ConfigurationError):
            raise ConfigurationError(str(found))
        return found
