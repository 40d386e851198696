"""The AgentCore profile: the gateway, its tools, and how the user's claims stand in for our entities."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agentauthz._errors import ConfigurationError
from agentauthz._model import EntityUID
from agentauthz.tools._spec import ToolSpec, spec_of

__all__ = ["AgentCoreProfile", "TagMapping", "tool_uid"]

NAMESPACE = "AgentCore"
PRINCIPAL = f"{NAMESPACE}::OAuthUser"
GATEWAY = f"{NAMESPACE}::Gateway"
ACTION = f"{NAMESPACE}::Action"
#: AgentCore names a tool ``<target>___<tool>`` (three underscores).
SEPARATOR = "___"
_TARGET = re.compile(r"[A-Za-z0-9_-]{1,100}")
_CLAIM = re.compile(r"[^\x00-\x1f\"\\]{1,256}")


def _frozen(mapping: Mapping[str, str], what: str) -> Mapping[str, str]:
    for key, claim in mapping.items():
        if not (isinstance(key, str) and isinstance(claim, str) and key and _CLAIM.fullmatch(claim)):
            raise ConfigurationError(f"TagMapping.{what}: {key!r} -> {claim!r} is not a name -> claim pair")
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class TagMapping:
    """How the principal's attributes and groups in our policies read the end user's token claims.

    AgentCore makes every claim of the caller's token a string tag on the
    ``AgentCore::OAuthUser`` principal (id: the ``sub`` claim); a policy reads
    them with ``principal.hasTag("c")`` / ``principal.getTag("c")``. Our
    policies read a ``User`` entity's attributes and parents instead; this
    mapping says which claim holds each one. Anything it does not map is
    refused by the translator, never dropped.

    Attributes:
        attributes: principal attribute -> claim. ``principal.department``
            becomes ``principal.getTag("department")`` (a String): use it for
            String attributes, and for entity attributes compared with ``==``
            or ``!=`` to an entity of their declared type, whose id the claim
            holds (``principal.tenant == Tenant::"acme"`` becomes
            ``principal.getTag("tenant") == "acme"``).
        groups: parent entity type -> claim listing the user's groups as a
            JSON array of ids, ancestors included (``["employee", "finance"]``).
            ``principal in Role::"finance"`` becomes a ``like`` test for the
            quoted id ``"finance"`` in that claim; a missing claim means no group.

    Example:
        >>> TagMapping(attributes={"tenant": "tenant"}, groups={"Role": "roles"}).groups["Role"]
        'roles'
    """

    attributes: Mapping[str, str] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", _frozen(self.attributes, "attributes"))
        object.__setattr__(self, "groups", _frozen(self.groups, "groups"))


@dataclass(frozen=True)
class AgentCoreProfile:
    """A gateway target and its tools, as our policies name them and as AgentCore does.

    Attributes:
        gateway_arn: the AgentCore Gateway's ARN, the resource of every request.
        target: the gateway target name; tool ``t`` is action
            ``AgentCore::Action::"<target>___t"``.
        tools: the target's tools: ``ToolSpec``s (``ToolSpec.from_json_schema``
            for MCP tools) or functions guarded with ``@authz.guard``. Each
            must have the guard's default resource (the tool itself) and no
            extra context.
        tags: how claims stand in for principal attributes and groups.
        principal_type: our principal entity type (the end user).
        tool_type: our entity type of a tool resource (``Tool::"<name>"``).

    Raises:
        ConfigurationError: a tool computes its resource or extra context (a
            gateway decides on the Gateway and ``context.input`` only), two tools
            share a name, or the target name is not one AgentCore accepts.

    Example:
        >>> import agentauthz as az
        >>> spec = az.ToolSpec.from_json_schema("issue_refund", {"type": "object", "properties": {
        ...     "amount": {"type": "integer"}}, "required": ["amount"]})
        >>> profile = AgentCoreProfile("arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-1",
        ...                            "Refunds", [spec])
        >>> profile.action_id("issue_refund")
        'Refunds___issue_refund'
    """

    gateway_arn: str
    target: str
    tools: tuple[ToolSpec, ...]
    tags: TagMapping = field(default_factory=TagMapping)
    principal_type: str = "User"
    tool_type: str = "Tool"

    def __init__(self, gateway_arn: str, target: str, tools: Iterable[ToolSpec | Callable[..., Any]], *,
                 tags: TagMapping | None = None, principal_type: str = "User",
                 tool_type: str = "Tool") -> None:
        specs = tuple(_spec(tool) for tool in tools)
        if not gateway_arn.startswith("arn:"):
            raise ConfigurationError("gateway_arn must be the gateway's ARN (arn:...)")
        if not _TARGET.fullmatch(target):
            raise ConfigurationError(f"gateway target {target!r}: 1 to 100 letters, digits, '_' or '-'")
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ConfigurationError("two tools of a gateway target share a name")
        for spec in specs:
            if spec.resource is not None or spec.context is not None:
                raise ConfigurationError(
                    f"tool {spec.name!r} computes its resource or extra context: a gateway decides on the "
                    "Gateway and context.input only, so its policies cannot be translated")
        object.__setattr__(self, "gateway_arn", gateway_arn)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "tools", specs)
        object.__setattr__(self, "tags", tags if tags is not None else TagMapping())
        object.__setattr__(self, "principal_type", principal_type)
        object.__setattr__(self, "tool_type", tool_type)

    def action_id(self, tool: str) -> str:
        """The AgentCore action id of one of the target's tools."""
        return f"{self.target}{SEPARATOR}{tool}"

    def tool(self, name: str) -> ToolSpec:
        """The spec of the tool called ``name``.

        Raises:
            ConfigurationError: the target has no such tool.
        """
        for spec in self.tools:
            if spec.name == name:
                return spec
        raise ConfigurationError(f"the gateway target has no tool {name!r}")


def _spec(tool: ToolSpec | Callable[..., Any]) -> ToolSpec:
    spec = tool if isinstance(tool, ToolSpec) else spec_of(tool)
    if spec is None:
        raise ConfigurationError(f"{tool!r} is neither a ToolSpec nor a function guarded with @authz.guard")
    return spec


def tool_uid(profile: AgentCoreProfile, spec: ToolSpec) -> EntityUID:
    """Our resource of a tool call: the tool itself."""
    return EntityUID(profile.tool_type, spec.name)
