"""A Stubber-backed Bedrock guardrail on the three paths: tool input, tool output, retrieval.

The matched text never leaves the detector: not into facts, labels, audit
events, logs or errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import agentauthz as az
from agentauthz.integrations.bedrock import BedrockGuardrail
from tests.guardrails.responses import CANARY, CLEAN, content, pii, response, words

POLICIES = """
@id("allow") permit(principal, action, resource);
@id("no-pii-out") forbid(principal, action == Action::"send", resource)
  when { context.guardrail.input.pii.contains("EMAIL") };
@id("unassessed") forbid(principal, action == Action::"send", resource)
  unless { context.guardrail.input.available };
@id("after-attack") forbid(principal, action == Action::"send", resource)
  when { context has session && context.session.seen.contains("guardrail:prompt_attack:high") };
"""
USER = az.EntityUID("User", "u")


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def asked(text: str, source: str) -> dict[str, Any]:
    return {"guardrailIdentifier": "gr-1", "guardrailVersion": "1", "source": source,
            "content": [{"text": {"text": text}}], "outputScope": "FULL"}


@pytest.fixture
def app(client: Any) -> tuple[az.Authorizer, az.MemorySink, Any, Any]:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, audit=[sink])
    guardrail = BedrockGuardrail("gr-1", "1", client=client)

    @authz.guard(guardrail=guardrail, on_deny="message")
    def send(body: str) -> str:
        return "sent"

    @authz.guard(guardrail=az.Guardrail(guardrail, inputs=False))
    def fetch(url: str) -> str:
        return f"page at {url}"

    return authz, sink, send, fetch


def test_tool_input_findings_decide_through_the_policy(app: Any, stubber: Stubber) -> None:
    authz, sink, send, _ = app
    stubber.add_response("apply_guardrail", CLEAN, asked("hello", "INPUT"))
    stubber.add_response("apply_guardrail", response(pii("EMAIL")), asked(f"mail {CANARY}", "INPUT"))
    with authz.acting_as(USER):
        assert send("hello") == "sent"
        assert "not permitted" in send(f"mail {CANARY}")
    assert [e.reasons for e in sink.events] == [("allow",), ("no-pii-out",)]
    assert sink.events[1].extra["guardrail"]["input"]["findings"] == [
        {"category": "pii", "type": "EMAIL", "confidence": "HIGH", "action": "ANONYMIZED"}]


def test_a_throttled_guardrail_on_tool_input_is_denied_by_the_policy(app: Any, stubber: Stubber) -> None:
    authz, sink, send, _ = app
    stubber.add_client_error("apply_guardrail", service_error_code="ThrottlingException",
                             http_status_code=429, expected_params=asked("hello", "INPUT"))
    with authz.acting_as(USER):
        assert "not permitted" in send("hello")
    assert sink.events[0].reasons == ("unassessed",)
    assert sink.events[0].extra["guardrail"]["input"]["available"] is False


def test_tool_output_findings_become_session_labels_before_the_model_reads_them(
        app: Any, stubber: Stubber) -> None:
    authz, _, send, fetch = app
    stubber.add_response("apply_guardrail", response(content("PROMPT_ATTACK", "HIGH")),
                         asked("page at evil.example", "OUTPUT"))
    stubber.add_response("apply_guardrail", CLEAN, asked("hello", "INPUT"))
    with authz.acting_as(USER), authz.session("s") as session:
        assert fetch("evil.example") == "page at evil.example"
        assert "guardrail:prompt_attack:high" in session.facts().seen
        assert "not permitted" in send("hello")


def test_retrieved_documents_are_assessed_once_per_session(client: Any, stubber: Stubber) -> None:
    authz = az.Authorizer.from_text(POLICIES)
    guardrail = az.Guardrail(BedrockGuardrail("gr-1", "1", client=client))
    docs = ["plain text", "text with a secret"]
    stubber.add_response("apply_guardrail", CLEAN, asked("plain text", "OUTPUT"))
    stubber.add_response("apply_guardrail", response(words(), pii("AWS_SECRET_KEY")),
                         asked("text with a secret", "OUTPUT"))
    with authz.acting_as(USER), authz.session("s") as session:
        for _ in range(3):  # the Stubber holds two answers: a third call would fail the test
            result = authz.filter(docs, action="read", resource=lambda d: az.EntityUID("Doc", d),
                                  guardrail=guardrail)
            assert result.allowed == docs
        assert {"guardrail:pii:AWS_SECRET_KEY", "guardrail:word:CUSTOM",
                "guardrail:word:PROFANITY"} <= session.facts().seen


def test_the_matched_text_never_reaches_audit_logs_or_errors(
        app: Any, client: Any, stubber: Stubber, caplog: pytest.LogCaptureFixture) -> None:
    authz, sink, send, fetch = app
    stubber.add_response("apply_guardrail", response(pii("EMAIL"), words()), asked("some body", "INPUT"))
    stubber.add_response("apply_guardrail", response(pii("EMAIL"), words()), asked("page at x", "OUTPUT"))
    stubber.add_client_error("apply_guardrail", service_error_code="ValidationException",
                             service_message=f"bad input {CANARY}", http_status_code=400)
    raised: list[str] = []
    with caplog.at_level(logging.DEBUG), authz.acting_as(USER), authz.session("s") as session:
        raised.append(send("some body"))
        raised.append(fetch("x"))
        raising = az.Guardrail(BedrockGuardrail("gr-1", "1", client=client), on_error="raise")
        with pytest.raises(az.GuardrailUnavailable) as error:
            raising.assess("other", "INPUT")
        raised.append(str(error.value))
        labels = session.facts().seen
    recorded = [event.to_json() for event in sink.events] + caplog.messages + raised + sorted(labels)
    assert sink.events and labels
    assert not any(CANARY in text for text in recorded)
