"""Human approval of held calls in a LangGraph agent: `make demo`.

A support agent may refund customers. Refunds above 100 need a supervisor's
approval (`@approval("required")`), refunds to closed accounts never happen.
The scripted model asks for a refund of 400: the graph pauses with the
approval request (what the supervisor sees); the supervisor approves, the
graph resumes and the refund runs, once. The model then asks for the same
refund again: held again (an approval covers one call), and this time the
supervisor declines. A refund to a closed account is refused without asking
anyone. Last, the audit trail: the held calls, the answers, the run.

Runs offline in a few seconds: the chat model replays scripted tool calls.
"""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import agentauthz as az
from agentauthz.integrations.langchain import PRINCIPAL_KEY, SESSION_KEY, AuthzMiddleware, interrupt_approver
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
@id("support-refunds") permit (principal, action == Action::"refund", resource);

// Above 100, a supervisor approves each refund.
@id("big-refunds")
@approval("required")
forbid (principal, action == Action::"refund", resource)
when { context.input.amount > 100 && !context.session.approved };

// Never to a closed account: nobody is asked.
@id("closed-accounts")
forbid (principal, action == Action::"refund", resource)
when { context.input.to == "closed-account" };
"""


class ScriptedModel(GenericFakeChatModel):
    """Replays scripted tool calls (no model, no network)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self


@tool
def refund(to: str, amount: int) -> str:
    """Refund an amount to a customer's account."""
    return f"refunded {amount} to {to}"


def main() -> None:
    audit = az.MemorySink()
    authz = az.Authorizer.from_text(
        POLICIES, schema=SCHEMA, audit=[audit],
        sessions=SessionConfig(approvals=ApprovalConfig(approver=interrupt_approver)))
    calls = [{"to": "bob", "amount": 400}, {"to": "bob", "amount": 400},
             {"to": "closed-account", "amount": 50}]
    model = ScriptedModel(messages=iter(
        [AIMessage("", tool_calls=[{"name": "refund", "args": args, "id": f"call-{n}"}])
         for n, args in enumerate(calls)] + [AIMessage("Done.")]))
    agent = create_agent(model, tools=[refund], middleware=[AuthzMiddleware(authz)],
                         checkpointer=InMemorySaver())
    alice = az.EntityUID("User", "alice")
    config: Any = {"configurable": {"thread_id": "support-1", PRINCIPAL_KEY: alice, SESSION_KEY: "support-1"}}

    state = agent.invoke({"messages": [("user", "Please refund bob 400, twice if you can")]}, config=config)
    for answer in (True, False):
        (interrupt,) = state["__interrupt__"]
        print("supervisor asked:", interrupt.value["description"].split(" (held by")[0])
        verdict = "approve" if answer else "decline"
        print("  held by:", ", ".join(interrupt.value["why"]), "| answer:", verdict)
        state = agent.invoke(Command(resume=answer), config=config)

    print("\nwhat the model read:")
    for message in state["messages"]:
        if isinstance(message, ToolMessage):
            print(" ", message.content)

    print("\naudit trail:")
    for event in audit.events:
        print(f"  {event.action:28} {event.decision:5} {event.extra.get('approval', '')}")


if __name__ == "__main__":
    main()
