"""One parity suite for every path a tool call takes: same calls, same decisions, same audit events.

Each entry of ``PATHS`` runs a call of the example store's assistant (``examples/assistant_tools.py``) for a
user through one integration and returns what its one audit event says. A new runtime is one more entry.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import agentauthz as az
from agentauthz.integrations.bedrock import action_group_handler
from tests.integrations.bedrock_events import api_event, body_of, function_event
from tests.integrations.mcp_harness import call, static_tokens

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
EXAMPLE = ROOT / "examples" / "bedrock_agents"

PARITY_CALLS = [
    ("bob", "search_documents", {"query": "vacation policy"}),
    ("bob", "issue_refund", {"order_id": "o-1001", "amount": 500}),
    ("bob", "issue_refund", {"order_id": "o-1003", "amount": 501}),
    ("carol", "issue_refund", {"order_id": "o-1002", "amount": 4200}),
    ("carol", "issue_refund", {"order_id": "o-1004", "amount": 5001}),
    ("carol", "issue_refund", {"order_id": "o-1005", "amount": -200}),
    ("frank", "issue_refund", {"order_id": "g-1", "amount": 20}),
    ("alice", "read_document", {"document_id": "acme-eng-roadmap"}),
    ("carol", "read_document", {"document_id": "acme-incident-report"}),
    ("erin", "read_document", {"document_id": "acme-handbook"}),
    ("bob", "delete_document", {"document_id": "acme-support-playbook"}),
    ("carol", "delete_document", {"document_id": "acme-eng-roadmap"}),
    ("alice", "delete_document", {"document_id": "acme-vendor-contract"}),
    ("carol", "send_email", {"to": "dave@acme.example", "subject": "Budget"}),
    ("carol", "send_email", {"to": "attacker@evil.example, dave@acme.example", "subject": "Q3"}),
    ("erin", "send_email", {"to": "alice@acme.example", "subject": "hi"}),
]


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_module(EXAMPLE / "lambda_function.py", "bedrock_example_lambda")


@pytest.fixture(scope="module")
def assistant_tools() -> ModuleType:
    return load_module(ROOT / "examples" / "assistant_tools.py", "bedrock_assistant_tools")


def decided(recorder: az.MemorySink) -> tuple[Any, ...]:
    [event] = recorder.events
    return (event.principal, event.action, event.resource, event.decision, event.reasons, event.errors)


def via_guard(tools: ModuleType, who: str, tool: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    recorder = az.MemorySink()
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])
    guarded = tools.build_tools(authz)
    with authz.acting_as(az.EntityUID("User", who)):
        guarded[tool](**arguments)
    return decided(recorder)


def via_langchain(tools: ModuleType, who: str, tool: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    from langchain_core.tools import StructuredTool

    from agentauthz.integrations.langchain import PRINCIPAL_KEY, authorize_tools

    def search_documents(query: str) -> str:
        """Search."""
        return "..."

    def read_document(document_id: str) -> str:
        """Read."""
        return "..."

    def delete_document(document_id: str) -> str:
        """Delete."""
        return "..."

    def send_email(to: str, subject: str) -> str:
        """Email."""
        return "..."

    def issue_refund(order_id: str, amount: int) -> str:
        """Refund."""
        return "..."

    plain = [search_documents, read_document, delete_document, send_email, issue_refund]
    recorder = az.MemorySink()
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])
    wrapped = authorize_tools(
        [StructuredTool.from_function(fn) for fn in plain], authz,
        settings={name: az.ToolSettings(resource=tools.document)
                  for name in ("read_document", "delete_document")},
    )
    by_name = {t.name: t for t in wrapped}
    by_name[tool].invoke(arguments, config={"configurable": {PRINCIPAL_KEY: az.EntityUID("User", who)}})
    return decided(recorder)


def lambda_handler_for(example: ModuleType, recorder: az.MemorySink) -> Callable[..., dict[str, Any]]:
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])
    return action_group_handler(authz, principal=example.end_user, action=example.action,
                                resource=example.resource)(lambda event, context: "ran")


def via_lambda_function(
    example: ModuleType, who: str, tool: str, arguments: dict[str, Any]
) -> tuple[Any, ...]:
    recorder = az.MemorySink()
    event = function_event(tool, who, group="assistant-tools", **arguments)
    lambda_handler_for(example, recorder)(event, None)
    return decided(recorder)


def via_lambda_api(example: ModuleType, who: str, tool: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    operation = {action: op for op, action in example.OPERATIONS.items()}[tool]
    method, path = operation.split(" ", 1)
    query = {k: v for k, v in arguments.items() if "{" + k + "}" in path or method == "GET"}
    body = {k: v for k, v in arguments.items() if k not in query}
    recorder = az.MemorySink()
    event = api_event(method, path, who, group="assistant-api", query=query, body=body or None)
    lambda_handler_for(example, recorder)(event, None)
    return decided(recorder)


def via_strands(tools: ModuleType, who: str, tool: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    """A Strands agent whose scripted model makes the call; no session, as the guard has none."""
    from strands import Agent
    from strands import tool as strands_tool

    from agentauthz.integrations.strands import PRINCIPAL_KEY as STRANDS_PRINCIPAL_KEY
    from agentauthz.integrations.strands import AuthzIntervention, ScriptedModel

    @strands_tool
    def search_documents(query: str) -> str:
        """Search."""
        return "..."

    @strands_tool
    def read_document(document_id: str) -> str:
        """Read."""
        return "..."

    @strands_tool
    def delete_document(document_id: str) -> str:
        """Delete."""
        return "..."

    @strands_tool
    def send_email(to: str, subject: str) -> str:
        """Email."""
        return "..."

    @strands_tool
    def issue_refund(order_id: str, amount: int) -> str:
        """Refund."""
        return "..."

    recorder = az.MemorySink()
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])
    documents = az.ToolSettings(resource=tools.document, resource_types="Document")
    intervention = AuthzIntervention(authz, session=None,
                                     tools={"read_document": documents, "delete_document": documents})
    agent = Agent(model=ScriptedModel([("tool", tool, dict(arguments))]), interventions=[intervention],
                  tools=[search_documents, read_document, delete_document, send_email, issue_refund],
                  callback_handler=None)
    agent("go", invocation_state={STRANDS_PRINCIPAL_KEY: az.EntityUID("User", who)})
    return decided(recorder)


@functools.cache
def mcp_example() -> ModuleType:
    return load_module(ROOT / "examples" / "mcp" / "server.py", "mcp_example_server")


def via_mcp_server(tools: ModuleType, who: str, tool: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    """The call as a tools/call to the example MCP server (examples/mcp/server.py), with ``who``'s token."""
    server_module = mcp_example()
    recorder = az.MemorySink()
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])
    call(server_module.build_server(authz, static_tokens(who)), f"t-{who}", tool, arguments)
    return decided(recorder)


def via_mcp_client(tools: ModuleType, who: str, tool: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    """The call through AuthorizedClientSession, to the example MCP server's tools with no middleware."""
    from fastmcp import Client, FastMCP

    from agentauthz.integrations.mcp import AuthorizedClientSession

    server_module = mcp_example()
    bare = FastMCP("third-party")
    for listed in asyncio.run(server_module.build_server(az.Authorizer.from_text("", audit=[]), None)
                              .list_tools(run_middleware=False)):
        bare.add_tool(listed)
    recorder = az.MemorySink()
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])

    async def agent() -> None:
        async with Client(bare) as client:
            session = AuthorizedClientSession(client.session, authz, tools=server_module.DOCUMENT_TOOLS)
            with authz.acting_as(az.EntityUID("User", who)):
                await session.call_tool(tool, arguments)

    asyncio.run(agent())
    return decided(recorder)


Decided = tuple[Any, ...]
#: name -> how a call travels: (example lambda module, assistant tools module, who, tool, arguments) -> event.
PATHS: dict[str, Callable[[ModuleType, ModuleType, str, str, dict[str, Any]], Decided]] = {
    "langchain": lambda example, tools, *call: via_langchain(tools, *call),
    "bedrock-function": lambda example, tools, *call: via_lambda_function(example, *call),
    "bedrock-openapi": lambda example, tools, *call: via_lambda_api(example, *call),
    "strands": lambda example, tools, *call: via_strands(tools, *call),
    "mcp-server": lambda example, tools, *call: via_mcp_server(tools, *call),
    "mcp-client": lambda example, tools, *call: via_mcp_client(tools, *call),
}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize(("who", "tool", "arguments"), PARITY_CALLS,
                         ids=[f"{w}-{t}-{i}" for i, (w, t, _) in enumerate(PARITY_CALLS)])
def test_every_path_decides_a_call_as_the_guard_does(
    example: ModuleType, assistant_tools: ModuleType, path: str, who: str, tool: str,
    arguments: dict[str, Any]
) -> None:
    assert PATHS[path](example, assistant_tools, who, tool, arguments) == via_guard(
        assistant_tools, who, tool, arguments)


def test_parity_covers_allowed_and_denied_calls_with_forbid_reasons(
    example: ModuleType, assistant_tools: ModuleType
) -> None:
    outcomes = [via_guard(assistant_tools, *call) for call in PARITY_CALLS]
    assert {o[3] for o in outcomes} == {"allow", "deny"}
    reasons = {r for o in outcomes if o[3] == "deny" for r in o[4]}
    assert {"refund-must-be-positive", "tool-enabled-for-tenant", "legal-hold-blocks-delete",
            "email-single-recipient", "tenant-isolation"} <= reasons


def test_lambda_response_matches_the_guard_refusal_text(
    example: ModuleType, assistant_tools: ModuleType
) -> None:
    authz = az.Authorizer.from_directory(POLICIES, audit=[])
    guarded = assistant_tools.build_tools(authz)
    with authz.acting_as(az.EntityUID("User", "frank")):
        refusal = guarded["issue_refund"](order_id="g-1", amount=20)
    response = example.lambda_handler(
        function_event("issue_refund", "frank", group="assistant-tools", order_id="g-1", amount=20), None)
    assert "decision " in refusal
    assert without_decision_id(body_of(response)) == without_decision_id(refusal)


def without_decision_id(text: str) -> str:
    return re.sub(r"decision [0-9a-f]{32}", "decision <id>", text)
