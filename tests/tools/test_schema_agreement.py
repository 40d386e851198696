"""A default makes an argument optional on every path: the guard, JSON Schema, Cedar and each runtime agree.

For a generated tool signature (arguments with and without defaults, some
Optional), the property: an argument is an optional Cedar attribute (``?`` in
the generated schema) exactly when it has a default or may be None, on every
path that builds a spec (the guard, ``from_json_schema`` of the guard's JSON
Schema, ``mcp_input_type``, LangChain, an MCP server's and a Strands tool's
published schemas); and every schema a model is shown (the guard's JSON
Schema, LangChain's ``tool_call_schema``, FastMCP's input schema, Strands'
tool spec) requires exactly the arguments without a default.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from fastmcp.tools.function_tool import FunctionTool
from hypothesis import HealthCheck, given, settings
from strands import tool as strands_tool

import agentauthz as az
from agentauthz.integrations.langchain import authorize_tools
from tests.strategies import SignatureArgument, tool_signatures

STUB = {"": {"entityTypes": {"User": {}, "Tool": {}}, "actions": {}}}


def tool_function(arguments: tuple[SignatureArgument, ...]) -> Any:
    """A function whose signature declares these arguments (keyword-only, defaults as drawn)."""
    def pick(**chosen: Any) -> str:
        return "picked"

    pick.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter(a.name, inspect.Parameter.KEYWORD_ONLY, annotation=a.annotation,
                          default=a.default if a.has_default else inspect.Parameter.empty)
        for a in arguments])
    pick.__annotations__ = {a.name: a.annotation for a in arguments} | {"return": str}
    pick.__doc__ = "Pick something."
    return pick


def optional_attributes(record: dict[str, Any]) -> set[str]:
    return {name for name, attribute in record["attributes"].items() if not attribute.get("required", True)}


def required_properties(schema: dict[str, Any]) -> set[str]:
    return set(schema.get("required", []))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arguments=tool_signatures())
def test_defaults_make_arguments_optional_on_every_path(arguments: tuple[SignatureArgument, ...]) -> None:
    fn = tool_function(arguments)
    nullable = {a.name for a in arguments if "Optional" in str(a.annotation)}
    optional = {a.name for a in arguments if a.has_default or a.name in nullable}
    without_default = {a.name for a in arguments if not a.has_default}
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[])

    guarded = authz.guard(name="pick")(fn)
    spec = authz.tools["pick"]
    assert optional_attributes(spec.input_type) == optional, "guard"

    json_schema = spec.input_model.model_json_schema()
    assert required_properties(json_schema) == without_default, "the guard's JSON Schema"
    from_json = az.ToolSpec.from_json_schema("pick", json.loads(json.dumps(json_schema)))
    assert optional_attributes(from_json.input_type) == optional, "from_json_schema"
    assert optional_attributes(az.mcp_input_type({"name": "pick", "inputSchema": json_schema})) == optional

    generated = json.loads(az.generate_schema(STUB, tools=[guarded], principal_types=["User"]))
    cedar_input = generated[""]["actions"]["pick"]["appliesTo"]["context"]["attributes"]["input"]
    assert optional_attributes(cedar_input) == optional, "generated Cedar schema"
    text = az.generate_schema("entity User, Tool;", tools=[guarded], principal_types=["User"])
    assert {a.name for a in arguments if f"{a.name}?:" in text} == optional, "Cedar schema text"

    [langchain_tool] = authorize_tools([fn], authz)
    shown = langchain_tool.tool_call_schema
    assert isinstance(shown, type)
    assert required_properties(shown.model_json_schema()) == without_default, "LangChain tool_call_schema"
    assert optional_attributes(langchain_tool.spec.input_type) == optional, "LangChain spec"

    parameters = FunctionTool.from_function(fn, name="pick").parameters
    assert required_properties(parameters) == without_default, "FastMCP input schema"
    mcp_spec = az.ToolSpec.from_mcp_tool({"name": "pick", "inputSchema": parameters})
    assert optional_attributes(mcp_spec.input_type) == optional, "MCP server middleware spec"

    strands_schema = strands_tool(fn).tool_spec["inputSchema"]["json"]
    assert required_properties(strands_schema) == without_default, "Strands tool spec"
    assert optional_attributes(az.ToolSpec.from_json_schema("pick", strands_schema).input_type) == optional


def test_a_default_is_in_context_input_though_the_attribute_is_optional() -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[sink],
                                    record_requests=True)

    @authz.guard
    def search(query: str, limit: int = 10) -> str:
        return query

    assert authz.tools["search"].input_type["attributes"]["limit"] == {"type": "Long", "required": False}
    with authz.acting_as(az.EntityUID("User", "u")):
        search("x")
    assert sink.events[-1].request is not None
    assert sink.events[-1].request["request"]["context"]["input"] == {"query": "x", "limit": 10}
