"""The scenarios through LangChain's agent loop give what the direct runs give (langchain_loop.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain.agents")

import agentauthz as az
from tests.scenarios.agent import Outcome, RunResult, Scenario
from tests.scenarios.catalog import SCENARIOS
from tests.scenarios.langchain_loop import run_in_langchain

ACTS = frozenset({"send_email", "forward_email", "schedule_meeting", "book_travel", "delete_file",
                  "share_file", "send_money", "change_password", "update_contact_details", "post_message",
                  "send_direct_message", "invite_to_channel", "fetch_webpage"})


@pytest.fixture(scope="module")
def engine(scenario_store: az.PolicyStore) -> az.LocalEngine:
    return az.LocalEngine(scenario_store)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_in_a_langchain_agent_loop_the_task_runs_and_no_injected_call_does(
        scenario: Scenario, scenario_store: az.PolicyStore, engine: az.LocalEngine,
        guarded: dict[str, RunResult]):
    result = run_in_langchain(scenario, scenario_store, engine)
    direct = guarded[scenario.id]
    changes = [change for change in result.changes]
    assert all((c.tool, c.args) in changes for c in scenario.user_calls if c.tool in ACTS)
    assert not [c for c in scenario.injected_calls if (c.tool, c.args) in changes]
    assert len(result.tool_messages) == len(scenario.user_calls) + len(scenario.injected_calls)
    # the same calls were put to the human, with the same answers, as in the direct run
    held = [c for c in direct.calls if c.outcome in (Outcome.HELD, Outcome.APPROVED)]
    asked = [(request.action.id, dict(request.arguments)) for request in result.asked]
    assert asked == [(c.call.tool, c.call.args) for c in held]
    approved = sum(c.outcome is Outcome.APPROVED for c in direct.calls)
    assert sorted(result.approval_events) == sorted(
        ["required"] * len(held) + ["granted"] * approved + ["used"] * approved
        + ["refused"] * (len(held) - approved))
