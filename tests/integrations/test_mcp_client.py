"""AuthorizedClientSession: a client agent authorizes its calls to an MCP server it does not control.

The third-party server runs once per module on a real 127.0.0.1 socket and checks bearer tokens itself;
it has no agentauthz in it. The client is the MCP SDK's own ``ClientSession`` over streamable HTTP
(and, where noted, a fastmcp ``Client``'s session in-process). LangChain tools shaped as
langchain-mcp-adapters makes them are authorized by ``authorize_tools``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import mcp_types as mt
import pytest
from fastmcp import Client, FastMCP
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

import agentauthz as az
from agentauthz.integrations.langchain import PRINCIPAL_KEY, authorize_tools
from agentauthz.integrations.mcp import AuthorizedClientSession
from tests.integrations.mcp_harness import Issuer, LiveServer, quiet_uvicorn, recording_tool

POLICIES = """
@id("refunds-up-to-100") permit (principal, action == Action::"refund", resource)
  when { context.input.amount <= 100 };
@id("lookups") permit (principal, action == Action::"lookup", resource);
@id("no-refunds-for-mallory") forbid (principal == User::"mallory", action, resource);
"""
USER = az.EntityUID("User", "bob")


class ThirdParty:
    """Someone else's MCP server: checks its own tokens, records what its tools receive."""

    def __init__(self) -> None:
        self.issuer = Issuer()
        self.received: list[dict[str, Any]] = []
        self.server = FastMCP("payments", auth=self.issuer.verifier)
        self.server.add_tool(recording_tool("refund", {
            "type": "object", "required": ["order_id", "amount"],
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"},
                           "express": {"type": "boolean"}}}, self.received))
        self.server.add_tool(recording_tool("lookup", {
            "type": "object", "properties": {"order_id": {"type": "string"}}}, self.received))
        self.server.add_tool(recording_tool("wipe", {"type": "object", "properties": {}}, self.received))
        self.server.add_tool(recording_tool("configure", {
            "type": "object", "properties": {"settings": {"type": "object"}}}, self.received))

        @self.server.tool
        def flaky(order_id: str) -> str:
            raise RuntimeError("the server failed")


@pytest.fixture(scope="module")
def third_party() -> Iterator[tuple[ThirdParty, LiveServer]]:
    state = ThirdParty()
    with quiet_uvicorn(), LiveServer(state.server) as live:
        yield state, live


@contextlib.asynccontextmanager
async def mcp_session(live: LiveServer, token: str) -> AsyncIterator[ClientSession]:
    """The MCP SDK's own client over streamable HTTP, with a bearer token."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http, \
            streamable_http_client(live.url, http_client=http) as (read, write, *_), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def authorizer(audit: az.MemorySink | None = None, **options: Any) -> az.Authorizer:
    return az.Authorizer.from_text(POLICIES, audit=[audit] if audit is not None else [], **options)


def text_of(result: mt.CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, mt.TextContent)
    return content.text


def calls(third_party: tuple[ThirdParty, LiveServer], authz: az.Authorizer, user: az.EntityUID,
          made: list[tuple[str, dict[str, Any]]], **options: Any) -> list[mt.CallToolResult]:
    state, live = third_party

    async def agent() -> list[mt.CallToolResult]:
        async with mcp_session(live, state.issuer.token("agent-service")) as session:
            guarded = AuthorizedClientSession(session, authz, **options)
            with authz.acting_as(user):
                return [await guarded.call_tool(name, arguments) for name, arguments in made]

    return live.run(agent)


def test_an_allowed_call_is_sent_with_the_validated_arguments(
    third_party: tuple[ThirdParty, LiveServer]
) -> None:
    state, _ = third_party
    audit = az.MemorySink()
    authz = authorizer(audit, record_requests=True)
    before = len(state.received)
    made = [("refund", {"order_id": "o-1", "amount": "40", "express": "no"})]
    [result] = calls(third_party, authz, USER, made)
    assert not result.is_error and text_of(result) == "done"
    assert state.received[before:] == [{"order_id": "o-1", "amount": 40, "express": False}]
    [event] = audit.events
    assert (event.principal, event.action, event.resource, event.decision) == (
        'User::"bob"', 'Action::"refund"', 'Tool::"refund"', "allow")
    assert event.request is not None
    assert event.request["request"]["context"]["input"] == state.received[-1]


@pytest.mark.parametrize(("name", "arguments", "says"), [
    ("refund", {"order_id": "o-1", "amount": 400}, "is not permitted for this user"),
    ("refund", {"order_id": "o-1", "amount": 40, "notify": "x@evil.example"},
     "do not match the tool's schema"),
    ("refund", {"order_id": "o-1"}, "do not match the tool's schema"),
    ("wipe", {}, "is not permitted for this user"),
    ("drop_tables", {}, "is not available to this agent"),
    ("configure", {"settings": {}}, "is not available to this agent"),  # no Cedar equivalent for its schema
])
def test_a_refused_call_is_never_sent_and_reads_as_a_tool_error(
    third_party: tuple[ThirdParty, LiveServer], name: str, arguments: dict[str, Any], says: str
) -> None:
    state, _ = third_party
    audit = az.MemorySink()
    before = len(state.received)
    [result] = calls(third_party, authorizer(audit), USER, [(name, arguments)])
    assert result.is_error and says in text_of(result)
    assert state.received[before:] == []
    [event] = audit.events
    assert event.decision == "deny" and event.decision_id in text_of(result)


def test_the_tool_list_shows_only_the_tools_the_user_could_call(
    third_party: tuple[ThirdParty, LiveServer]
) -> None:
    state, live = third_party
    authz = authorizer()

    async def agent(user: str) -> list[str]:
        async with mcp_session(live, state.issuer.token("agent-service")) as session:
            with authz.acting_as(az.EntityUID("User", user)):
                listed = await AuthorizedClientSession(session, authz).list_tools()
        return [tool.name for tool in listed.tools]

    assert live.run(lambda: agent("bob")) == ["refund", "lookup"]
    assert live.run(lambda: agent("mallory")) == []


def test_without_a_bound_user_the_call_raises_identity_error_and_is_audited(
    third_party: tuple[ThirdParty, LiveServer]
) -> None:
    state, live = third_party
    audit = az.MemorySink()
    authz = authorizer(audit)

    async def agent() -> Exception | None:
        async with mcp_session(live, state.issuer.token("agent-service")) as session:
            try:
                await AuthorizedClientSession(session, authz).call_tool("lookup", {"order_id": "o-1"})
            except az.IdentityError as exc:
                return exc
        return None

    assert isinstance(live.run(agent), az.IdentityError)
    [event] = audit.events
    assert (event.principal, event.decision, event.errors) == (None, "deny", ("no end user bound",))


def test_calls_in_a_session_count_once_the_server_answered_without_error(
    third_party: tuple[ThirdParty, LiveServer]
) -> None:
    state, live = third_party
    authz = az.Authorizer.from_text(
        'permit(principal, action, resource);'
        '@id("one-lookup") forbid(principal, action == Action::"lookup", resource)'
        ' when { context has session && context.session.calls.lookup >= 1 };', audit=[])

    async def agent() -> list[bool]:
        async with mcp_session(live, state.issuer.token("agent-service")) as session:
            guarded = AuthorizedClientSession(session, authz)
            with authz.acting_as(USER), authz.session("conversation-7") as conversation:
                failed = await guarded.call_tool("flaky", {"order_id": "o-1"})       # the server failed
                first = await guarded.call_tool("lookup", {"order_id": "o-1"})
                second = await guarded.call_tool("lookup", {"order_id": "o-2"})
                assert conversation.state().calls == {"lookup": 1}
        return [failed.is_error, first.is_error, second.is_error]

    assert live.run(agent) == [True, False, True]


def test_a_call_id_already_completed_in_the_session_is_not_sent_again() -> None:
    server = FastMCP("payments")
    received: list[dict[str, Any]] = []
    schema = {"type": "object", "properties": {"order_id": {"type": "string"}}}
    server.add_tool(recording_tool("lookup", schema, received))
    authz = authorizer()

    async def agent() -> list[bool]:
        async with Client(server) as client:  # a fastmcp Client: its MCP session, in-process
            guarded = AuthorizedClientSession(client.session, authz)
            with authz.acting_as(USER), authz.session("conversation-8"):
                outcomes = [await guarded.call_tool("lookup", {"order_id": "o-1"}, call_id="call-1")
                            for _ in range(2)]
        return [outcome.is_error for outcome in outcomes]

    assert asyncio.run(agent()) == [False, True]
    assert received == [{"order_id": "o-1"}]


def test_a_tool_setting_decides_the_call_on_its_computed_resource(
    third_party: tuple[ThirdParty, LiveServer]
) -> None:
    audit = az.MemorySink()
    authz = az.Authorizer.from_text(
        'permit(principal, action == Action::"orders__lookup", resource == Order::"o-1");', audit=[audit])
    settings = {"lookup": az.ToolSettings(action="orders__lookup",
                                          resource=lambda args: az.EntityUID("Order", args["order_id"]))}
    made = [("lookup", {"order_id": "o-1"}), ("lookup", {"order_id": "o-2"})]
    results = calls(third_party, authz, USER, made, tools=settings)
    assert [r.is_error for r in results] == [False, True]
    assert [(e.action, e.resource) for e in audit.events] == [
        ('Action::"orders__lookup"', 'Order::"o-1"'), ('Action::"orders__lookup"', 'Order::"o-2"')]


def test_wrapping_something_that_is_no_client_session_is_a_configuration_error() -> None:
    with pytest.raises(az.ConfigurationError, match="ClientSession"):
        AuthorizedClientSession(object(), authorizer())


# -- LangChain tools as langchain-mcp-adapters builds them ------------------------------------------------


def adapter_tool(session: ClientSession, tool: mt.Tool) -> StructuredTool:
    """What langchain_mcp_adapters.tools.convert_mcp_tool_to_langchain_tool (0.3.x) builds for an MCP tool.

    The adapters cannot be installed beside mcp 2.x (0.3.2 requires mcp<2; 0.3.1 fails to import), so
    the test builds the same shape: the JSON-schema dict as ``args_schema``, a coroutine calling the
    live session, ``content_and_artifact`` responses.
    """
    async def call_tool(**arguments: Any) -> tuple[str, Any]:
        result = await session.call_tool(tool.name, arguments)
        return text_of(result), None

    return StructuredTool(name=tool.name, description=tool.description or "", args_schema=tool.input_schema,
                          coroutine=call_tool, response_format="content_and_artifact")


def test_langchain_tools_shaped_like_langchain_mcp_adapters_are_authorized_by_authorize_tools(
    third_party: tuple[ThirdParty, LiveServer]
) -> None:
    state, live = third_party
    audit = az.MemorySink()
    authz = authorizer(audit)
    before = len(state.received)

    async def agent() -> list[ToolMessage]:
        async with mcp_session(live, state.issuer.token("agent-service")) as session:
            listed = await session.list_tools()
            refund = [adapter_tool(session, t) for t in listed.tools if t.name == "refund"]
            tools = authorize_tools(refund, authz)
            config = {"configurable": {PRINCIPAL_KEY: USER}}
            made = [{"order_id": "o-1", "amount": "30"}, {"order_id": "o-1", "amount": 300},
                    {"order_id": "o-1", "amount": 30, "notify": "x@evil.example"}]
            return [await tools[0].ainvoke(
                {"type": "tool_call", "id": f"c-{n}", "name": "refund", "args": args}, config=config)
                for n, args in enumerate(made)]

    messages = live.run(agent)
    assert [m.status for m in messages] == ["success", "error", "error"]
    assert state.received[before:] == [{"order_id": "o-1", "amount": 30}]  # coerced; only the allowed call
    assert [e.decision for e in audit.events] == ["allow", "deny", "deny"]


def test_a_tool_on_a_later_page_of_the_list_is_found_and_decided_on_its_schema() -> None:
    server = FastMCP("paged", list_page_size=2)
    received: list[dict[str, Any]] = []
    for n in range(5):
        schema = {"type": "object", "properties": {"count": {"type": "integer"}}}
        server.add_tool(recording_tool(f"tool_{n}", schema, received))
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[])

    async def agent() -> bool:
        async with Client(server) as client:
            guarded = AuthorizedClientSession(client.session, authz)
            with authz.acting_as(USER):
                result = await guarded.call_tool("tool_4", {"count": "3"})
        return result.is_error

    assert asyncio.run(agent()) is False
    assert received == [{"count": 3}]
