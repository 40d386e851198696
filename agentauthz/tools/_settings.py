"""How one tool's calls become Cedar requests, as one object: :class:`ToolSettings`.

Integrations that wrap many tools at once (LangChain's ``authorize_tools`` and
``AuthzMiddleware``) take one :class:`ToolSettings` per tool name, so an option
added here reaches every one of them without a new keyword mapping each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agentauthz._errors import ConfigurationError
from agentauthz._model import Entity, EntityUID
from agentauthz.guardrails._detector import Detector
from agentauthz.guardrails._guardrail import Guardrail
from agentauthz.session._provenance import ResultLabel, check_result_label
from agentauthz.tools._spec import (
    ContextSpec,
    OnDeny,
    ResourceSpec,
    ToolSpec,
    build_spec,
    build_spec_from_model,
)

__all__ = ["ToolSettings"]


def _names(value: str | Iterable[str], option: str) -> tuple[str, ...]:
    """A tuple of names from one name or several (a lone string is one name, not its letters)."""
    names = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(name, str) and name for name in names):
        raise ConfigurationError(f"ToolSettings.{option} takes names (non-empty strings)")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, init=False)
class ToolSettings:
    """How the calls of one tool become Cedar requests; every option is optional.

    The same options as ``@authz.guard``, for tools the application does not
    decorate itself (LangChain tools, MCP tools): give one per tool name, e.g.
    ``authorize_tools(tools, authz, settings={"read_document": ToolSettings(...)})``.

    Attributes:
        action: Cedar action name or uid (default: the tool name).
        resource: a fixed EntityUID/Entity, or a callable of the validated
            arguments returning one (default: the tool itself, ``Tool::"<name>"``).
        resource_types: entity types a computed resource can have (for schema
            generation and ``permitted_tools``); a lone string is one type.
        context: extra context, a mapping or a callable of the validated arguments.
        sum_arguments: integer or decimal arguments a session adds up
            (``context.session.totals.<action>.<argument>``).
        on_deny: ``"message"`` or ``"raise"`` for this tool; None keeps the
            ``on_deny`` of the wrapper or middleware.
        provenance: how the tool's results are labelled as sources of the
            session (``"trusted"``, ``"untrusted"``, labels, or a function of
            the result); None for ``SessionConfig.provenance``'s choice.
        guardrail: an :class:`~agentauthz.Guardrail` (or a bare detector)
            assessing the arguments into ``context.guardrail.input``.

    Raises:
        ConfigurationError: an option has the wrong type (checked when the
            settings are built, so a typo fails at start-up, not at the first call).

    Example:
        >>> import agentauthz as az
        >>> settings = az.ToolSettings(
        ...     resource=lambda args: az.EntityUID("Document", args["document_id"]),
        ...     resource_types="Document")
        >>> settings.resource_types, settings.on_deny
        (('Document',), None)
    """

    action: str | EntityUID | None
    resource: ResourceSpec
    resource_types: tuple[str, ...]
    context: ContextSpec
    sum_arguments: tuple[str, ...]
    on_deny: OnDeny | None
    provenance: ResultLabel | None
    guardrail: Guardrail | None

    def __init__(
        self,
        *,
        action: str | EntityUID | None = None,
        resource: ResourceSpec = None,
        resource_types: str | Iterable[str] = (),
        context: ContextSpec = None,
        sum_arguments: str | Iterable[str] = (),
        on_deny: OnDeny | None = None,
        provenance: ResultLabel | None = None,
        guardrail: Guardrail | Detector | None = None,
    ) -> None:
        if action is not None and not (isinstance(action, EntityUID) or (isinstance(action, str) and action)):
            raise ConfigurationError("ToolSettings.action is an action name or an EntityUID")
        if resource is not None and not isinstance(resource, (EntityUID, Entity)) and not callable(resource):
            raise ConfigurationError(
                "ToolSettings.resource is an EntityUID, an Entity or a callable of the arguments")
        if context is not None and not isinstance(context, Mapping) and not callable(context):
            raise ConfigurationError("ToolSettings.context is a mapping or a callable of the arguments")
        if on_deny not in (None, "raise", "message"):
            raise ConfigurationError(f"ToolSettings.on_deny is 'raise' or 'message', not {on_deny!r}")
        # A frozen dataclass sets its own fields through object.__setattr__.
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "resource", resource)
        object.__setattr__(self, "resource_types", _names(resource_types, "resource_types"))
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "sum_arguments", _names(sum_arguments, "sum_arguments"))
        object.__setattr__(self, "on_deny", on_deny)
        check_result_label(provenance, "ToolSettings.provenance")
        object.__setattr__(self, "provenance", provenance)
        object.__setattr__(self, "guardrail", Guardrail.of(guardrail))

    def on_deny_or(self, default: OnDeny) -> OnDeny:
        """This tool's ``on_deny``, or the wrapper's ``default`` when it sets none."""
        return self.on_deny if self.on_deny is not None else default

    def spec_from_function(self, fn: Callable[..., Any], *, name: str | None, on_deny: OnDeny) -> ToolSpec:
        """The spec of a guarded function (its signature), with these settings.

        Args:
            fn: the tool function; its signature declares the arguments.
            name: the tool name (default: the function's name).
            on_deny: used when these settings set none.

        Raises:
            ConfigurationError: an argument type has no Cedar equivalent, or a
                summed argument is not an integer or decimal argument.
        """
        spec = build_spec(
            fn, name=name, action=self.action, resource=self.resource, resource_types=self.resource_types,
            context=self.context, on_deny=self.on_deny_or(on_deny), sums=self.sum_arguments,
        )
        return dataclasses.replace(spec, provenance=self.provenance, guardrail=self.guardrail)

    def spec_from_model(self, model: type[BaseModel], *, name: str, description: str,
                        on_deny: OnDeny) -> ToolSpec:
        """The spec of a tool whose arguments are the fields of ``model``, with these settings.

        Args:
            model: the pydantic model of the arguments the model chooses.
            name: the tool name.
            description: the tool description.
            on_deny: the wrapper's ``on_deny``, used when these settings set none.

        Raises:
            ConfigurationError: an argument type has no Cedar equivalent, or a
                summed argument is not an integer or decimal argument.
        """
        spec = build_spec_from_model(
            model, name=name, description=description, action=self.action, resource=self.resource,
            resource_types=self.resource_types, context=self.context, on_deny=self.on_deny_or(on_deny),
            sums=self.sum_arguments,
        )
        return dataclasses.replace(spec, provenance=self.provenance, guardrail=self.guardrail)

    def spec_from_mcp_tool(self, tool: Any, *, on_deny: OnDeny) -> ToolSpec:
        """The spec of an MCP tool (:meth:`ToolSpec.from_mcp_tool`), with these settings.

        Raises:
            ConfigurationError: see :meth:`ToolSpec.from_mcp_tool`.
        """
        spec = ToolSpec.from_mcp_tool(
            tool, action=self.action, resource=self.resource, resource_types=self.resource_types,
            context=self.context, on_deny=self.on_deny_or(on_deny), sum_arguments=self.sum_arguments,
        )
        return dataclasses.replace(spec, provenance=self.provenance, guardrail=self.guardrail)

    def spec_from_json_schema(self, schema: Mapping[str, Any], *, name: str, description: str,
                              on_deny: OnDeny) -> ToolSpec:
        """The spec of a tool described by a JSON Schema, with these settings.

        Raises:
            ConfigurationError: see :meth:`ToolSpec.from_json_schema`.
        """
        spec = ToolSpec.from_json_schema(
            name, schema, description=description, action=self.action, resource=self.resource,
            resource_types=self.resource_types, context=self.context, on_deny=self.on_deny_or(on_deny),
            sum_arguments=self.sum_arguments,
        )
        return dataclasses.replace(spec, provenance=self.provenance, guardrail=self.guardrail)
