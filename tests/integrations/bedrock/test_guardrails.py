"""Guardrails on the Bedrock paths: the action-group event's ``inputText`` (action_group_handler(guardrail=)),
an operation's result (a guarded tool with a guardrail in ``tools=``) and knowledge-base results
(KnowledgeBaseRetriever(guardrail=)). Bedrock Guardrails answer through botocore's Stubber."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import agentauthz as az
from agentauthz.integrations.bedrock import (
    SOURCE_URI_KEY,
    BedrockGuardrail,
    FetchLimits,
    KnowledgeBaseRetriever,
    action_group_handler,
)
from tests.guardrails.responses import CANARY, CLEAN, content, response
from tests.integrations.bedrock_events import function_event, refused, session_user
from tests.integrations.guardrail_cases import (
    ATTACK,
    CLEAN_TEXT,
    USER,
    DownDetector,
    LabelLosingStore,
    authorizer,
    seen,
)

ATTACKED = response(content("PROMPT_ATTACK", "HIGH"))


@pytest.fixture
def runtime() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubber(runtime: Any) -> Iterator[Stubber]:
    with Stubber(runtime) as stub:
        yield stub
        stub.assert_no_pending_responses()


def asked(text: str, source: str = "INPUT") -> dict[str, Any]:
    return {"guardrailIdentifier": "gr-1", "guardrailVersion": "1", "source": source,
            "content": [{"text": {"text": text}}], "outputScope": "FULL"}


def event(text: str, **values: Any) -> dict[str, Any]:
    return function_event("send_email", "alice", text=text, **values)


def mailer(authz: az.Authorizer, guardrail: Any, ran: list[str]) -> Any:
    @action_group_handler(authz, principal=session_user, session=True, guardrail=guardrail,
                          action=lambda event: "send_email")
    def handler(event: dict[str, Any], context: Any) -> str:
        ran.append(event["inputText"])
        return "sent"

    return handler


# -- the user's input ---------------------------------------------------------------------------------


def test_a_prompt_attack_in_input_text_refuses_the_invocation_it_came_with(
        runtime: Any, stubber: Stubber) -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    ran: list[str] = []
    handler = mailer(authz, BedrockGuardrail("gr-1", "1", client=runtime), ran)
    stubber.add_response("apply_guardrail", CLEAN, asked("Mail bob the agenda"))
    stubber.add_response("apply_guardrail", ATTACKED, asked(ATTACK))
    assert not refused(handler(event("Mail bob the agenda"), None))
    assert refused(handler(event(ATTACK), None))
    assert ran == ["Mail bob the agenda"]
    assert sink.events[-1].reasons == ("halt-after-user-attack",)
    assert "guardrail:user:prompt_attack:high" in seen(authz, "session-1")


def test_the_decision_audit_event_holds_the_user_inputs_findings_never_its_text(
        runtime: Any, stubber: Stubber) -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    handler = mailer(authz, BedrockGuardrail("gr-1", "1", client=runtime), [])
    stubber.add_response("apply_guardrail", ATTACKED, asked(f"{ATTACK} {CANARY}"))
    handler(event(f"{ATTACK} {CANARY}"), None)
    [decision] = sink.events
    assert decision.extra["guardrail"]["user"] == {
        "detector": "bedrock:gr-1:1", "available": True,
        "findings": [{"category": "prompt_attack", "type": "PROMPT_ATTACK", "confidence": "HIGH",
                      "action": "BLOCKED"}]}
    assert CANARY not in decision.to_json() and ATTACK not in decision.to_json()


def test_the_audit_event_keeps_both_the_users_and_the_arguments_findings() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)

    @authz.guard(guardrail=az.LocalDetector())
    def send_email(to: str) -> str:
        return "unused"

    @action_group_handler(authz, principal=session_user, session=True, guardrail=az.LocalDetector(),
                          tools=[send_email])
    def handler(event: dict[str, Any], context: Any) -> str:
        return "sent"

    handler(function_event("send_email", "alice", text="Mail bob", to="bob@example.com"), None)
    [decision] = sink.events
    assert decision.extra["guardrail"]["user"]["findings"] == []
    assert decision.extra["guardrail"]["input"]["findings"][0]["type"] == "EMAIL"


def test_input_text_is_assessed_once_per_session(runtime: Any, stubber: Stubber) -> None:
    authz = authorizer()
    ran: list[str] = []
    handler = mailer(authz, BedrockGuardrail("gr-1", "1", client=runtime), ran)
    stubber.add_response("apply_guardrail", CLEAN, asked("Mail bob the agenda"))  # one answer for three calls
    for _ in range(3):
        assert not refused(handler(event("Mail bob the agenda"), None))
    assert len(ran) == 3


def test_a_throttled_guardrail_labels_the_session_unavailable_and_the_policy_refuses(
        runtime: Any, stubber: Stubber) -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    ran: list[str] = []
    handler = mailer(authz, BedrockGuardrail("gr-1", "1", client=runtime), ran)
    stubber.add_client_error("apply_guardrail", service_error_code="ThrottlingException",
                             service_message=f"slow down {CANARY}", http_status_code=429,
                             expected_params=asked("Mail bob the agenda"))
    assert refused(handler(event("Mail bob the agenda"), None))
    assert ran == [] and sink.events[-1].reasons == ("halt-when-unassessed",)
    assert "guardrail:user:unavailable" in seen(authz, "session-1")
    assert not any(CANARY in e.to_json() for e in sink.events)


def test_with_on_error_raise_an_unassessed_input_refuses_the_call_audited(
        runtime: Any, stubber: Stubber) -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    ran: list[str] = []
    screen = az.Guardrail(BedrockGuardrail("gr-1", "1", client=runtime), on_error="raise")
    handler = mailer(authz, screen, ran)
    stubber.add_client_error("apply_guardrail", service_error_code="ThrottlingException",
                             http_status_code=429, expected_params=asked("Mail bob the agenda"))
    assert refused(handler(event("Mail bob the agenda"), None))
    assert ran == []
    [refusal] = sink.events
    assert refusal.decision == "deny" and "the user's input could not be screened" in refusal.errors[0]


def test_labels_that_cannot_be_recorded_refuse_the_call() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink, store=LabelLosingStore())
    ran: list[str] = []
    handler = mailer(authz, az.LocalDetector(), ran)
    assert refused(handler(event(ATTACK), None))
    assert ran == [] and "could not be screened (EngineError)" in sink.events[-1].errors[0]


def test_the_async_handler_screens_input_text_with_the_detectors_async_path() -> None:
    authz = authorizer()
    ran: list[str] = []

    @action_group_handler(authz, principal=session_user, session=True, guardrail=az.LocalDetector(),
                          action=lambda event: "send_email")
    async def handler(event: dict[str, Any], context: Any) -> str:
        ran.append(event["inputText"])
        return "sent"

    assert refused(asyncio.run(handler(event(ATTACK), None)))
    assert ran == []


def test_a_guardrail_without_a_session_is_refused_at_decoration() -> None:
    with pytest.raises(az.ConfigurationError, match="session"):
        action_group_handler(authorizer(), principal=session_user, guardrail=az.LocalDetector())


def test_without_a_guardrail_input_text_is_not_assessed() -> None:
    authz = authorizer()
    ran: list[str] = []
    handler = mailer(authz, None, ran)
    assert not refused(handler(event(ATTACK), None))


# -- an operation's result --------------------------------------------------------------------------


def research_desk(authz: az.Authorizer, guardrail: az.Guardrail) -> Any:
    @authz.guard(guardrail=guardrail)
    def fetch(url: str) -> str:
        return "unused: the handler runs the operation"

    @authz.guard
    def send_email(to: str) -> str:
        return "unused"

    @action_group_handler(authz, principal=session_user, session=True, tools=[fetch, send_email])
    def handler(event: dict[str, Any], context: Any, invocation: Any) -> str:
        if invocation.function == "fetch":
            return ATTACK if "evil" in invocation.arguments["url"] else CLEAN_TEXT
        return "sent"

    return handler


def test_an_injected_operation_result_refuses_the_calls_after_it() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    handler = research_desk(authz, az.Guardrail(az.LocalDetector(), inputs=False))
    assert not refused(handler(function_event("send_email", "alice", to="bob@example.com"), None))
    assert not refused(handler(function_event("fetch", "alice", url="https://evil.example"), None))
    assert refused(handler(function_event("send_email", "alice", to="eve@example.com"), None))
    assert sink.events[-1].reasons == ("halt-after-injected-document",)
    assert "guardrail:prompt_attack:high" in seen(authz, "session-1")


def test_an_operation_result_that_cannot_be_assessed_is_withheld_with_on_error_raise() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    handler = research_desk(authz, az.Guardrail(DownDetector(), inputs=False, on_error="raise"))
    answer = handler(function_event("fetch", "alice", url="https://news.example"), None)
    assert refused(answer) and CLEAN_TEXT not in str(answer)
    assert "the result could not be screened (GuardrailUnavailable)" in sink.events[-1].errors[0]


def test_an_operation_result_whose_labels_cannot_be_recorded_is_withheld() -> None:
    authz = authorizer(store=LabelLosingStore())
    handler = research_desk(authz, az.Guardrail(az.LocalDetector(), inputs=False))
    answer = handler(function_event("fetch", "alice", url="https://evil.example"), None)
    assert refused(answer) and ATTACK not in str(answer)


def test_the_async_handler_screens_an_operation_result_too() -> None:
    authz = authorizer()

    @authz.guard(guardrail=az.Guardrail(az.LocalDetector(), inputs=False))
    def fetch(url: str) -> str:
        return "unused"

    @action_group_handler(authz, principal=session_user, session=True, tools=[fetch])
    async def handler(event: dict[str, Any], context: Any) -> str:
        return ATTACK

    assert not refused(asyncio.run(handler(function_event("fetch", "alice", url="x"), None)))
    assert "guardrail:prompt_attack:high" in seen(authz, "session-1")


# -- knowledge-base results --------------------------------------------------------------------------


@pytest.fixture
def agent_runtime() -> Any:
    return boto3.client("bedrock-agent-runtime", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


def hit(doc: str, text: str) -> dict[str, Any]:
    uri = f"s3://kb-docs/{doc}.md"
    return {"content": {"type": "TEXT", "text": text}, "location": {"type": "S3", "s3Location": {"uri": uri}},
            "score": 0.5, "metadata": {SOURCE_URI_KEY: uri}}


def retrieve_request(n: int) -> dict[str, Any]:
    return {"knowledgeBaseId": "KB12345678", "retrievalQuery": {"text": "launch"},
            "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": n}}}


def test_an_injected_knowledge_base_result_refuses_the_tool_calls_after_it(
        runtime: Any, stubber: Stubber, agent_runtime: Any) -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)

    @authz.guard(on_deny="message")
    def send_email(to: str) -> str:
        return "sent"

    screen = az.Guardrail(BedrockGuardrail("gr-1", "1", client=runtime),
                          text=lambda result: result["content"]["text"])
    kb = KnowledgeBaseRetriever("KB12345678", authz, client=agent_runtime, k=2, prefilter=False,
                                guardrail=screen)
    stubber.add_response("apply_guardrail", CLEAN, asked(CLEAN_TEXT, "OUTPUT"))
    stubber.add_response("apply_guardrail", ATTACKED, asked(ATTACK, "OUTPUT"))
    with Stubber(agent_runtime) as kb_stub, authz.acting_as(USER), authz.session("kb-1"):
        kb_stub.add_response("retrieve", {"retrievalResults": [hit("memo", CLEAN_TEXT), hit("page", ATTACK)]},
                             retrieve_request(2))
        assert send_email("bob@example.com") == "sent"
        assert len(kb.retrieve("launch").results) == 2
        assert "not permitted" in send_email("eve@example.com")
    assert sink.events[-1].reasons == ("halt-after-injected-document",)


def test_a_knowledge_base_whose_guardrail_fails_with_on_error_raise_returns_nothing(
        agent_runtime: Any) -> None:
    authz = authorizer()
    kb = KnowledgeBaseRetriever("KB12345678", authz, client=agent_runtime, k=1, prefilter=False,
                                limits=FetchLimits(max_candidates=1, max_rounds=1),
                                guardrail=az.Guardrail(DownDetector(), on_error="raise"))
    with Stubber(agent_runtime) as kb_stub, authz.acting_as(USER), authz.session("kb-2"):
        kb_stub.add_response("retrieve", {"retrievalResults": [hit("memo", CLEAN_TEXT)]}, retrieve_request(1))
        assert kb.retrieve("launch").results == []


def test_the_knowledge_base_retriever_refuses_a_guardrail_of_the_wrong_type(agent_runtime: Any) -> None:
    with pytest.raises(az.ConfigurationError):
        KnowledgeBaseRetriever("KB12345678", authorizer(), client=agent_runtime, guardrail="local")


def test_a_guardrail_in_operation_settings_is_refused_rather_than_ignored() -> None:
    # Ignored, the fact a policy reads would be missing: an error, and a skipped forbid.
    with pytest.raises(az.ConfigurationError, match="guardrail"):
        action_group_handler(authorizer(), principal=session_user,
                             tools={"send_email": az.ToolSettings(guardrail=az.LocalDetector())})
