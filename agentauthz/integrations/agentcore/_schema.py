"""The Cedar schema AgentCore generates from a gateway's tool manifest, and validation against it.

AgentCore validates every policy against a schema it derives from the MCP tools of
the gateway's targets (no schema is uploaded): one ``AgentCore::Action`` per tool,
in the ``CallTool`` -> ``Mcp`` hierarchy, its input as the record type
``<Target>___<tool>Input`` (string -> String, integer -> Long, boolean -> Bool,
number -> decimal, array -> Set, object -> record), principals
``AgentCore::OAuthUser`` with String tags (the token's claims), resources
``AgentCore::Gateway``. We build the same schema to validate translated policies
before a push and to evaluate them locally.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cedarpy

from agentauthz._errors import ConfigurationError
from agentauthz.integrations.agentcore._profile import NAMESPACE, AgentCoreProfile

__all__ = ["gateway_schema", "validation_problems"]

_PRIMITIVE = {"String", "Long", "Boolean"}


def gateway_schema(profile: AgentCoreProfile) -> dict[str, Any]:
    """The Cedar JSON schema of a gateway target's tools, as AgentCore generates it.

    Raises:
        ConfigurationError: a tool argument has a type AgentCore's JSON-schema
            mapping does not produce (an entity, a datetime, an IP address).

    Example:
        >>> import agentauthz as az
        >>> spec = az.ToolSpec.from_json_schema("issue_refund", {"type": "object", "properties": {
        ...     "amount": {"type": "number"}}, "required": ["amount"]})
        >>> profile = AgentCoreProfile("arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-1",
        ...                            "Refunds", [spec])
        >>> gateway_schema(profile)["AgentCore"]["commonTypes"]["Refunds___issue_refundInput"]
        {'type': 'Record', 'attributes': {'amount': {'type': 'Extension', 'name': 'decimal'}}}
    """
    common: dict[str, Any] = {}
    actions: dict[str, Any] = {"Mcp": {}, "CallTool": {"memberOf": [{"id": "Mcp"}]}}
    for spec in profile.tools:
        action = profile.action_id(spec.name)
        common[f"{action}Input"] = _input_type(spec.input_type, f"tool {spec.name!r}")
        actions[action] = {
            "memberOf": [{"id": "CallTool"}],
            "appliesTo": {"principalTypes": ["OAuthUser"], "resourceTypes": ["Gateway"],
                          "context": {"type": "Record", "attributes": {
                              "input": {"type": f"{action}Input"}}}},
        }
    return {NAMESPACE: {"entityTypes": {"OAuthUser": {"tags": {"type": "String"}}, "Gateway": {}},
                        "commonTypes": common, "actions": actions}}


def _input_type(declared: Mapping[str, Any], where: str) -> dict[str, Any]:
    kind = declared.get("type")
    out: dict[str, Any]
    if kind in _PRIMITIVE:
        out = {"type": kind}
    elif kind == "Extension" and declared.get("name") == "decimal":
        out = {"type": "Extension", "name": "decimal"}
    elif kind == "Set":
        out = {"type": "Set", "element": _input_type(declared["element"], where)}
    elif kind == "Record":
        out = {"type": "Record", "attributes": {
            name: _input_type(attribute, f"{where}, argument {name!r}")
            for name, attribute in declared.get("attributes", {}).items()}}
    else:
        raise ConfigurationError(f"{where}: a {kind} argument has no AgentCore type "
                                 "(string, integer, number, boolean, array, object)")
    if declared.get("required") is False:
        out["required"] = False
    return out


def validation_problems(statements: Mapping[str, str], schema: Mapping[str, Any]) -> dict[str, list[str]]:
    """Our id -> what Cedar's validator says about each statement under the gateway schema."""
    schema_text = json.dumps(schema)
    problems: dict[str, list[str]] = {}
    for our_id, statement in statements.items():
        result = cedarpy.validate_policies(statement, schema_text)
        if not result.validation_passed:
            problems[our_id] = [str(error.error) for error in result.errors] or ["does not validate"]
    return problems
