"""Held calls under LangChain: LangGraph's interrupt() asks the person, resume runs the call once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import agentauthz as az
from agentauthz.integrations.langchain import (
    APPROVAL_INTERRUPT,
    PRINCIPAL_KEY,
    SESSION_KEY,
    AuthzMiddleware,
    authorize_tools,
    interrupt_approver,
)
from agentauthz.session import ApprovalConfig, SessionConfig

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


class ScriptedChatModel(GenericFakeChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self


def scripted(*calls: dict[str, Any]) -> ScriptedChatModel:
    replies = [AIMessage("", tool_calls=[{"name": "refund", "args": args, "id": f"call-{n}"}])
               for n, args in enumerate(calls)]
    return ScriptedChatModel(messages=iter([*replies, AIMessage("Done.")]))


def setup(approver: Any = interrupt_approver) -> tuple[az.Authorizer, Any, list[dict[str, Any]]]:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, schema=SCHEMA, audit=[sink],
                                    sessions=SessionConfig(approvals=ApprovalConfig(approver=approver)))
    ran: list[dict[str, Any]] = []

    @tool
    def refund(to: str, amount: int) -> str:
        """Refund an amount to a customer."""
        ran.append({"to": to, "amount": amount})
        return "refunded"

    return authz, refund, ran


def config(thread: str = "t1", session: str = "c1") -> Any:
    return {"configurable": {"thread_id": thread, PRINCIPAL_KEY: az.EntityUID("User", "alice"),
                             SESSION_KEY: session}}


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


@pytest.mark.parametrize("answer", [True, {"approved": True}])
def test_a_held_call_interrupts_the_graph_and_runs_once_when_resumed_with_approval(answer: Any) -> None:
    authz, refund, ran = setup()
    agent = create_agent(scripted({"to": "bob", "amount": 500}), tools=[refund],
                         middleware=[AuthzMiddleware(authz)], checkpointer=InMemorySaver())
    paused = agent.invoke({"messages": [("user", "refund bob 500")]}, config=config())
    (interrupt,) = paused["__interrupt__"]
    assert interrupt.value["type"] == APPROVAL_INTERRUPT and ran == []
    assert interrupt.value["arguments"] == {"to": "bob", "amount": 500}
    assert interrupt.value["why"] == ["big-refunds"] and "bob" in interrupt.value["description"]
    resumed = agent.invoke(Command(resume=answer), config=config())
    assert [m.content for m in tool_messages(resumed)] == ["refunded"]
    assert ran == [{"to": "bob", "amount": 500}]


def test_a_held_call_resumed_with_a_refusal_does_not_run_and_the_model_reads_a_refusal() -> None:
    authz, refund, ran = setup()
    agent = create_agent(scripted({"to": "bob", "amount": 500}), tools=[refund],
                         middleware=[AuthzMiddleware(authz)], checkpointer=InMemorySaver())
    agent.invoke({"messages": [("user", "refund bob 500")]}, config=config())
    resumed = agent.invoke(Command(resume="yes please"), config=config())  # only True grants
    (refused,) = tool_messages(resumed)
    assert refused.status == "error" and "not permitted" in str(refused.content) and ran == []


def test_a_hard_forbid_never_interrupts_the_graph() -> None:
    authz, refund, ran = setup()
    agent = create_agent(scripted({"to": "mallory", "amount": 500}), tools=[refund],
                         middleware=[AuthzMiddleware(authz)], checkpointer=InMemorySaver())
    result = agent.invoke({"messages": [("user", "refund mallory")]}, config=config())
    assert "__interrupt__" not in result
    (refused,) = tool_messages(result)
    assert refused.status == "error" and ran == []


def test_an_authorized_tool_without_an_approver_tells_the_model_the_call_awaits_approval() -> None:
    authz, refund, ran = setup(approver=None)
    (wrapped,) = authorize_tools([refund], authz)
    agent = create_agent(scripted({"to": "bob", "amount": 500}), tools=[wrapped])
    result = agent.invoke({"messages": [("user", "refund bob 500")]}, config=config())
    (held,) = tool_messages(result)
    assert "approval" in str(held.content) and "big-refunds" not in str(held.content) and ran == []


def test_an_authorized_tool_raising_raises_approval_required_for_the_application() -> None:
    authz, refund, ran = setup(approver=None)
    (wrapped,) = authorize_tools([refund], authz, on_deny="raise")
    with pytest.raises(az.ApprovalRequired) as caught:
        wrapped.invoke({"to": "bob", "amount": 500}, config=config())
    authz.approve(caught.value.approval, granted_by="supervisor")
    assert wrapped.invoke({"to": "bob", "amount": 500}, config=config()) == "refunded"
    assert ran == [{"to": "bob", "amount": 500}]


def test_the_interrupt_approver_pauses_async_agents_too() -> None:
    import asyncio

    authz, refund, ran = setup()
    agent = create_agent(scripted({"to": "bob", "amount": 500}), tools=[refund],
                         middleware=[AuthzMiddleware(authz)], checkpointer=InMemorySaver())

    async def run() -> Any:
        paused = await agent.ainvoke({"messages": [("user", "refund")]}, config=config("t2", "c2"))
        assert "__interrupt__" in paused and ran == []
        return await agent.ainvoke(Command(resume=True), config=config("t2", "c2"))

    assert [m.content for m in tool_messages(asyncio.run(run()))] == ["refunded"]
