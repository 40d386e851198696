"""Finding 1: a tool receives exactly the validated arguments the policy evaluated, on every path.

Every way a model's tool call reaches a tool is one entry of ``PATHS``: the
guard, LangChain's ``AuthorizedTool`` (alone and in LangGraph's ``ToolNode``),
``AuthzMiddleware`` (alone, sync and async, and over an ``AuthorizedTool``),
and the Bedrock Agents integration (function-details and OpenAPI action groups,
return of control). Each builds a recording tool from a generated
:class:`~tests.strategies.ToolCase` (its arguments declared as a function
signature, a pydantic model with any ``extra=``, TypedDict records of
``typing`` or ``typing_extensions``, or a JSON Schema; sometimes with an
argument the application supplies, ``env: Annotated[Env, az.Injected]``),
makes the model's call, and reports what the tool received.

The property, for every path and case: either the call was refused (the tool
never ran and the refusal is audited), or the tool received exactly what the
policy evaluated (``context.input`` of the audited request), with only declared
arguments of their declared types. An invented argument is always refused.
An injected argument is the application's object on every path that hands it
to the tool, never in ``context.input``; a model that sends it is refused. A
new path (MCP server middleware, Strands) is one more entry of ``PATHS``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, Optional

import pytest
from fastmcp import Client, FastMCP
from fastmcp.tools.function_tool import FunctionTool
from hypothesis import HealthCheck, given, settings
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from pydantic import BaseModel, ConfigDict, create_model
from typing_extensions import TypedDict  # pydantic takes only this one before Python 3.12

import agentauthz as az
from agentauthz._model import to_cedar_value
from agentauthz.integrations.bedrock import action_group_handler, authorize_return_control
from agentauthz.integrations.langchain import INJECTED_KEY, PRINCIPAL_KEY, AuthorizedTool, AuthzMiddleware
from agentauthz.integrations.mcp import AuthorizedClientSession
from agentauthz.integrations.mcp import AuthzMiddleware as MCPAuthzMiddleware
from agentauthz.tools._spec import tool_input
from tests.integrations.mcp_harness import call, recording_tool, static_tokens
from tests.strategies import ARGUMENT_CHOICES, ArgumentShape, ToolCase, tool_cases

NAME = "send_email"
USER = az.EntityUID("User", "carol")
ALLOW_ALL = "permit(principal, action, resource);"


class Env:
    """What the application supplies to a tool (``Annotated[Env, az.Injected]``): no JSON value is one."""


ENV = Env()
INJECTED = Annotated[Env, az.Injected]


# -- tools built from a case ---------------------------------------------------------------------


def python_type(shape: ArgumentShape, case: ToolCase, where: str) -> Any:
    """The Python annotation of an argument (records: a pydantic model or a TypedDict)."""
    scalars: dict[str, Any] = {
        "str": str, "int": int, "bool": bool, "float": float, "strs": list[str], "ints": list[int],
        "choice": Literal[ARGUMENT_CHOICES],
    }
    if shape.kind != "record":
        return scalars[shape.kind]
    name = f"{where}_{shape.name}"
    if case.typed_dict:
        hints = {f.name: python_type(f, case, name) if f.required
                 else NotRequired[Optional[python_type(f, case, name)]]  # noqa: UP045
                 for f in shape.fields}
        # pydantic models (args_schema) take only typing_extensions' before Python 3.12; guards take both
        flavour = typing.TypedDict if case.typed_dict_module == "typing" and case.style == "signature" \
            else TypedDict
        return flavour(name, hints)  # type: ignore[operator]
    return pydantic_model(shape.fields, case, name)


def pydantic_model(fields: tuple[ArgumentShape, ...], case: ToolCase, name: str,
                   injected: bool = False) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    for f in fields:
        hint = python_type(f, case, name)
        definitions[f.name] = (hint, ...) if f.required else (Optional[hint], None)  # noqa: UP045
    if injected:
        definitions["env"] = (INJECTED, ...)
    config = ConfigDict(extra=case.extra, arbitrary_types_allowed=True)  # type: ignore[typeddict-item]
    model: type[BaseModel] = create_model(name, __config__=config, **definitions)  # type: ignore[call-overload]
    return model


def model_arguments(case: ToolCase) -> dict[str, Any]:
    """What the model sends: the case's arguments, and ``env`` when it tries to supply that too."""
    return {**case.arguments, "env": {"region": "attacker"}} if case.sends_injected else dict(case.arguments)


def json_schema(fields: tuple[ArgumentShape, ...]) -> dict[str, Any]:
    def node(shape: ArgumentShape) -> dict[str, Any]:
        if shape.kind == "record":
            return json_schema(shape.fields)
        return {
            "str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
            "float": {"type": "number"}, "strs": {"type": "array", "items": {"type": "string"}},
            "ints": {"type": "array", "items": {"type": "integer"}},
            "choice": {"enum": list(ARGUMENT_CHOICES)},
        }[shape.kind]

    return {"type": "object", "properties": {f.name: node(f) for f in fields},
            "required": [f.name for f in fields if f.required]}


@dataclass
class Harness:
    """One example on one path: a fresh Authorizer, its audit trail, what the tool received."""

    policies: str = ALLOW_ALL
    audit: az.MemorySink = field(default_factory=az.MemorySink)
    received: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.authz = az.Authorizer.from_text(self.policies, audit=[self.audit], record_requests=True)
        self.config: Any = {"configurable": {PRINCIPAL_KEY: USER, INJECTED_KEY: {"env": ENV}}}

    def record(self, **arguments: Any) -> str:
        self.received.append(arguments)
        return "done"

    def function(self, case: ToolCase) -> Callable[..., str]:
        """A recording function whose signature declares the case's arguments."""
        def send_email(**arguments: Any) -> str:
            return self.record(**arguments)

        hints = {f.name: python_type(f, case, NAME) for f in case.fields}
        send_email.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                              default=inspect.Parameter.empty if f.required else None)
            for f in case.fields
        ] + ([inspect.Parameter("env", inspect.Parameter.KEYWORD_ONLY, annotation=INJECTED)]
             if case.injected else []))
        send_email.__annotations__ = {
            name: hint if f.required else Optional[hint]  # noqa: UP045
            for f, (name, hint) in zip(case.fields, hints.items(), strict=True)}
        if case.injected:
            send_email.__annotations__["env"] = INJECTED
        return send_email

    def runtime_function(self, case: ToolCase) -> Callable[..., str]:
        """The function as a runtime that reads signatures takes it: the application's env bound."""
        function = self.function(case)
        return az.bind_injected(function, env=ENV) if case.injected else function

    def langchain_tool(self, case: ToolCase) -> BaseTool:
        """A LangChain tool recording its arguments, with a pydantic or JSON-schema args_schema."""
        schema: Any = (json_schema(case.fields) if case.style == "json"
                       else pydantic_model(case.fields, case, f"{NAME}_args", injected=case.injected))
        return StructuredTool.from_function(self.record, name=NAME, description="Send.", args_schema=schema)

    def spec(self, case: ToolCase) -> Any:
        """The tool as the Bedrock integration takes it: a guarded function or an AuthorizedTool."""
        if case.style == "signature":
            return self.authz.guard(name=NAME, on_deny="message")(self.function(case))
        return AuthorizedTool(tool=self.langchain_tool(case), authz=self.authz)


def tool_call(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_call", "id": "call-1", "name": NAME, "args": arguments}


def graph(tools: list[BaseTool], **wrappers: Any) -> Any:
    """A LangGraph graph running one ToolNode, as create_agent runs the agent's tools."""
    builder = StateGraph(MessagesState)
    builder.add_node("tools", ToolNode(tools, **wrappers))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    return builder.compile()


def model_turn(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [AIMessage("", tool_calls=[{"name": NAME, "args": arguments, "id": "call-1"}])]}


def bedrock_parameters(arguments: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Arguments as Bedrock sends them: strings with a declared type."""
    def typed(value: Any) -> tuple[str, Any]:
        if isinstance(value, bool):
            return "boolean", str(value).lower()
        if isinstance(value, int):
            return "integer", str(value)
        if isinstance(value, float):
            return "number", repr(value)
        if isinstance(value, list):
            return "array", json.dumps(value)
        if isinstance(value, dict):
            return "object", json.dumps(value)
        return "string", value

    return [{"name": name, "type": typed(value)[0], "value": typed(value)[1]}
            for name, value in arguments.items()]


# -- the paths -------------------------------------------------------------------------------------------


def via_guard(case: ToolCase, h: Harness) -> None:
    send_email = h.authz.guard(name=NAME, on_deny="message")(h.function(case))
    with h.authz.acting_as(USER):  # the guard's caller is the application: it passes env itself
        send_email(**case.arguments, **({"env": ENV} if case.injected else {}))


def via_authorized_tool(case: ToolCase, h: Harness) -> None:
    tool = AuthorizedTool(tool=h.langchain_tool(case), authz=h.authz)
    tool.invoke(tool_call(model_arguments(case)), config=h.config)


def via_authorized_tool_in_tool_node(case: ToolCase, h: Harness) -> None:
    tool = AuthorizedTool(tool=h.langchain_tool(case), authz=h.authz)
    graph([tool]).invoke(model_turn(model_arguments(case)), h.config)


def via_middleware(case: ToolCase, h: Harness) -> None:
    middleware = AuthzMiddleware(h.authz, filter_tools=False)
    graph([h.langchain_tool(case)], wrap_tool_call=middleware.wrap_tool_call).invoke(
        model_turn(model_arguments(case)), h.config)


def via_middleware_async(case: ToolCase, h: Harness) -> None:
    middleware = AuthzMiddleware(h.authz, filter_tools=False)
    app = graph([h.langchain_tool(case)], awrap_tool_call=middleware.awrap_tool_call)
    asyncio.run(app.ainvoke(model_turn(model_arguments(case)), h.config))


def via_middleware_over_authorized_tool(case: ToolCase, h: Harness) -> None:
    middleware = AuthzMiddleware(h.authz, filter_tools=False)
    tool = AuthorizedTool(tool=h.langchain_tool(case), authz=h.authz)
    app = graph([tool], wrap_tool_call=middleware.wrap_tool_call)
    app.invoke(model_turn(model_arguments(case)), h.config)


def via_bedrock_function_group(case: ToolCase, h: Harness) -> None:
    @action_group_handler(h.authz, principal=lambda event: USER, tools={NAME: h.spec(case)})
    def handler(event: Any, context: Any, invocation: Any) -> str:
        return h.record(**invocation.arguments)

    handler({"messageVersion": "1.0", "actionGroup": "mail", "function": NAME, "sessionAttributes": {},
             "parameters": bedrock_parameters(model_arguments(case))}, None)


def via_bedrock_openapi_group(case: ToolCase, h: Harness) -> None:
    @action_group_handler(h.authz, principal=lambda event: USER, tools={"POST /emails": h.spec(case)})
    def handler(event: Any, context: Any, invocation: Any) -> str:
        return h.record(**invocation.arguments)

    properties = bedrock_parameters(model_arguments(case))
    handler({"messageVersion": "1.0", "actionGroup": "mail-api", "apiPath": "/emails", "httpMethod": "POST",
             "sessionAttributes": {},
             "requestBody": {"content": {"application/json": {"properties": properties}}}}, None)


def via_bedrock_return_of_control(case: ToolCase, h: Harness) -> None:
    payload = {"invocationId": "i-1", "invocationInputs": [{"functionInvocationInput": {
        "actionGroup": "mail", "function": NAME, "parameters": bedrock_parameters(model_arguments(case))}}]}
    decided = authorize_return_control(h.authz, payload, USER, tools={NAME: h.spec(case)})
    for invocation in decided.allowed:  # what the application then runs
        h.record(**invocation.arguments)


def via_strands(case: ToolCase, h: Harness) -> None:
    """A Strands agent (scripted model) with AuthzIntervention; a @tool from the signature, or a JSON tool."""
    from strands import Agent
    from strands import tool as strands_tool

    from agentauthz.integrations.strands import PRINCIPAL_KEY as STRANDS_PRINCIPAL_KEY
    from agentauthz.integrations.strands import AuthzIntervention, ScriptedModel
    from tests.integrations.strands_model import json_tool

    send_email = (json_tool(NAME, json_schema(case.fields), lambda arguments: h.record(**arguments))
                  if case.style == "json" else strands_tool(h.runtime_function(case)))
    intervention = AuthzIntervention(h.authz, session=None, filter_tools=False)
    agent = Agent(model=ScriptedModel([("tool", NAME, model_arguments(case))]), tools=[send_email],
                  interventions=[intervention], callback_handler=None)
    agent("go", invocation_state={STRANDS_PRINCIPAL_KEY: USER})


def mcp_tool(case: ToolCase, h: Harness) -> Any:
    """The case's tool on a FastMCP server: a function by its signature, or a tool known by JSON Schema."""
    if case.style == "json":
        return recording_tool(NAME, json_schema(case.fields), h.received)
    return FunctionTool.from_function(h.runtime_function(case), name=NAME)


def via_mcp_server_middleware(case: ToolCase, h: Harness) -> None:
    server = FastMCP("mail", auth=static_tokens("carol"), middleware=[MCPAuthzMiddleware(h.authz)])
    server.add_tool(mcp_tool(case, h))
    call(server, "t-carol", NAME, model_arguments(case))


def via_mcp_client_session(case: ToolCase, h: Harness) -> None:
    server = FastMCP("third-party")
    server.add_tool(mcp_tool(case, h))

    async def agent() -> None:
        async with Client(server) as client:
            with h.authz.acting_as(USER):
                await AuthorizedClientSession(client.session, h.authz).call_tool(NAME, model_arguments(case))

    asyncio.run(agent())


@dataclass(frozen=True)
class Path:
    """One way a model's tool call reaches a tool."""

    name: str
    run: Callable[[ToolCase, Harness], None]
    styles: tuple[str, ...] = ("pydantic", "json")
    typing_typed_dicts: bool = False  # signatures with typing.TypedDict (pydantic-built runtimes: 3.12+)
    hands_over_injected: bool = True  # the tool gets env (Bedrock: the handler gets only the arguments)
    model_sends: bool = True  # the arguments come from a model (the guard's caller is the application)

    def __str__(self) -> str:
        return self.name


ALL_STYLES = ("signature", "pydantic", "json")
PATHS = [
    Path("guard", via_guard, ("signature",), typing_typed_dicts=True, model_sends=False),
    Path("AuthorizedTool", via_authorized_tool),
    Path("AuthorizedTool in ToolNode", via_authorized_tool_in_tool_node),
    Path("AuthzMiddleware", via_middleware),
    Path("AuthzMiddleware async", via_middleware_async),
    Path("AuthzMiddleware over AuthorizedTool", via_middleware_over_authorized_tool),
    Path("Bedrock function group", via_bedrock_function_group, ALL_STYLES, True, False),
    Path("Bedrock OpenAPI group", via_bedrock_openapi_group, ALL_STYLES, True, False),
    Path("Bedrock return of control", via_bedrock_return_of_control, ALL_STYLES, True, False),
    Path("Strands AuthzIntervention", via_strands, ("signature", "json")),
    Path("MCP server middleware", via_mcp_server_middleware, ALL_STYLES),
    Path("MCP client session", via_mcp_client_session, ALL_STYLES),
]


# -- the property ----------------------------------------------------------------------------------------


def conforms(value: Any, fields: tuple[ArgumentShape, ...], case: ToolCase, where: str = "") -> None:
    """The received arguments are declared ones, of their declared Python types (coerced), no more."""
    if isinstance(value, BaseModel):
        assert case.style != "json", f"{where}: a JSON-schema tool got a model, not JSON"
        assert not value.model_extra, f"{where}: undeclared {sorted(value.model_extra)}"
        value = {name: getattr(value, name) for name in type(value).model_fields}
    assert isinstance(value, dict), where
    declared = {f.name: f for f in fields}
    assert set(value) <= set(declared), f"{where}: undeclared {sorted(set(value) - set(declared))}"
    assert {f.name for f in fields if f.required} <= set(value), f"{where}: a required argument is missing"
    for name, item in value.items():
        shape, at = declared[name], f"{where}.{name}"
        if item is None:
            assert not shape.required, at
            continue
        kind = shape.kind
        if kind == "record":
            conforms(item, shape.fields, case, at)
        elif kind in ("strs", "ints"):
            element = str if kind == "strs" else int
            assert isinstance(item, list) and all(type(x) is element for x in item), at
        elif kind == "choice":
            assert item in ARGUMENT_CHOICES, at
        else:
            assert type(item) is {"str": str, "int": int, "bool": bool, "float": float}[kind], at


def check(case: ToolCase, h: Harness, path: Path) -> None:
    events = [e for e in h.audit.events if e.action == f'Action::"{NAME}"']
    assert len(h.received) <= 1
    if not h.received:  # refused: never silently
        assert events and all(e.decision == "deny" for e in events), "a refusal must be audited"
        return
    [received] = h.received
    assert not case.unknown, f"an invented argument reached the tool: {received}"
    assert not case.sends_injected, "the model's env reached the tool"
    received = dict(received)
    if case.injected and path.hands_over_injected:
        assert received.pop("env") is ENV, "the tool did not get the application's env"
    conforms(received, case.fields, case)
    [decided] = [e for e in events if e.decision == "allow"]
    assert decided.request is not None
    evaluated = decided.request["request"]["context"]["input"]
    assert to_cedar_value(tool_input(received)) == evaluated


@pytest.mark.parametrize("path", PATHS, ids=str)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tool_cases())
def test_the_tool_receives_exactly_what_the_policy_evaluated_or_nothing(path: Path, data: ToolCase) -> None:
    case = data if data.style in path.styles else dataclasses.replace(
        data, style=path.styles[len(data.arguments) % len(path.styles)])
    if case.style == "json":  # a JSON Schema has no Python annotation to mark an argument injected
        case = dataclasses.replace(case, injected=False, sends_injected=False)
    if not path.typing_typed_dicts:
        case = dataclasses.replace(case, typed_dict_module="typing_extensions")
    if not path.model_sends:
        case = dataclasses.replace(case, sends_injected=False)
    harness = Harness()
    path.run(case, harness)
    check(case, harness, path)


# -- regressions of the review's reproductions --------------------------------------------------------


EMAIL = (ArgumentShape("to", "str", True), ArgumentShape("subject", "str", True))
DELETE = (ArgumentShape("to", "str", True), ArgumentShape("force", "bool", False))
EXTRA_STYLES = [("json", "allow"), ("pydantic", "allow"), ("pydantic", "ignore"), ("signature", "allow")]


@pytest.mark.parametrize(("path", "style", "extra"), [
    pytest.param(path, style, extra, id=f"{path}-{style}-{extra}")
    for path in PATHS for style, extra in EXTRA_STYLES if style in path.styles])
def test_a_model_invented_bcc_never_reaches_send_email(path: Path, style: str, extra: str) -> None:
    arguments = {"to": "dave@acme.example", "subject": "Q3", "bcc": "x@evil.example"}
    case = ToolCase(EMAIL, style, extra, False, arguments, unknown=True)
    harness = Harness()
    path.run(case, harness)
    assert harness.received == []
    [refusal] = [e for e in harness.audit.events if e.action == f'Action::"{NAME}"']
    assert refusal.decision == "deny" and "bcc: unknown argument" in refusal.errors[0]


@pytest.mark.parametrize(("path", "style"), [
    pytest.param(path, style, id=f"{path}-{style}") for path in PATHS for style in path.styles])
def test_a_string_false_reaches_the_tool_as_the_false_the_policy_saw(path: Path, style: str) -> None:
    policy = 'permit(principal, action, resource) unless { context.input has force && context.input.force };'
    case = ToolCase(DELETE, style, "allow", False, {"to": "orders", "force": "false"}, unknown=False)
    harness = Harness(policies=policy)
    path.run(case, harness)
    [received] = harness.received
    assert received["force"] is False  # the value the policy allowed, not the truthy string
    assert [e.decision for e in harness.audit.events] == ["allow"]


def test_a_nested_argument_the_schema_does_not_declare_is_refused_even_under_extra_allow() -> None:
    record = ArgumentShape("to", "record", True, (ArgumentShape("subject", "str", True),))
    case = ToolCase((record,), "pydantic", "allow", False,
                    {"to": {"subject": "s", "bcc": "x@evil.example"}}, unknown=True)
    harness = Harness()
    via_authorized_tool(case, harness)
    assert harness.received == []
    assert "to.bcc: unknown argument" in harness.audit.events[-1].errors[0]


def test_a_json_schema_tool_gets_json_values_and_no_null_for_an_argument_the_model_left_out() -> None:
    record = ArgumentShape("to", "record", True, (ArgumentShape("subject", "str", True),
                                                  ArgumentShape("note", "str", False)))
    case = ToolCase((record, ArgumentShape("count", "int", False)), "json", "allow", False,
                    {"to": {"subject": "s"}}, unknown=False)
    harness = Harness()
    via_middleware(case, harness)
    assert harness.received == [{"to": {"subject": "s"}}]


def test_a_refusal_of_invalid_arguments_reaches_the_model_as_an_error_tool_message() -> None:
    case = ToolCase(EMAIL, "json", "allow", False, {"to": "a", "subject": "s", "bcc": "b"}, unknown=True)
    harness = Harness()
    middleware = AuthzMiddleware(harness.authz, filter_tools=False)
    result = graph([harness.langchain_tool(case)], wrap_tool_call=middleware.wrap_tool_call).invoke(
        model_turn(model_arguments(case)), harness.config)
    message = result["messages"][-1]
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert harness.audit.events[-1].decision_id in str(message.content)


def test_a_call_without_an_end_user_is_an_identity_error_even_with_invalid_arguments() -> None:
    case = ToolCase(EMAIL, "json", "allow", False, {"to": "a", "bcc": "b"}, unknown=True)
    harness = Harness()
    tool = AuthorizedTool(tool=harness.langchain_tool(case), authz=harness.authz)
    with pytest.raises(az.IdentityError):
        tool.invoke(tool_call(model_arguments(case)))  # no end user in the config, none bound
    assert harness.received == []
    [refusal] = harness.audit.events
    assert refusal.principal is None and refusal.errors == ("no end user bound",)


# -- ToolSpec.from_json_schema: the Cedar types and validation of @authz.guard ------------------------


def test_a_json_schema_maps_to_the_cedar_types_a_guarded_signature_would_have() -> None:
    schema = {
        "type": "object", "description": "Send an email.", "required": ["to", "level"],
        "$defs": {"Who": {"type": "object", "required": ["name"],
                          "properties": {"name": {"type": "string"}}}},
        "additionalProperties": True,
        "properties": {
            "to": {"type": "string"}, "level": {"enum": [1, 2, 3]}, "price": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}}, "urgent": {"type": ["boolean", "null"]},
            "who": {"allOf": [{"$ref": "#/$defs/Who"}]}, "mode": {"const": "fast"},
        },
    }
    spec = az.ToolSpec.from_json_schema("send_email", schema, sum_arguments=["price"])

    def guarded(to: str, level: Literal[1, 2, 3], price: float | None = None, tags: list[str] | None = None,
                urgent: bool | None = None, who: _Who | None = None,
                mode: Literal["fast"] | None = None) -> None: ...

    authz = az.Authorizer.from_text(ALLOW_ALL, audit=[])
    assert spec.input_type == authz.guard(name="send_email")(guarded).__agentauthz_tool__.input_type
    assert (spec.description, spec.sums, spec.action) == ("Send an email.", ("price",), "send_email")
    assert spec.arguments({"to": "a", "level": 2, "who": {"name": "n"}}) == {
        "to": "a", "level": 2, "who": {"name": "n"}}
    for wrong in ({"to": "a", "level": 4}, {"to": "a", "level": 1, "mode": "slow"},
                  {"to": "a", "level": 1, "who": {"name": "n", "admin": True}},
                  {"to": "a", "level": 1, "x": 1}):
        with pytest.raises(az.InvalidValueError):
            spec.arguments(wrong)


class _Who(BaseModel):
    name: str


@pytest.mark.parametrize("properties", [
    {"settings": {"type": "object"}},                                  # free-form: no Cedar record
    {"either": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},  # a union of types
    {"_hidden": {"type": "string"}},                                   # pydantic would hide it
    {"model_config": {"type": "string"}},
    {"mixed": {"enum": ["a", 1]}},
    {"loop": {"$ref": "#/$defs/Loop"}},
])
def test_a_json_schema_without_a_cedar_equivalent_is_a_configuration_error(
    properties: dict[str, Any]
) -> None:
    schema = {"type": "object", "properties": properties,
              "$defs": {"Loop": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Loop"}}}}}
    with pytest.raises(az.ConfigurationError):
        az.ToolSpec.from_json_schema("t", schema)
