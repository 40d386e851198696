"""The same scenarios through LangChain's agent loop: ``create_agent`` with a scripted chat model.

The model emits the script's tool calls one reply at a time; LangGraph's tool node runs the
guarded tools (as LangChain tools) and hands each result back to the model as a
``ToolMessage``. A held call is put to the human through the approver callback
(``ApprovalConfig(approver=...)``): they approve the calls of their own task and decline
the rest, and the model reads a refusal for those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import StructuredTool
from pydantic import Field

import agentauthz as az
from agentauthz.session import ApprovalRequest
from tests.scenarios.agent import ALICE, Scenario, base_world
from tests.scenarios.assistant import build


class ScriptedChatModel(GenericFakeChatModel):
    """Replays scripted replies, whatever the tools returned."""

    offered: list[list[str]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        self.offered.append([getattr(t, "name", str(t)) for t in tools])
        return self


@dataclass
class LoopResult:
    changes: list[tuple[str, dict[str, Any]]]
    tool_messages: list[ToolMessage]
    approval_events: list[str]
    asked: list[ApprovalRequest]


def run_in_langchain(scenario: Scenario, store: az.PolicyStore, engine: az.Engine) -> LoopResult:
    """One scenario as a LangChain agent run for Alice, in its own session."""
    asked: list[ApprovalRequest] = []
    own = [(call.tool, call.args) for call in scenario.user_calls]

    def human(request: ApprovalRequest) -> bool:  # approves exactly the calls of their own task
        asked.append(request)
        return (request.action.id, dict(request.arguments)) in own

    world = base_world()
    scenario.plant(world)
    assistant = build(world, store, engine, approver=human, on_deny="message")
    tools = [StructuredTool.from_function(tool) for tool in assistant.tools.values()]
    calls = [*scenario.user_calls, *scenario.injected_calls]
    replies = [AIMessage("", tool_calls=[{"name": c.tool, "args": c.args, "id": f"call-{n}"}])
               for n, c in enumerate(calls)]
    model = ScriptedChatModel(messages=iter([*replies, AIMessage("Done.")]))
    agent = create_agent(model, tools=tools)
    authz = assistant.authz
    with authz.acting_as(ALICE), authz.session(f"lc-{scenario.id}") as session:
        session.user_said(scenario.task)
        state = agent.invoke({"messages": [("user", scenario.task)]})
    return LoopResult(
        changes=list(world.changes),
        tool_messages=[m for m in state["messages"] if isinstance(m, ToolMessage)],
        approval_events=[e.extra["approval"] for e in assistant.audit.events if "approval" in e.extra],
        asked=asked)
