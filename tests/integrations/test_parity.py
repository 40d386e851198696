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
#: The gateway target of the AgentCore profile: the assistant's tools whose resource is the tool itself.
GATEWAY_TOOLS = ("search_documents", "send_email", "issue_refund")
GATEWAY_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/assistant-gw-a1b2c3d4e5"
#: Example policies that could decide a gateway call but read what a gateway request does not carry.
AGENTCORE_REFUSED = {
    "tool-enabled-for-tenant": "tenancy.cedar:12",          # resource.enabled_for
    "refund-over-1000-needs-approval": "session.cedar:11",  # context.session
    "refund-session-cap": "session.cedar:21",
    "acme-no-external-email-after-confidential": "tenants/acme.cedar:19",
    "globex-no-external-email-after-confidential": "tenants/globex.cedar:19",
}


def agentcore_profile(tools: ModuleType) -> Any:
    from agentauthz.integrations.agentcore import AgentCoreProfile, TagMapping

    guarded = tools.build_tools(az.Authorizer.from_text("", audit=[]))
    return AgentCoreProfile(GATEWAY_ARN, "Assistant", [guarded[name] for name in GATEWAY_TOOLS],
                            tags=TagMapping(attributes={"tenant": "tenant"}, groups={"Role": "roles"}))


@functools.cache
def gateway_subset() -> az.PolicyStore:
    """The example store without the policies the AgentCore translation refuses."""
    store = az.PolicyStore.from_directory(POLICIES)
    kept = "\n\n".join(p.text for p in store.policies if p.id not in AGENTCORE_REFUSED)
    return az.PolicyStore.from_text(kept, schema=store.schema_text, entities=store.entities,
                                    links=store.links)


def user_claims(who: str) -> dict[str, Any]:
    """The claims an identity provider puts in ``who``'s token: sub, tenant, every role (ancestors too)."""
    index = {entity.uid: entity for entity in gateway_subset().entities}
    roles: set[str] = set()
    pending = list(index[az.EntityUID("User", who)].parents)
    while pending:
        parent = pending.pop()
        if parent.type == "Role" and parent.id not in roles:
            roles.add(parent.id)
            pending.extend(index[parent].parents)
    return {"sub": who, "tenant": index[az.EntityUID("User", who)].attrs["tenant"].id, "roles": sorted(roles)}


def via_agentcore(tools: ModuleType, who: str, tool: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    """The call as an AgentCore Gateway decides it with the translated policies, named back in our terms."""
    from agentauthz.integrations.agentcore import LocalGateway, translate

    if tool not in GATEWAY_TOOLS:
        pytest.skip(f"{tool} computes its resource (a document): AgentCoreProfile refuses it as a "
                    "gateway tool (tests/integrations/test_agentcore_translate.py)")
    recorder = az.MemorySink()
    gateway = LocalGateway(translate(gateway_subset(), agentcore_profile(tools)), audit=[recorder])
    gateway.decide(user_claims(who), tool, arguments)
    [event] = recorder.events
    assert (event.principal, event.action, event.resource) == (
        f'AgentCore::OAuthUser::"{who}"', f'AgentCore::Action::"Assistant___{tool}"',
        f'AgentCore::Gateway::"{GATEWAY_ARN}"')
    return (f'User::"{who}"', f'Action::"{tool}"', f'Tool::"{tool}"', event.decision, event.reasons,
            event.errors)


def via_guard_on_gateway_subset(tools: ModuleType, who: str, tool: str, arguments: dict[str, Any]) -> Decided:
    recorder = az.MemorySink()
    authz = az.Authorizer(az.LocalEngine(gateway_subset()), audit=[recorder])
    guarded = tools.build_tools(authz)
    with authz.acting_as(az.EntityUID("User", who)):
        guarded[tool](**arguments)
    return decided(recorder)


#: name -> how a call travels: (example lambda module, assistant tools module, who, tool, arguments) -> event.
PATHS: dict[str, Callable[[ModuleType, ModuleType, str, str, dict[str, Any]], Decided]] = {
    "langchain": lambda example, tools, *call: via_langchain(tools, *call),
    "bedrock-function": lambda example, tools, *call: via_lambda_function(example, *call),
    "bedrock-openapi": lambda example, tools, *call: via_lambda_api(example, *call),
    "strands": lambda example, tools, *call: via_strands(tools, *call),
    "mcp-server": lambda example, tools, *call: via_mcp_server(tools, *call),
    "mcp-client": lambda example, tools, *call: via_mcp_client(tools, *call),
    "agentcore": lambda example, tools, *call: via_agentcore(tools, *call),
}
#: What a path is compared with when it cannot run every example policy (default: the guard on the store).
REFERENCES: dict[str, Callable[[ModuleType, str, str, dict[str, Any]], Decided]] = {
    "agentcore": via_guard_on_gateway_subset,
}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize(("who", "tool", "arguments"), PARITY_CALLS,
                         ids=[f"{w}-{t}-{i}" for i, (w, t, _) in enumerate(PARITY_CALLS)])
def test_every_path_decides_a_call_as_the_guard_does(
    example: ModuleType, assistant_tools: ModuleType, path: str, who: str, tool: str,
    arguments: dict[str, Any]
) -> None:
    reference = REFERENCES.get(path, via_guard)
    assert PATHS[path](example, assistant_tools, who, tool, arguments) == reference(
        assistant_tools, who, tool, arguments)


def test_agentcore_parity_leaves_out_exactly_the_refused_policies_each_named_with_its_location(
    assistant_tools: ModuleType
) -> None:
    from agentauthz.integrations.agentcore import translate

    with pytest.raises(az.PolicyError) as refused:
        translate(az.PolicyStore.from_directory(POLICIES), agentcore_profile(assistant_tools))
    assert len(refused.value.problems) == len(AGENTCORE_REFUSED)
    for policy_id, location in AGENTCORE_REFUSED.items():
        assert any(p.startswith(f"{location}: policy {policy_id!r}: ") for p in refused.value.problems)


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
