"""Held calls on an MCP server: the client's user is asked through MCP elicitation (real FastMCP + client)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("fastmcp")

from fastmcp import FastMCP
from fastmcp.client.elicitation import ElicitResult
from fastmcp.utilities.tests import asgi_server

import agentauthz as az
from agentauthz.integrations.mcp import AuthzMiddleware
from tests.integrations.mcp_harness import static_tokens

SCHEMA = """
entity User;
entity Tool;
action refund appliesTo {
  principal: User, resource: Tool,
  context: { input: { to: String, amount: Long }, session: { approved: Bool } }
};
"""
POLICIES = """
@id("allow-refunds") permit(principal, action == Action::"refund", resource);
@id("big-refunds") @approval("required")
forbid(principal, action == Action::"refund", resource)
when { context.input.amount > 100 && !context.session.approved };
@id("never-to-mallory")
forbid(principal, action == Action::"refund", resource) when { context.input.to == "mallory" };
"""


def bank(**options: Any) -> tuple[FastMCP, list[dict[str, Any]], az.MemorySink]:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, schema=SCHEMA, audit=[sink])
    server = FastMCP("bank", auth=static_tokens("alice"),
                     middleware=[AuthzMiddleware(authz, session=lambda ctx: "conversation-1", **options)])
    ran: list[dict[str, Any]] = []

    @server.tool
    def refund(to: str, amount: int) -> str:
        ran.append({"to": to, "amount": amount})
        return "refunded"

    return server, ran, sink


def calls(server: FastMCP, handler: Any, *arguments: dict[str, Any],
          mode: str = "legacy") -> tuple[list[Any], list[str]]:
    """Tool calls on a 2025-era connection (server-initiated elicitation) unless ``mode`` says otherwise."""
    asked: list[str] = []

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
        asked.append(message)
        return await handler(response_type)

    async def run() -> list[Any]:
        async with asgi_server(server) as running, running.client(
                auth="t-alice", mode=mode, elicitation_handler=elicit) as client:
            return [await client.call_tool_mcp("refund", args) for args in arguments]

    return asyncio.run(run()), asked


async def approve(response_type: Any) -> Any:
    return response_type(value=True)


async def decline(response_type: Any) -> Any:
    return ElicitResult(action="decline")


def test_a_held_call_is_put_to_the_clients_user_and_runs_once_they_accept() -> None:
    server, ran, sink = bank()
    (result,), asked = calls(server, approve, {"to": "bob", "amount": 500})
    assert not result.is_error and ran == [{"to": "bob", "amount": 500}]
    assert len(asked) == 1 and "bob" in asked[0] and "500" in asked[0]
    assert [e.extra.get("approval") for e in sink.events] == ["required", "granted", "used"]


def test_a_declined_call_does_not_run_and_reads_as_a_denial() -> None:
    server, ran, sink = bank()
    (result,), _ = calls(server, decline, {"to": "bob", "amount": 500})
    assert result.is_error and "not permitted" in result.content[0].text and ran == []
    assert sink.events[-1].extra["approval"] == "refused"


def test_an_answer_other_than_true_grants_nothing() -> None:
    async def lukewarm(response_type: Any) -> Any:
        return response_type(value=False)

    server, ran, _ = bank()
    (result,), _ = calls(server, lukewarm, {"to": "bob", "amount": 500})
    assert result.is_error and ran == []


def test_a_hard_forbid_is_never_put_to_the_user() -> None:
    server, ran, _ = bank()
    (result,), asked = calls(server, approve, {"to": "mallory", "amount": 500})
    assert result.is_error and asked == [] and ran == []


def test_without_elicitation_a_held_call_tells_the_model_it_awaits_approval() -> None:
    server, ran, _ = bank(elicit_approvals=False)
    (result,), asked = calls(server, approve, {"to": "bob", "amount": 500})
    assert result.is_error and "approval" in result.content[0].text and asked == [] and ran == []


def test_on_a_2026_connection_without_server_requests_a_held_call_awaits_approval() -> None:
    server, ran, _ = bank()
    (result,), asked = calls(server, approve, {"to": "bob", "amount": 500}, mode="auto")
    assert result.is_error and "approval" in result.content[0].text and asked == [] and ran == []


def test_a_client_agents_held_call_to_a_third_party_server_awaits_approval_then_runs_once() -> None:
    from fastmcp import Client

    from agentauthz.integrations.mcp import AuthorizedClientSession
    from agentauthz.session import ApprovalConfig, SessionConfig

    third_party = FastMCP("payments")
    received: list[dict[str, Any]] = []

    @third_party.tool
    def refund(to: str, amount: int) -> str:
        received.append({"to": to, "amount": amount})
        return "refunded"

    review_queue: list[Any] = []  # the approver queues the request for a person: the call stays held
    authz = az.Authorizer.from_text(POLICIES, schema=SCHEMA, audit=[], sessions=SessionConfig(
        approvals=ApprovalConfig(approver=review_queue.append)))

    async def agent() -> list[Any]:
        async with Client(third_party) as client:
            guarded = AuthorizedClientSession(client.session, authz)
            with authz.acting_as(az.EntityUID("User", "alice")), authz.session("conversation-1"):
                held = await guarded.call_tool("refund", {"to": "bob", "amount": 500})
                authz.approve(review_queue[0], granted_by="supervisor")
                ran = await guarded.call_tool("refund", {"to": "bob", "amount": 500})
        return [held, ran]

    held, ran = asyncio.run(agent())
    assert held.is_error and "approval" in held.content[0].text
    assert not ran.is_error and received == [{"to": "bob", "amount": 500}]
