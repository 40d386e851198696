"""Guardrails on the Strands path: the user's prompt (AuthzIntervention(guardrail=...)) and a tool's
result (``tools={name: ToolSettings(guardrail=...)}``), with real Strands agents and a scripted model."""

from __future__ import annotations

from typing import Any

import pytest
from strands import Agent, tool

import agentauthz as az
from agentauthz.integrations.strands import PRINCIPAL_KEY, SESSION_KEY, AuthzIntervention, ScriptedModel
from tests.integrations.guardrail_cases import (
    ATTACK,
    CLEAN_TEXT,
    USER,
    CountingDetector,
    DownDetector,
    LabelLosingStore,
    authorizer,
    seen,
)

mailed: list[str] = []


@tool
def send_email(to: str) -> str:
    """Send an email."""
    mailed.append(to)
    return "sent"


@tool
def fetch(url: str) -> str:
    """Fetch a web page."""
    return ATTACK if "evil" in url else CLEAN_TEXT


@pytest.fixture(autouse=True)
def _no_mail() -> None:
    mailed.clear()


def run(intervention: AuthzIntervention, prompt: str, turns: list[Any],
        session: str = "chat-st") -> ScriptedModel:
    model = ScriptedModel(turns)
    agent = Agent(model=model, tools=[fetch, send_email], interventions=[intervention], callback_handler=None)
    agent(prompt, invocation_state={PRINCIPAL_KEY: USER, SESSION_KEY: session})
    return model


MAIL = [("tool", "send_email", {"to": "bob@example.com"})]


# -- the user's prompt -------------------------------------------------------------------------------


def test_a_prompt_attack_in_the_users_prompt_refuses_the_tool_calls_after_it() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    model = run(AuthzIntervention(authz, guardrail=az.LocalDetector()), ATTACK, MAIL)
    assert mailed == [] and "DENIED" in model.texts()[0]
    assert sink.events[-1].reasons == ("halt-after-user-attack",)
    labels = seen(authz, "chat-st")
    assert "guardrail:user:prompt_attack:high" in labels and "guardrail:prompt_attack:high" not in labels


def test_a_clean_prompt_leaves_the_tool_calls_allowed_and_is_assessed_once() -> None:
    detector = CountingDetector()
    authz = authorizer()
    run(AuthzIntervention(authz, guardrail=detector), "Mail bob the agenda", MAIL)
    assert mailed == ["bob@example.com"] and detector.texts == ["Mail bob the agenda"]


def test_a_prompt_detector_that_is_down_labels_the_session_and_the_policy_refuses() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    run(AuthzIntervention(authz, guardrail=DownDetector()), "Mail bob the agenda", MAIL)
    assert mailed == [] and sink.events[-1].reasons == ("halt-when-unassessed",)
    assert "guardrail:user:unavailable" in seen(authz, "chat-st")


def test_a_prompt_detector_that_is_down_with_on_error_raise_fails_the_invocation() -> None:
    authz = authorizer()
    intervention = AuthzIntervention(authz, guardrail=az.Guardrail(DownDetector(), on_error="raise"))
    model = ScriptedModel(MAIL)
    agent = Agent(model=model, tools=[send_email], interventions=[intervention], callback_handler=None)
    with pytest.raises(az.GuardrailUnavailable):
        agent("hi", invocation_state={PRINCIPAL_KEY: USER, SESSION_KEY: "chat-st"})
    assert mailed == [] and model.seen == []  # the model never read the prompt


def test_prompt_labels_that_cannot_be_recorded_fail_the_invocation() -> None:
    authz = authorizer(store=LabelLosingStore())
    with pytest.raises(az.EngineError):
        run(AuthzIntervention(authz, guardrail=az.LocalDetector()), ATTACK, MAIL)
    assert mailed == []


@pytest.mark.parametrize("options", [{"session": None}, {"profile": "strands"}])
def test_a_guardrail_needs_an_agentauthz_session(options: dict[str, Any]) -> None:
    with pytest.raises(az.ConfigurationError, match="session"):
        AuthzIntervention(authorizer(), guardrail=az.LocalDetector(), **options)


# -- tool results --------------------------------------------------------------------------------------


RESEARCH = [("tool", "send_email", {"to": "bob@example.com"}), ("tool", "fetch", {"url": "https://evil.example"}),
            ("tool", "send_email", {"to": "eve@example.com"})]


def screened(authz: az.Authorizer, guardrail: az.Guardrail) -> AuthzIntervention:
    return AuthzIntervention(authz, tools={"fetch": az.ToolSettings(guardrail=guardrail)})


def test_an_injected_tool_result_refuses_the_tool_calls_after_it() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    model = run(screened(authz, az.Guardrail(az.LocalDetector(), inputs=False)), "Research", RESEARCH)
    assert mailed == ["bob@example.com"]
    assert model.texts()[1] == ATTACK and "DENIED" in model.texts()[2]
    assert sink.events[-1].reasons == ("halt-after-injected-document",)


def test_a_tool_result_that_cannot_be_assessed_is_replaced_by_an_error_result() -> None:
    authz = authorizer()
    model = run(screened(authz, az.Guardrail(DownDetector(), inputs=False, on_error="raise")), "Research",
                [("tool", "fetch", {"url": "https://news.example"})])
    assert "withheld" in model.texts()[0] and CLEAN_TEXT not in model.texts()[0]


def test_a_tool_result_whose_labels_cannot_be_recorded_is_replaced_by_an_error_result() -> None:
    authz = authorizer(store=LabelLosingStore())
    model = run(screened(authz, az.Guardrail(az.LocalDetector(), inputs=False)), "Research",
                [("tool", "fetch", {"url": "https://evil.example"})])
    assert "withheld" in model.texts()[0] and ATTACK not in model.texts()[0]


def test_in_a_session_the_application_bound_the_tool_result_is_labelled_there() -> None:
    authz = authorizer()
    model = ScriptedModel([("tool", "fetch", {"url": "https://evil.example"})])
    agent = Agent(model=model, tools=[fetch], callback_handler=None,
                  interventions=[screened(authz, az.Guardrail(az.LocalDetector(), inputs=False))])
    with authz.acting_as(USER), authz.session("app-session"):
        agent("Research")
    assert "guardrail:prompt_attack:high" in seen(authz, "app-session")
