"""Tool building blocks: az.Injected, TypedDict arguments, guard(settings=), ToolSpec.from_mcp_tool."""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any, NotRequired, Optional

import mcp.types as mt
import pytest
import typing_extensions
from langchain_core.tools import InjectedToolArg

import agentauthz as az

ALICE = az.EntityUID("User", "alice")
ALLOW_ALL = "permit(principal, action, resource);"


class Env:
    """Something only the application has: never shown to, nor chosen by, the model."""

    def __init__(self, region: str = "eu") -> None:
        self.region = region


def recording_authz() -> tuple[az.Authorizer, az.MemorySink]:
    sink = az.MemorySink()
    return az.Authorizer.from_text(ALLOW_ALL, audit=[sink], record_requests=True), sink


def evaluated_input(sink: az.MemorySink) -> dict[str, Any]:
    request = sink.events[-1].request
    assert request is not None
    return dict(request["request"]["context"]["input"])


# -- az.Injected on the guard --------------------------------------------------------------------


def test_an_injected_argument_is_neither_in_the_cedar_schema_nor_in_context_input() -> None:
    authz, sink = recording_authz()
    seen: list[Env] = []

    @authz.guard
    def lookup(query: str, env: Annotated[Env, az.Injected], limit: int = 5) -> str:
        seen.append(env)
        return f"{query} in {env.region}"

    env = Env()
    assert authz.tools["lookup"].injected == ("env",)
    assert set(authz.tools["lookup"].input_type["attributes"]) == {"query", "limit"}
    stub = "entity User, Tool;"
    assert "env" not in az.generate_schema(stub, tools=[lookup], principal_types=["User"])
    with authz.acting_as(ALICE):
        assert lookup("weather", env=env) == "weather in eu"
        assert lookup("rain", env, 2) == "rain in eu"  # positionally, too
    assert seen == [env, env]
    assert evaluated_input(sink) == {"query": "rain", "limit": 2}


def test_an_injected_argument_the_model_sends_is_refused_and_audited() -> None:
    authz, sink = recording_authz()

    @authz.guard(on_deny="message")
    def lookup(query: str, env: Annotated[Env, az.Injected]) -> str:
        raise AssertionError("never runs")

    with authz.acting_as(ALICE), pytest.raises(az.InvalidArguments, match="env: supplied by the application"):
        authz.begin_tool_call(lookup, {"query": "x", "env": {"region": "us"}})
    assert sink.events[-1].decision == "deny"
    assert "env" in sink.events[-1].errors[0]


def test_a_missing_injected_argument_is_a_configuration_error_before_anything_is_decided() -> None:
    authz, sink = recording_authz()

    @authz.guard
    def lookup(query: str, env: Annotated[Env, az.Injected]) -> str:
        raise AssertionError("never runs")

    with authz.acting_as(ALICE), pytest.raises(az.ConfigurationError, match="'env', which the application"):
        lookup("weather")
    assert sink.events == []


def test_an_injected_argument_with_a_default_may_be_left_out() -> None:
    authz, _ = recording_authz()

    @authz.guard
    def lookup(query: str, env: Annotated[Optional[Env], az.Injected] = None) -> str:  # noqa: UP045
        return "default" if env is None else env.region

    with authz.acting_as(ALICE):
        assert lookup("x") == "default"
        assert lookup("x", env=Env("us")) == "us"


def test_langchains_injected_tool_arg_marks_an_injected_argument_of_a_guarded_function() -> None:
    authz, _ = recording_authz()

    @authz.guard
    def lookup(query: str, env: Annotated[Env, InjectedToolArg]) -> str:
        return env.region

    assert authz.tools["lookup"].injected == ("env",)
    with authz.acting_as(ALICE):
        assert lookup("x", env=Env("us")) == "us"


def test_bind_injected_gives_a_function_without_the_injected_parameters() -> None:
    authz, sink = recording_authz()

    @authz.guard
    def lookup(query: str, env: Annotated[Env, az.Injected], limit: int = 5) -> str:
        return f"{query} in {env.region} ({limit})"

    tool = az.bind_injected(lookup, env=Env("us"))
    assert list(inspect.signature(tool).parameters) == ["query", "limit"]
    assert "env" not in typing.get_type_hints(tool)
    with authz.acting_as(ALICE):
        assert tool("weather") == "weather in us (5)"
        with pytest.raises(TypeError, match="unexpected keyword argument 'env'"):
            tool("weather", env=Env())
    assert evaluated_input(sink) == {"query": "weather", "limit": 5}
    with pytest.raises(az.ConfigurationError, match="needs a value for 'env'"):
        az.bind_injected(lookup)
    with pytest.raises(az.ConfigurationError, match="'query' is not an injected parameter"):
        az.bind_injected(lookup, env=Env(), query="x")


def test_bind_injected_keeps_an_async_tool_async() -> None:
    async def lookup(query: str, env: Annotated[Env, az.Injected]) -> str:
        return env.region

    tool = az.bind_injected(lookup, env=Env("us"))
    assert inspect.iscoroutinefunction(tool)


# -- TypedDict arguments -------------------------------------------------------------------------


class Filters(typing.TypedDict):
    owner: str
    limit: NotRequired[int]


class Options(typing.TypedDict, total=False):
    verbose: bool


class ExtFilters(typing_extensions.TypedDict):
    owner: str
    limit: typing_extensions.NotRequired[int]


class ExtOptions(typing_extensions.TypedDict, total=False):
    verbose: bool


@pytest.mark.parametrize(("filters", "options"), [(Filters, Options), (ExtFilters, ExtOptions)],
                         ids=["typing", "typing_extensions"])
def test_typed_dict_arguments_of_either_module_validate_and_reach_context_input(
        filters: Any, options: Any) -> None:
    authz, sink = recording_authz()
    received: list[Any] = []

    def search_records(where: Any, how: Any, many: Any) -> str:
        received.append((where, how, many))
        return "ok"

    # the records are parameters of the test: annotations set as evaluated ones
    search_records.__annotations__ = {"where": filters, "how": options, "many": list[filters], "return": str}
    search = authz.guard(name="search")(search_records)

    attributes = authz.tools["search"].input_type["attributes"]
    assert attributes["where"]["attributes"] == {
        "owner": {"type": "String"}, "limit": {"type": "Long", "required": False}}
    assert attributes["how"]["attributes"] == {"verbose": {"type": "Boolean", "required": False}}
    with authz.acting_as(ALICE):
        search(where={"owner": "ann", "limit": "3"}, how={}, many=[{"owner": "bo"}])
        with pytest.raises(az.InvalidArguments, match="limit"):
            search(where={"owner": "ann", "limit": "many"}, how={}, many=[])
        with pytest.raises(az.InvalidArguments, match="unknown argument"):
            search(where={"owner": "ann", "bcc": "eve"}, how={}, many=[])
    assert received == [({"owner": "ann", "limit": 3}, {}, [{"owner": "bo"}])]
    assert [e.decision for e in sink.events] == ["allow", "deny", "deny"]
    assert sink.events[0].request is not None
    assert sink.events[0].request["request"]["context"]["input"]["where"] == {"owner": "ann", "limit": 3}


# -- guard(settings=) ----------------------------------------------------------------------------


def test_guard_takes_tool_settings_as_the_integrations_do() -> None:
    authz = az.Authorizer.from_text(
        'permit(principal, action == Action::"read", resource == Document::"d1");', audit=[])
    settings = az.ToolSettings(action="read", resource=lambda args: az.EntityUID("Document", args["doc"]),
                               resource_types="Document", on_deny="message")

    @authz.guard(settings=settings)
    def read_document(doc: str) -> str:
        return f"contents of {doc}"

    spec = authz.tools["read_document"]
    assert (spec.action, spec.resource_types, spec.on_deny) == ("read", ("Document",), "message")
    with authz.acting_as(ALICE):
        assert read_document("d1") == "contents of d1"
        assert read_document("d2").startswith("Tool 'read_document' is not permitted")


def test_guard_settings_and_its_keywords_are_one_or_the_other() -> None:
    authz = az.Authorizer.from_text(ALLOW_ALL)
    with pytest.raises(az.ConfigurationError, match="settings= or action=, not both"):
        authz.guard("read", settings=az.ToolSettings())
    with pytest.raises(az.ConfigurationError, match=r"takes an agentauthz\.ToolSettings"):
        authz.guard(settings={"action": "read"})  # type: ignore[call-overload]


def test_guard_on_deny_is_the_fallback_of_settings_that_set_none() -> None:
    authz = az.Authorizer.from_text("forbid(principal, action, resource);")

    @authz.guard(settings=az.ToolSettings(action="x"), on_deny="message")
    def quiet() -> str:
        return ""

    @authz.guard(settings=az.ToolSettings(on_deny="raise"), on_deny="message")
    def loud() -> str:
        return ""

    with authz.acting_as(ALICE):
        assert quiet().startswith("Tool 'quiet' is not permitted")
        with pytest.raises(az.AccessDenied):
            loud()


# -- ToolSpec.from_mcp_tool ----------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"to": {"type": "string"}, "urgent": {"type": "boolean"}},
          "required": ["to"]}


@pytest.mark.parametrize("tool", [
    mt.Tool(name="send_email", description="Send an email.", inputSchema=SCHEMA),
    {"name": "send_email", "description": "Send an email.", "inputSchema": SCHEMA},
], ids=["mcp.types.Tool", "JSON"])
def test_from_mcp_tool_is_from_json_schema_on_the_tools_input_schema(tool: Any) -> None:
    spec = az.ToolSpec.from_mcp_tool(tool, action="email")
    same = az.ToolSpec.from_json_schema("send_email", SCHEMA, description="Send an email.", action="email")
    assert (spec.name, spec.action, spec.description, spec.input_type) == (
        same.name, same.action, same.description, same.input_type)
    assert spec.arguments({"to": "x@example.com", "urgent": "true"}) == {
        "to": "x@example.com", "urgent": True}


@pytest.mark.parametrize("tool", [{"inputSchema": SCHEMA}, {"name": "x"}, {"name": "x", "inputSchema": []}])
def test_from_mcp_tool_without_a_name_or_an_input_schema_is_a_configuration_error(tool: Any) -> None:
    with pytest.raises(az.ConfigurationError):
        az.ToolSpec.from_mcp_tool(tool)


def test_typing_typed_dicts_reach_runtimes_that_build_schemas_with_pydantic() -> None:
    from fastmcp.tools.function_tool import FunctionTool
    from strands import tool as strands_tool

    from agentauthz.integrations.langchain import PRINCIPAL_KEY, authorize_tools

    def search(where: Any) -> str:
        """Search."""
        return repr(where)

    search.__annotations__ = {"where": Filters, "return": str}
    authz, sink = recording_authz()
    [wrapped] = authorize_tools([search], authz)
    config: Any = {"configurable": {PRINCIPAL_KEY: ALICE}}
    assert wrapped.invoke({"where": {"owner": "ann", "limit": "2"}}, config=config) == repr(
        {"owner": "ann", "limit": 2})
    assert evaluated_input(sink) == {"where": {"owner": "ann", "limit": 2}}
    ready = az.bind_injected(search)  # no injected arguments: only the annotations pydantic takes
    assert FunctionTool.from_function(ready).parameters["required"] == ["where"]
    assert strands_tool(ready).tool_spec["inputSchema"]["json"]["required"] == ["where"]
