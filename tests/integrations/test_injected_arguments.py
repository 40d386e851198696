"""``Annotated[T, az.Injected]`` on every path: not shown to the model, not in Cedar, refused from the model.

One tool, ``lookup(query, env: Annotated[Env, az.Injected])``, reached the way
each runtime reaches it (the guard, LangChain's AuthorizedTool and middleware,
a Bedrock action group, an MCP server with the middleware, an MCP client
session, a Strands agent). On each path:

* the schema the model is shown has no ``env``;
* a call without ``env`` runs the tool with the application's Env, and the
  audited ``context.input`` holds only ``query``;
* a call where the model sends ``env`` is refused (audited deny) and the tool
  never runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest
from fastmcp import Client, FastMCP
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

import agentauthz as az
from agentauthz.integrations.bedrock import action_group_handler
from agentauthz.integrations.langchain import INJECTED_KEY, PRINCIPAL_KEY, AuthorizedTool, AuthzMiddleware
from agentauthz.integrations.mcp import AuthorizedClientSession
from agentauthz.integrations.mcp import AuthzMiddleware as MCPAuthzMiddleware
from tests.integrations.mcp_harness import call, static_tokens

USER = az.EntityUID("User", "carol")
SENT_BY_MODEL = {"region": "attacker"}


class Env:
    """The application's environment: a class no JSON value can be."""

    region = "eu"


ENV = Env()


@dataclass
class Run:
    """One path's run: the Authorizer, what the tool received, what the model was shown."""

    audit: az.MemorySink = field(default_factory=az.MemorySink)
    received: list[tuple[str, Any]] = field(default_factory=list)
    shown: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[self.audit],
                                             record_requests=True)

    def lookup(self) -> Callable[..., str]:
        def lookup(query: str, env: Annotated[Env, az.Injected]) -> str:
            """Look something up."""
            self.received.append((query, env))
            return "found"

        return lookup

    def decisions(self) -> list[az.AuditEvent]:
        return [event for event in self.audit.events if event.action == 'Action::"lookup"']


def via_guard(run: Run, arguments: dict[str, Any]) -> None:
    lookup = run.authz.guard(on_deny="message")(run.lookup())
    run.shown = run.authz.tools["lookup"].input_model.model_json_schema()
    with run.authz.acting_as(USER):
        if "env" in arguments:  # the model's arguments reach a guarded tool through the tool-call path
            with pytest.raises(az.InvalidArguments):
                run.authz.begin_tool_call(lookup, arguments)
        else:
            lookup(**arguments, env=ENV)


def langchain_tool(run: Run) -> BaseTool:
    return StructuredTool.from_function(run.lookup())


def config() -> Any:
    return {"configurable": {PRINCIPAL_KEY: USER, INJECTED_KEY: {"env": ENV}}}


def via_authorized_tool(run: Run, arguments: dict[str, Any]) -> None:
    tool = AuthorizedTool(tool=langchain_tool(run), authz=run.authz)
    run.shown = convert_to_openai_tool(tool)["function"]["parameters"]
    tool.invoke({"type": "tool_call", "id": "c1", "name": "lookup", "args": arguments}, config=config())


def via_middleware(run: Run, arguments: dict[str, Any]) -> None:
    tool = langchain_tool(run)
    middleware = AuthzMiddleware(run.authz)
    shown: list[Any] = []

    class Request:  # the part of a ModelRequest the middleware reads
        def __init__(self) -> None:
            self.tools = [tool]

        def override(self, tools: list[Any]) -> list[Any]:
            shown.extend(tools)
            return tools

    with run.authz.acting_as(USER):
        middleware.wrap_model_call(Request(), lambda request: request)  # type: ignore[arg-type]
    [offered] = shown
    run.shown = convert_to_openai_tool(offered)["function"]["parameters"]
    builder = StateGraph(MessagesState)
    builder.add_node("tools", ToolNode([tool], wrap_tool_call=middleware.wrap_tool_call))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    turn = {"messages": [AIMessage("", tool_calls=[{"name": "lookup", "args": arguments, "id": "c1"}])]}
    builder.compile().invoke(turn, config())


def via_bedrock(run: Run, arguments: dict[str, Any]) -> None:
    lookup = run.authz.guard(run.lookup())
    run.shown = run.authz.tools["lookup"].input_model.model_json_schema()

    @action_group_handler(run.authz, principal=lambda event: USER, tools={"lookup": lookup})
    def handler(event: Any, context: Any, invocation: Any) -> str:
        run.received.append((invocation.arguments["query"], ENV))  # the application supplies its Env
        assert "env" not in invocation.arguments
        return "found"

    parameters = [{"name": name, "type": "string", "value": str(value)} for name, value in arguments.items()]
    handler({"messageVersion": "1.0", "actionGroup": "kb", "function": "lookup", "sessionAttributes": {},
             "parameters": parameters}, None)


def mcp_server(run: Run, *middleware: Any) -> FastMCP:
    server = FastMCP("kb", auth=static_tokens("carol") if middleware else None, middleware=list(middleware))
    server.tool(az.bind_injected(run.lookup(), env=ENV))
    return server


def via_mcp_server(run: Run, arguments: dict[str, Any]) -> None:
    server = mcp_server(run, MCPAuthzMiddleware(run.authz))
    run.shown = asyncio.run(server.get_tool("lookup")).parameters
    call(server, "t-carol", "lookup", arguments)


def via_mcp_client(run: Run, arguments: dict[str, Any]) -> None:
    server = mcp_server(run)

    async def agent() -> None:
        async with Client(server) as client:
            session = AuthorizedClientSession(client.session, run.authz)
            with run.authz.acting_as(USER):
                [listed] = (await session.list_tools()).tools
                run.shown = listed.input_schema
                await session.call_tool("lookup", arguments)

    asyncio.run(agent())


def via_strands(run: Run, arguments: dict[str, Any]) -> None:
    from strands import Agent
    from strands import tool as strands_tool

    from agentauthz.integrations.strands import PRINCIPAL_KEY as STRANDS_PRINCIPAL_KEY
    from agentauthz.integrations.strands import AuthzIntervention, ScriptedModel

    tool = strands_tool(az.bind_injected(run.lookup(), env=ENV))
    run.shown = tool.tool_spec["inputSchema"]["json"]
    agent = Agent(model=ScriptedModel([("tool", "lookup", arguments)]), tools=[tool],
                  interventions=[AuthzIntervention(run.authz, session=None)], callback_handler=None)
    agent("go", invocation_state={STRANDS_PRINCIPAL_KEY: USER})


PATHS: dict[str, Callable[[Run, dict[str, Any]], None]] = {
    "guard": via_guard,
    "AuthorizedTool": via_authorized_tool,
    "AuthzMiddleware": via_middleware,
    "Bedrock action group": via_bedrock,
    "MCP server middleware": via_mcp_server,
    "MCP client session": via_mcp_client,
    "Strands AuthzIntervention": via_strands,
}


@pytest.mark.parametrize("path", PATHS)
def test_an_injected_argument_is_the_applications_and_never_reaches_cedar_or_the_model(path: str) -> None:
    run = Run()
    PATHS[path](run, {"query": "weather"})
    assert "env" not in run.shown.get("properties", {}), f"{path}: the model is shown env"
    assert run.received == [("weather", ENV)], f"{path}: the tool did not get the application's Env"
    decided = [event for event in run.decisions() if event.decision == "allow"]
    assert decided, f"{path}: no allowed decision audited"
    for event in decided:
        assert event.request is not None
        assert event.request["request"]["context"]["input"] == {"query": "weather"}


@pytest.mark.parametrize("path", PATHS)
def test_an_injected_argument_sent_by_the_model_is_refused_and_audited(path: str) -> None:
    run = Run()
    PATHS[path](run, {"query": "weather", "env": SENT_BY_MODEL})
    assert run.received == [], f"{path}: the tool ran with the model's env"
    decisions = run.decisions()
    assert decisions and all(event.decision == "deny" for event in decisions), f"{path}: not audited"
