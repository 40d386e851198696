"""Guardrails on the MCP paths: a tool's result screened by the server middleware and by the client
session wrapper (a real FastMCP server, a real MCP client), and the calls a policy forbids after it."""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as mt
import pytest
from fastmcp import Client, FastMCP

import agentauthz as az
from agentauthz.integrations.mcp import AuthorizedClientSession
from agentauthz.integrations.mcp import AuthzMiddleware as MCPAuthzMiddleware
from tests.integrations.guardrail_cases import ATTACK, CLEAN_TEXT, USER, DownDetector, authorizer, seen
from tests.integrations.mcp_harness import served, static_tokens


def tools(server: FastMCP, mailed: list[str]) -> None:
    @server.tool
    def fetch(url: str) -> str:
        return ATTACK if "evil" in url else CLEAN_TEXT

    @server.tool
    def send_email(to: str) -> str:
        mailed.append(to)
        return "sent"


def guarded_server(authz: az.Authorizer, screen: Any, mailed: list[str]) -> FastMCP:
    server = FastMCP("desk", auth=static_tokens("alice"), middleware=[MCPAuthzMiddleware(
        authz, session=True, tools={"fetch": az.ToolSettings(guardrail=screen)})])
    tools(server, mailed)
    return server


def text(result: mt.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, mt.TextContent))


def conversation(server: FastMCP, calls: list[tuple[str, dict[str, Any]]]) -> list[mt.CallToolResult]:
    async def run() -> list[mt.CallToolResult]:
        async with served(server, "t-alice", mode="legacy") as client:  # one MCP session
            return [await client.call_tool_mcp(name, arguments) for name, arguments in calls]

    return asyncio.run(run())


RESEARCH = [("send_email", {"to": "bob@example.com"}), ("fetch", {"url": "https://evil.example"}),
            ("send_email", {"to": "eve@example.com"})]


# -- the server middleware -----------------------------------------------------------------------------


def test_an_injected_tool_result_on_the_server_refuses_the_calls_after_it() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    mailed: list[str] = []
    server = guarded_server(authz, az.Guardrail(az.LocalDetector(), inputs=False), mailed)
    first, page, refused = conversation(server, RESEARCH)
    assert not first.is_error and text(page) == ATTACK
    assert refused.is_error and "not permitted" in text(refused)
    assert mailed == ["bob@example.com"]
    assert sink.events[-1].reasons == ("halt-after-injected-document",)


def test_a_clean_tool_result_on_the_server_leaves_the_calls_allowed() -> None:
    authz = authorizer()
    mailed: list[str] = []
    server = guarded_server(authz, az.Guardrail(az.LocalDetector(), inputs=False), mailed)
    results = conversation(server, [("fetch", {"url": "https://news.example"}),
                                    ("send_email", {"to": "eve@example.com"})])
    assert not any(result.is_error for result in results) and mailed == ["eve@example.com"]


def test_a_server_result_that_cannot_be_assessed_is_withheld_and_audited() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    server = guarded_server(authz, az.Guardrail(DownDetector(), inputs=False, on_error="raise"), [])
    [page] = conversation(server, [("fetch", {"url": "https://news.example"})])
    assert page.is_error and CLEAN_TEXT not in text(page)
    assert "the result could not be screened (GuardrailUnavailable)" in sink.events[-1].errors[0]


def test_a_server_detector_that_is_down_labels_the_session_and_the_policy_refuses() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    server = guarded_server(authz, az.Guardrail(DownDetector(), inputs=False), [])
    _, refused = conversation(server, [("fetch", {"url": "https://news.example"}),
                                       ("send_email", {"to": "eve@example.com"})])
    assert refused.is_error and sink.events[-1].reasons == ("halt-when-unassessed",)


def test_a_guarded_tool_given_to_the_server_keeps_its_guardrail() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)

    @authz.guard(guardrail=az.Guardrail(az.LocalDetector(), inputs=False))
    def fetch(url: str) -> str:
        return "the application's own copy of the tool"

    server = FastMCP("desk", auth=static_tokens("alice"), middleware=[MCPAuthzMiddleware(
        authz, session=True, tools={"fetch": fetch})])
    mailed: list[str] = []
    tools(server, mailed)
    *_, refused = conversation(server, RESEARCH)
    assert refused.is_error and mailed == ["bob@example.com"]


# -- the client session wrapper ----------------------------------------------------------------------


def plain_server(mailed: list[str]) -> FastMCP:
    server = FastMCP("someone-else")
    tools(server, mailed)
    return server


def client_conversation(authz: az.Authorizer, screen: Any, calls: list[tuple[str, dict[str, Any]]],
                        session_id: str = "chat-mcp") -> list[mt.CallToolResult]:
    server = plain_server([])

    async def agent() -> list[mt.CallToolResult]:
        async with Client(server) as client:
            guarded = AuthorizedClientSession(client.session, authz,
                                              tools={"fetch": az.ToolSettings(guardrail=screen)})
            with authz.acting_as(USER), authz.session(session_id):
                return [await guarded.call_tool(name, arguments) for name, arguments in calls]

    return asyncio.run(agent())


def test_an_injected_tool_result_in_the_client_session_refuses_the_calls_after_it() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    first, page, refused = client_conversation(
        authz, az.Guardrail(az.LocalDetector(), inputs=False), RESEARCH)
    assert not first.is_error and text(page) == ATTACK
    assert refused.is_error and sink.events[-1].reasons == ("halt-after-injected-document",)
    assert "guardrail:prompt_attack:high" in seen(authz, "chat-mcp")


def test_a_client_result_that_cannot_be_assessed_raises_instead_of_reaching_the_model() -> None:
    authz = authorizer()
    with pytest.raises(az.GuardrailUnavailable):
        client_conversation(authz, az.Guardrail(DownDetector(), inputs=False, on_error="raise"),
                            [("fetch", {"url": "https://news.example"})])


def test_a_guarded_tool_given_to_the_server_keeps_its_input_guardrail_fact() -> None:
    # Dropped, `context.guardrail` would be missing: an error a forbid is skipped on, and the call allowed.
    sink = az.MemorySink()
    authz = az.Authorizer.from_text("""
        @id("allow") permit(principal, action, resource);
        @id("no-email-out") forbid(principal, action == Action::"send_email", resource)
          when { context.guardrail.input.pii.contains("EMAIL") };
    """, audit=[sink])

    @authz.guard(guardrail=az.LocalDetector())
    def send_email(to: str) -> str:
        return "the application's own copy of the tool"

    mailed: list[str] = []
    server = FastMCP("desk", auth=static_tokens("alice"),
                     middleware=[MCPAuthzMiddleware(authz, tools={"send_email": send_email})])
    tools(server, mailed)
    [refused] = conversation(server, [("send_email", {"to": "eve@example.com"})])
    assert refused.is_error and mailed == []
    assert sink.events[-1].reasons == ("no-email-out",)
