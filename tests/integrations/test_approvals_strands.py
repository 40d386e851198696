"""Held calls on a Strands agent: an interrupt pauses the agent, resuming with approval runs the call once."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("strands")

from strands import Agent, tool

import agentauthz as az
from agentauthz.integrations.strands import PRINCIPAL_KEY, AuthzIntervention, ScriptedModel
from agentauthz.session import APPROVAL_INTERRUPT

POLICIES = """
@id("allow-refunds") permit(principal, action == Action::"refund", resource);
@id("big-refunds") @approval("required")
forbid(principal, action == Action::"refund", resource)
when { context.input.amount > 100 && !context.session.approved };
@id("never-to-mallory")
forbid(principal, action == Action::"refund", resource) when { context.input.to == "mallory" };
"""
ALICE = az.EntityUID("User", "alice")


def agent_for(*turns: Any, **options: Any,
              ) -> tuple[Agent, ScriptedModel, list[dict[str, Any]], az.MemorySink]:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, audit=[sink])
    ran: list[dict[str, Any]] = []

    @tool
    def refund(to: str, amount: int) -> str:
        """Refund an amount to a customer."""
        ran.append({"to": to, "amount": amount})
        return "refunded"

    model = ScriptedModel(list(turns))
    agent = Agent(model=model, tools=[refund], interventions=[AuthzIntervention(authz, **options)],
                  callback_handler=None)
    return agent, model, ran, sink


def resume(agent: Agent, result: Any, answer: Any) -> Any:
    responses = [{"interruptResponse": {"interruptId": interrupt.id, "response": answer}}
                 for interrupt in result.interrupts]
    return agent(responses, invocation_state={PRINCIPAL_KEY: ALICE})


@pytest.mark.parametrize("answer", [True, {"approved": True}])
def test_a_held_call_pauses_the_agent_and_runs_once_when_resumed_with_approval(answer: Any) -> None:
    agent, model, ran, sink = agent_for(("tool", "refund", {"to": "bob", "amount": 500}))
    paused = agent("refund bob", invocation_state={PRINCIPAL_KEY: ALICE})
    assert paused.stop_reason == "interrupt" and ran == []
    (interrupt,) = paused.interrupts
    assert interrupt.name == APPROVAL_INTERRUPT
    assert interrupt.reason["arguments"] == {"to": "bob", "amount": 500}
    assert interrupt.reason["why"] == ["big-refunds"]
    resume(agent, paused, answer)
    assert ran == [{"to": "bob", "amount": 500}]
    assert [r["content"][0]["text"] for r in model.tool_results()] == ["refunded"]
    assert [e.extra.get("approval") for e in sink.events if e.extra.get("approval")] == [
        "required", "required", "granted", "used"]


def test_a_held_call_resumed_with_a_refusal_does_not_run() -> None:
    agent, model, ran, sink = agent_for(("tool", "refund", {"to": "bob", "amount": 500}))
    paused = agent("refund bob", invocation_state={PRINCIPAL_KEY: ALICE})
    resume(agent, paused, "sure")  # only True grants
    assert ran == []
    (result,) = model.tool_results()
    assert result["status"] == "error" and "not permitted" in result["content"][0]["text"]
    assert sink.events[-1].extra["approval"] == "refused"


def test_a_hard_forbid_never_pauses_the_agent() -> None:
    agent, model, ran, _ = agent_for(("tool", "refund", {"to": "mallory", "amount": 500}))
    result = agent("refund mallory", invocation_state={PRINCIPAL_KEY: ALICE})
    assert result.stop_reason != "interrupt" and ran == []
    (refused,) = model.tool_results()
    assert refused["status"] == "error"


def test_without_interrupts_the_model_reads_that_the_call_awaits_approval() -> None:
    agent, model, ran, _ = agent_for(("tool", "refund", {"to": "bob", "amount": 500}),
                                     interrupt_approvals=False)
    result = agent("refund bob", invocation_state={PRINCIPAL_KEY: ALICE})
    assert result.stop_reason != "interrupt" and ran == []
    (held,) = model.tool_results()
    assert "approval" in held["content"][0]["text"] and "big-refunds" not in held["content"][0]["text"]
